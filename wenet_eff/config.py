"""Typed configuration: structured-config schema, Hydra composition and WeNet train.yaml import.

Every config node is a dataclass, so a misspelled or unknown key fails with its name
(OmegaConf struct mode). `load_config` composes the packaged configs with Hydra, reads a
resolved `train.yaml` of ours, or maps a WeNet `train.yaml` onto this schema.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

CONF_DIR = Path(__file__).resolve().parent / "conf"


@dataclass
class EncoderConfig:
    """Conformer encoder. Names follow WeNet's `encoder_conf`."""

    output_size: int = 256
    attention_heads: int = 4
    linear_units: int = 2048
    num_blocks: int = 12
    dropout_rate: float = 0.1
    positional_dropout_rate: float = 0.1
    attention_dropout_rate: float = 0.1
    input_layer: str = "conv2d"  # conv2d (4x) | conv2d6 (6x) | conv2d8 (8x)
    normalize_before: bool = True
    macaron_style: bool = True
    use_cnn_module: bool = True
    cnn_module_kernel: int = 15
    cnn_module_norm: str = "layer_norm"  # layer_norm | batch_norm
    causal: bool = False
    activation_type: str = "swish"
    static_chunk_size: int = 0
    use_dynamic_chunk: bool = False
    use_dynamic_left_chunk: bool = False
    max_pos_len: int = 5000
    mlp_type: str = "position_wise_feed_forward"  # | moe (every FFN, macaron included)
    n_expert: int = 8
    n_expert_activated: int = 2


@dataclass
class DecoderConfig:
    """Bidirectional Transformer decoder (left-to-right + right-to-left)."""

    attention_heads: int = 4
    linear_units: int = 2048
    num_blocks: int = 3
    r_num_blocks: int = 3
    dropout_rate: float = 0.1
    positional_dropout_rate: float = 0.1
    self_attention_dropout_rate: float = 0.1
    src_attention_dropout_rate: float = 0.1
    normalize_before: bool = True
    max_pos_len: int = 5000
    mlp_type: str = "position_wise_feed_forward"  # | moe
    n_expert: int = 8
    n_expert_activated: int = 2


@dataclass
class MoEConfig:
    """Training options of the MoE layers (all off by default, as in U2++ MoE)."""

    capacity_factor: float = 0.0  # >0: at most ceil(cf * frames * k / E) frames per expert
    load_balance_weight: float = 0.0  # weight of the Switch load-balancing loss
    z_loss_weight: float = 0.0  # weight of the router z-loss


@dataclass
class StabilityConfig:
    """Options against attention-logit and linear-output growth at high learning rates
    (Rybakov et al. 2024, "Methods of improving LLM training stability"); all off by default.

    The `stability=...` config group sets them: qk_norm, qk_norm_cap, qkv_norm,
    qk_proj_fc2_norm, qk_proj_fc2_embed_norm (conf/stability/).
    """

    qk_norm: bool = False  # LayerNorm over each head's queries and keys (size d_k)
    softmax_cap: float = 0.0  # >0: attention logits become cap * tanh(logits / cap)
    qkv_norm: bool = False  # LayerNorm after the Q, K and V projections; no pre-norm before them
    proj_norm: bool = False  # LayerNorm after the attention output projection (Proj)
    fc2_norm: bool = False  # LayerNorm after the FFN's second linear (FC2; in every MoE expert)
    # LayerNorm after the convolutional front end's output linear (encoder.embed.out_norm),
    # before the positional encoding: in a Conformer that linear's output grows most at high lr
    embed_norm: bool = False
    encoder: bool = True  # apply to the encoder blocks
    decoder: bool = True  # apply to the decoder blocks


@dataclass
class ModelConfig:
    """The U2++ model: encoder, decoder, CTC and the joint loss."""

    name: str = "custom"
    input_dim: int = 80
    vocab_size: int = 0  # 0: taken from tokenizer.units when the model is built
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    moe: MoEConfig = field(default_factory=MoEConfig)
    stability: StabilityConfig = field(default_factory=StabilityConfig)
    ctc_weight: float = 0.3
    reverse_weight: float = 0.3
    lsm_weight: float = 0.1
    length_normalized_loss: bool = False


@dataclass
class SpecAugConfig:
    num_t_mask: int = 2
    num_f_mask: int = 2
    max_t: int = 50
    max_f: int = 10


@dataclass
class SpecSubConfig:
    max_t: int = 20
    num_t_sub: int = 3


@dataclass
class SpecTrimConfig:
    max_t: int = 20


@dataclass
class FilterConfig:
    """Utterances outside these bounds are dropped (lengths in 10 ms frames / tokens)."""

    max_length: int = 4000
    min_length: int = 10
    token_max_length: int = 200
    token_min_length: int = 1


@dataclass
class DataConfig:
    """Data pipeline: sources, features, augmentation and batching."""

    train_data: str = ""
    cv_data: str = ""
    data_type: str = "raw"  # raw (data.list) | shard (list of .tar)
    sample_rate: int = 16000
    min_sample_rate: int = 16000  # audio below this rate is skipped (upsampling adds no band)
    num_mel_bins: int = 80
    frame_length: int = 25
    frame_shift: int = 10
    dither: float = 1.0  # training only; evaluation uses 0
    speed_perturb: bool = False
    speeds: list[float] = field(default_factory=lambda: [0.9, 1.0, 1.1])
    spec_aug: bool = True
    spec_aug_conf: SpecAugConfig = field(default_factory=SpecAugConfig)
    spec_sub: bool = False
    spec_sub_conf: SpecSubConfig = field(default_factory=SpecSubConfig)
    spec_trim: bool = False
    spec_trim_conf: SpecTrimConfig = field(default_factory=SpecTrimConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    shuffle: bool = True
    shuffle_size: int = 1500
    sort: bool = True
    sort_size: int = 500
    batch_type: str = "static"  # static | dynamic
    batch_size: int = 16
    max_frames_in_batch: int = 12000
    num_workers: int = 2
    prefetch: int = 4
    seed: int = 777


@dataclass
class TokenizerConfig:
    """Text to token ids: `char` (units.txt) or `bpe` (sentencepiece model + units.txt)."""

    type: str = "char"
    units: str = ""
    bpe_model: str = ""
    non_lang_syms: str = ""
    split_with_space: bool = False
    normalize: str = "english"  # english | chinese | none


@dataclass
class CmvnConfig:
    file: str = ""  # WeNet JSON global_cmvn; empty: no normalisation


@dataclass
class OptimConfig:
    name: str = "adam"  # adam | adamw | step (Adam with STEP's frozen-variance phase, N:M)
    lr: float = 0.002
    weight_decay: float = 1.0e-6
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1.0e-8
    scheduler: str = "warmuplr"  # warmuplr | noam | cosine | constant
    warmup_steps: int = 25000
    min_lr: float = 0.0  # cosine: the lr reached at total_steps
    total_steps: int = 0  # cosine: the step where lr reaches min_lr; 0 = train.max_steps
    # name=step (STEP: Adam that learns N:M masks, train.optim.StepAdam): the dense precondition
    # phase ends when the relative change of Adam's variance stops falling: its mean over the
    # last `switch_window` updates is no longer `switch_threshold` (relative) below the mean
    # over the window before (at least `switch_min_steps`, at most `switch_max_steps` updates)
    switch_window: int = 20
    switch_threshold: float = 0.02
    switch_min_steps: int = 20
    switch_max_steps: int = 1000


@dataclass
class GuardConfig:
    """Divergence guard (train.monitors.DivergenceGuard): a loss spike is an update whose loss
    per input frame exceeds `spike_factor` x the median of the last `window` good updates (or is
    not finite); `patience` spikes in a row, or a monitored linear-output RMS above
    `max_linear_rms`, are a divergence. `action=rollback` reloads the newest checkpoint from
    before the first spike with the learning rate times `lr_factor`, once; a second divergence
    stops training. `action=stop` stops at the first. A skipped (non-finite) update counts as a
    spike. The guard keeps the resume state of the checkpoints it may roll back to, also
    against `train.keep_checkpoints`."""

    enabled: bool = False
    window: int = 50
    min_history: int = 20  # good updates seen before spikes are judged
    spike_factor: float = 3.0
    patience: int = 3
    max_linear_rms: float = 0.0  # >0: also a divergence (checked at monitored updates)
    lr_factor: float = 0.5
    action: str = "rollback"  # rollback | stop


@dataclass
class TrainConfig:
    """Trainer loop settings."""

    exp_dir: str = "exp/default"
    max_epoch: int = 100
    max_steps: int = 0  # >0 stops training after this many optimizer steps
    accum_grad: int = 1
    grad_clip: float = 5.0
    log_interval: int = 100
    save_interval: int = 0  # >0 also checkpoints every N steps within an epoch
    keep_checkpoints: int = 0  # >0 keeps only the newest N step checkpoints
    dtype: str = "fp32"  # fp32 | bf16 (autocast)
    train_engine: str = "torch_ddp"  # torch_ddp | deepspeed
    # >1: MoE experts split over groups of this many ranks (train.expert_parallel); 1: off
    expert_parallel: int = 1
    deepspeed_config: str = ""
    dist_backend: str = "auto"  # auto: nccl on GPU, gloo on CPU
    seed: int = 777
    init_checkpoint: str = ""
    max_nan_steps: int = 100  # this many consecutive non-finite losses stop training
    # every N updates: RMS of every weight layer's output and the max attention logit per
    # attention layer to TensorBoard (train.monitors.OutputNormMonitor); 0 = off
    monitor_interval: int = 50
    guard: GuardConfig = field(default_factory=GuardConfig)
    device: str = "auto"


@dataclass
class QuantConfig:
    """Weight fake-quantization for QAT (see wenet_eff.compress.quant)."""

    enabled: bool = False
    bits: int = 8  # 8 | 4 | 2 | 1 (1: binarization, sign x mean|w| per group)
    symmetric: bool = True  # symmetric: levels -(2^(b-1)-1)..2^(b-1)-1; asymmetric: 0..2^b-1
    granularity: str = "channel"  # tensor | channel | subchannel (blocks along the input)
    block_size: int = 64  # subchannel block length along the input dimension
    clip: str = "none"  # none | fixed | percentile | search
    clip_value: float = 1.0  # fixed: fraction of the range; percentile: percentile of |w|
    search_interval: int = 100  # clip=search: re-search the per-group clip every N steps
    estimator: str = "ste"  # ste (straight-through) | noise (pseudo-quantization noise)
    learnable_scale: bool = False  # the scale is a trained parameter (init from the weights)
    scale_grad: bool = False  # the range-derived scale passes gradient to the outliers
    norm_decay: float = 0.0  # RAND: weight of the decay term on the groups' max |w|
    native_int: bool = False  # Linear layers compute on integers (int8 activations)
    act_bits: int = 0  # >0: fake-quantize Linear inputs (dynamic per-tensor); native_int: 8
    roles: list[str] = field(
        default_factory=lambda: [
            "attn.qkv", "attn.out", "attn.pos", "ffn.w_1", "ffn.w_2", "conv.pointwise",
            "conv.depthwise", "subsampling.conv", "subsampling.out", "embedding", "output",
        ]
    )  # fmt: skip
    # mixed precision: "role:bits" entries, e.g. ["ffn.w_1:4", "ffn.w_2:4", "output:8"]
    bits_by_role: list[str] = field(default_factory=list)


@dataclass
class SparsityConfig:
    """Weight sparsity through the same seam (see wenet_eff.compress.sparse).

    Methods: `nm` (N:M masks by magnitude along the input dimension, recomputed every forward;
    SR-STE gradient with `decay`), `magnitude` (unstructured, by magnitude per layer, pruned
    gradually from `start_step` to `end_step` to `sparsity`), `router` (S3-Router: a learned
    binary mask over frozen weights keeping the top `keep_ratio` of trained scores).
    """

    enabled: bool = False
    method: str = "nm"  # nm | magnitude | router
    n: int = 2  # nm: keep N of every M consecutive input weights
    m: int = 4
    decay: float = 2.0e-4  # nm: SR-STE lambda, grad W += decay * (1 - mask) * W (0: plain STE)
    sparsity: float = 0.5  # magnitude: the final fraction of zeros per layer
    start_step: int = 0  # magnitude: first pruning update
    end_step: int = 100  # magnitude: the update where `sparsity` is reached (cubic schedule)
    prune_interval: int = 10  # magnitude: re-prune every N updates in [start_step, end_step]
    keep_ratio: float = 0.9  # router: fraction of weights kept per layer
    score_init: str = "magnitude"  # router: kaiming | magnitude | rank | magnitude_scaled
    score_scale: float = 1.0  # router: magnitude_scaled multiplies |w| by this
    train_other: bool = False  # router: also train the tensors outside the masked layers
    roles: list[str] = field(
        default_factory=lambda: ["attn.qkv", "attn.out", "ffn.w_1", "ffn.w_2", "conv.pointwise"]
    )


@dataclass
class CompressConfig:
    """Compression applied through the weight-layer seam (`compress=...` config group)."""

    quant: QuantConfig = field(default_factory=QuantConfig)
    sparsity: SparsityConfig = field(default_factory=SparsityConfig)


@dataclass
class Config:
    """The whole experiment: what `train.yaml` in an experiment directory holds."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    cmvn: CmvnConfig = field(default_factory=CmvnConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    compress: CompressConfig = field(default_factory=CompressConfig)


def register_schema() -> None:
    """Register the schema with Hydra's ConfigStore (`defaults: [schema, ...]` in train.yaml)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="schema", node=Config)


def schema() -> DictConfig:
    """An empty, struct-mode config of the schema's defaults."""
    cfg = OmegaConf.structured(Config)
    OmegaConf.set_struct(cfg, True)
    return cfg


def _compose(config_name: str, overrides: list[str]) -> DictConfig:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_schema()
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=overrides)


def packaged_models() -> list[str]:
    """Names of the packaged model configs (`conf/model/*.yaml`)."""
    return sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))


def merge_checked(base: DictConfig, update: Any, source: str) -> DictConfig:
    """Merge `update` into the struct config `base`, naming `source` and the key on a mistake."""
    try:
        return OmegaConf.merge(base, update)
    except (ConfigKeyError, ValidationError) as exc:
        raise ValueError(f"{source}: {exc.msg if hasattr(exc, 'msg') else exc}") from exc


def load_config(name_or_path: str | os.PathLike, overrides: list[str] | None = None) -> DictConfig:
    """Load a config by packaged model name or YAML path.

    Args:
        name_or_path: a packaged model name (`mini`, `u2pp_conformer`, ...), a path to one of our
            resolved `train.yaml` files, or a path to a WeNet `train.yaml`.
        overrides: Hydra-style `key=value` overrides applied last.

    Returns:
        A struct-mode DictConfig of the `Config` schema. Unknown keys raise ValueError naming them.
    """
    overrides = list(overrides or [])
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.exists():
            raise FileNotFoundError(f"config file not found: {path}")
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f) or {}
        if is_wenet_config(raw):
            from wenet_eff.wenet_import import wenet_to_config

            raw = wenet_to_config(raw, path.parent)
        cfg = merge_checked(schema(), raw, str(path))
        if overrides:
            cfg = apply_overrides(cfg, overrides)
        return cfg
    name = str(name_or_path)
    if name not in packaged_models():
        raise ValueError(
            f"unknown config '{name}': not a file and not a packaged model "
            f"(choose from {', '.join(packaged_models())})"
        )
    try:
        return _compose("train", [f"model={name}", *overrides])
    except Exception as exc:  # Hydra wraps key errors; keep the message, drop the noise
        raise ValueError(f"config '{name}' with overrides {overrides}: {exc}") from exc


def apply_overrides(cfg: DictConfig, overrides: list[str]) -> DictConfig:
    """Apply overrides to a loaded config as Hydra would, failing on unknown keys.

    `group=option` for a packaged config group (`compress=qat_int2`, `stability=qk_norm`,
    `model/ffn=moe`) applies that option's yaml to its `@package` node, which is first reset to
    the schema's defaults when the node is the group itself (`compress`, `model.stability`) and
    merged into otherwise (`model/ffn` -> `model`, `_global_` -> the root). Groups go first, in
    order, then every `a.b=value`, so a key override wins over a group whatever their order.
    This lets a trained float `train.yaml` be packed or decoded with `compress=...` (PTQ).

    Args:
        cfg: a struct-mode config (not modified).
        overrides: `key=value` strings; a leading `+` is ignored.
    Returns:
        The new config.
    Raises:
        ValueError: a malformed override, an unknown group option or an unknown key (named).
    """
    groups, keys = [], []
    for item in overrides:
        key, eq, value = item.lstrip("+").partition("=")
        if not eq or not key or "" in key.replace("/", ".").split("."):
            raise ValueError(f"override '{item}' is not of the form key=value")
        if "." not in key and (CONF_DIR / key).is_dir():
            path = CONF_DIR / key / f"{value}.yaml"
            if not path.is_file():
                options = sorted(p.stem for p in (CONF_DIR / key).glob("*.yaml"))
                raise ValueError(f"override '{item}': no option '{value}' in {key}/ ({options})")
            groups.append((key, path, item))
        else:
            keys.append(f"{key}={value}")
    for key, path, item in groups:
        cfg = _apply_group(cfg, key, path, item)
    return merge_checked(cfg, OmegaConf.from_dotlist(keys), "overrides") if keys else cfg


def _apply_group(cfg: DictConfig, group: str, path: Path, source: str) -> DictConfig:
    """Merge one packaged group option (see apply_overrides) into `cfg`."""
    text = path.read_text(encoding="utf-8")
    package = group.replace("/", ".")
    for line in text.splitlines():
        if line.startswith("# @package "):
            package = line.removeprefix("# @package ").strip()
            break
    content: Any = yaml.safe_load(text) or {}
    if package == "_global_":
        return merge_checked(cfg, content, f"override '{source}' ({path.name})")
    if package.split(".")[-1] == group.split("/")[-1]:  # the node is the group: replace it
        cfg = cfg.copy()
        OmegaConf.update(cfg, package, OmegaConf.select(schema(), package), merge=False)
    for part in reversed(package.split(".")):
        content = {part: content}
    return merge_checked(cfg, content, f"override '{source}' ({path.name})")


def is_wenet_config(raw: dict) -> bool:
    """A WeNet train.yaml has `encoder_conf` at its top level."""
    return isinstance(raw, dict) and "encoder_conf" in raw


def save_config(cfg: DictConfig, path: str | os.PathLike) -> None:
    """Write the fully resolved config (the experiment's `train.yaml`)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(OmegaConf.to_yaml(cfg, resolve=True))
    os.replace(tmp, path)


def resolve_vocab_size(cfg: DictConfig) -> int:
    """`model.vocab_size`, or the number of lines of `tokenizer.units` when it is 0."""
    if cfg.model.vocab_size > 0:
        return int(cfg.model.vocab_size)
    if not cfg.tokenizer.units:
        raise ValueError("model.vocab_size is 0 and tokenizer.units is empty: set one of them")
    with open(cfg.tokenizer.units, encoding="utf-8") as f:
        return sum(1 for line in f if line.strip())
