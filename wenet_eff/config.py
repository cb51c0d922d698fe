"""Typed configuration: the structured-config schema, Hydra composition and WeNet train.yaml
import.

Every config node is a dataclass, so a misspelled or unknown key fails with its name
(OmegaConf struct mode). The nodes are defined beside the modules they configure (nn/, data/,
compress/) and assembled into `Config` here. `load_config` composes a packaged config, or a
resolved `train.yaml` of ours, or a WeNet `train.yaml` mapped onto this schema, with Hydra's
compose API and the same overrides as `bin.train`'s command line.
"""

from __future__ import annotations

import copy
import functools
import operator
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, ValidationError

from wenet_eff.compress import CompressConfig
from wenet_eff.data.cmvn import CmvnConfig
from wenet_eff.data.dataset import DataConfig
from wenet_eff.data.text_file import utf8_lines
from wenet_eff.data.tokenizer import SpecialTokens, TokenizerConfig, read_units
from wenet_eff.nn.attention import StabilityConfig
from wenet_eff.nn.decoder import DecoderConfig
from wenet_eff.nn.encoder import EncoderConfig
from wenet_eff.nn.moe import MoEConfig

CONF_DIR = Path(__file__).resolve().parent / "conf"


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
    """Divergence guard (train.stability.DivergenceGuard): a loss spike is an update whose loss
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
    dtype: str = "fp32"  # fp32 | bf16 (autocast) | auto (train/precision.py)
    train_engine: str = "torch_ddp"  # torch_ddp | deepspeed
    # >1: MoE experts split over groups of this many ranks (train.expert_parallel); 1: off
    expert_parallel: int = 1
    deepspeed_config: str = ""
    dist_backend: str = "auto"  # auto: nccl on GPU, gloo on CPU
    seed: int = 777
    init_checkpoint: str = ""
    max_nan_steps: int = 100  # this many consecutive non-finite losses stop training
    # every N updates: RMS of every weight layer's output and the max attention logit per
    # attention layer to TensorBoard (train.stability.OutputNormMonitor); 0 = off
    monitor_interval: int = 50
    guard: GuardConfig = field(default_factory=GuardConfig)
    device: str = "auto"


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


@functools.cache
def register_schema() -> None:
    """Register the schema with Hydra's ConfigStore (`defaults: [schema, ...]` in train.yaml)."""
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name="schema", node=Config)


def schema() -> DictConfig:
    """An empty, struct-mode config of the schema's defaults. Its one free mapping,
    `tokenizer.special_tokens` (WeNet's `<blank>`, `<sos>`, ... keys), takes new keys."""
    cfg = OmegaConf.structured(Config)
    OmegaConf.set_struct(cfg, True)
    OmegaConf.set_struct(cfg.tokenizer.special_tokens, False)
    return cfg


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
    """Load a config by packaged model name or YAML path, composed by Hydra.

    Args:
        name_or_path: a packaged model name (`mini`, `u2pp_conformer`, ...), a path to one of our
            resolved `train.yaml` files, to a Hydra config with a `defaults` list (a recipe's
            `conf/train_*.yaml`: composed as `bin.train --config-dir --config-name` composes
            it), or to a WeNet `train.yaml`.
        overrides: Hydra overrides, as on `bin.train`'s command line: `key=value`, and
            `group=option` for a packaged group (`compress=qat_int4`, `stability=qk_norm`,
            `model/ffn=moe`), also on a saved `train.yaml` (post-training quantization of a
            float experiment: see `SAVED`).

    Returns:
        A struct-mode DictConfig of the `Config` schema.
    Raises:
        ValueError: an unknown key (named, with the file or the override) or group option, or
            a value outside its range (`check_values`).
    """
    overrides = list(overrides or [])
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.exists():
            raise FileNotFoundError(f"config file not found: {path}")
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f) or {}
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: not a config (expected a YAML mapping: model, data, ...)")
        if "defaults" in raw:
            return check_values(_compose(path.stem, overrides, f"config {path}", path.parent))
        if is_wenet_config(raw):
            from wenet_eff.wenet_import import wenet_to_config

            raw = wenet_to_config(raw, path.parent)
        _store_saved(raw)
        return check_values(_compose(SAVED, overrides, f"config {path}"))
    name = str(name_or_path)
    if name not in packaged_models():
        raise ValueError(
            f"unknown config '{name}': not a file and not a packaged model "
            f"(choose from {', '.join(packaged_models())})"
        )
    return check_values(_compose("train", [f"model={name}", *overrides], f"config '{name}'"))


# Numbers the schema types but cannot bound: outside these a run would start and train
# something meaningless (no encoder blocks, batches of one utterance, a zero learning rate).
# Each rule is "key comparison bound"; 0 stays allowed where it means "off" or "from the data".
BOUNDS = (
    "model.input_dim >= 1",
    "model.vocab_size >= 0",  # 0: the number of units in tokenizer.units
    "model.encoder.output_size >= 1",
    "model.encoder.attention_heads >= 1",
    "model.encoder.linear_units >= 1",
    "model.encoder.num_blocks >= 1",
    "model.encoder.cnn_module_kernel >= 1",
    "model.encoder.max_pos_len >= 1",
    "model.encoder.n_expert >= 1",
    "model.decoder.attention_heads >= 1",
    "model.decoder.linear_units >= 1",
    "model.decoder.num_blocks >= 1",
    "model.decoder.r_num_blocks >= 0",  # 0: no right-to-left decoder
    "model.decoder.max_pos_len >= 1",
    "model.decoder.n_expert >= 1",
    "model.ctc_weight >= 0",
    "model.ctc_weight <= 1",
    "model.reverse_weight >= 0",
    "model.reverse_weight <= 1",
    "model.lsm_weight >= 0",
    "model.lsm_weight < 1",
    "data.sample_rate >= 1",
    "data.num_mel_bins >= 1",
    "data.frame_length >= 1",
    "data.frame_shift >= 1",
    "data.dither >= 0",
    "data.batch_size >= 1",
    "data.max_frames_in_batch >= 1",
    "data.shuffle_size >= 1",
    "data.sort_size >= 1",
    "data.num_workers >= 0",
    "data.prefetch >= 1",
    "data.filter.max_length >= 1",
    "data.filter.min_length >= 0",
    "data.filter.token_max_length >= 1",
    "data.filter.token_min_length >= 0",
    "optim.lr > 0",
    "optim.weight_decay >= 0",
    "optim.warmup_steps >= 0",
    "optim.total_steps >= 0",
    "train.max_epoch >= 1",
    "train.max_steps >= 0",
    "train.accum_grad >= 1",
    "train.log_interval >= 1",
    "train.save_interval >= 0",
    "train.keep_checkpoints >= 0",
    "train.expert_parallel >= 1",
    "train.max_nan_steps >= 1",
    "train.monitor_interval >= 0",
    "train.guard.window >= 1",
    "train.guard.patience >= 1",
    "train.guard.spike_factor > 1",
    "train.guard.lr_factor > 0",
    "train.guard.lr_factor <= 1",
)
_COMPARE = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}


def check_values(cfg: DictConfig) -> DictConfig:
    """Refuse values outside `BOUNDS` and sizes that do not fit together, naming every key.

    Returns:
        `cfg`, unchanged.
    Raises:
        ValueError: listing each bad `key=value` and what it must be.
    """
    bad = []
    for rule in BOUNDS:
        key, op, bound = rule.split()
        value = OmegaConf.select(cfg, key)
        if not _COMPARE[op](value, float(bound)):
            bad.append(f"{key}={value} (must be {op} {bound})")
    enc, dec, lengths = cfg.model.encoder, cfg.model.decoder, cfg.data.filter
    for part, heads in (("encoder", enc.attention_heads), ("decoder", dec.attention_heads)):
        if heads >= 1 and enc.output_size % heads:
            bad.append(
                f"model.encoder.output_size={enc.output_size} (must be divisible by "
                f"model.{part}.attention_heads={heads})"
            )
    for low, high in (("min_length", "max_length"), ("token_min_length", "token_max_length")):
        if lengths[low] > lengths[high]:
            bad.append(
                f"data.filter.{low}={lengths[low]} (must be <= data.filter.{high}={lengths[high]})"
            )
    if bad:
        raise ValueError(f"config values out of range: {'; '.join(bad)}")
    return cfg


# A saved config (a resolved train.yaml) is composed as the option `_saved` of each group whose
# option is one whole node (NODE_GROUPS: group -> the node it fills), in the order of
# conf/train.yaml's defaults; its other nodes are the primary config itself. An override
# `compress=qat_int4` then selects another option in place of the saved one, so the node is what
# it would have been had the group been chosen for training; groups of a wider package
# (`model/ffn` into `model`, `train=...` into the root) merge into the saved values.
SAVED = "_saved"
NODE_GROUPS = {
    "model": "model",
    "data": "data",
    "optim": "optim",
    "stability": "model.stability",
    "compress": "compress",
}


def _store_saved(raw: dict) -> None:
    """Register the content `raw` of a saved config with Hydra's ConfigStore as the primary
    config `SAVED` (see above); Hydra checks its keys against the schema when composing."""
    from hydra.core.config_store import ConfigStore

    rest = copy.deepcopy(raw)
    options = {}
    for group, package in sorted(NODE_GROUPS.items(), key=lambda item: -item[1].count(".")):
        *parents, leaf = package.split(".")  # the deepest first: stability leaves model
        node = rest
        for part in parents:
            node = node.get(part) or {}
        options[group] = node.pop(leaf, None) or {}
    with open(CONF_DIR / "train.yaml", encoding="utf-8") as f:
        packaged = yaml.safe_load(f)["defaults"]
    groups = [next(iter(entry)) for entry in packaged if isinstance(entry, dict)]
    defaults = ["schema", "_self_", *({g: SAVED if g in options else None} for g in groups)]
    store = ConfigStore.instance()
    for group, node in options.items():
        store.store(group=group, name=SAVED, node=node, package=NODE_GROUPS[group])
    store.store(name=SAVED, node={"defaults": defaults, **rest})


def _compose(
    config_name: str, overrides: list[str], source: str, config_dir: Path = CONF_DIR
) -> DictConfig:
    """Hydra's composition of `config_name` (in `config_dir`) with `overrides` over the
    packaged conf/ groups."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_schema()
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    # another directory's config names the packaged groups (and train.yaml) in its defaults
    search = [] if config_dir == CONF_DIR else [f"hydra.searchpath=[file://{CONF_DIR}]"]
    try:
        with initialize_config_dir(config_dir=str(Path(config_dir).resolve()), version_base="1.3"):
            return compose(config_name=config_name, overrides=[*search, *overrides])
    except Exception as exc:  # Hydra wraps key errors; keep the message, drop the noise
        raise ValueError(f"{source} with overrides {overrides}: {exc}") from exc


def is_wenet_config(raw: dict) -> bool:
    """A WeNet train.yaml has `encoder_conf` at its top level."""
    return isinstance(raw, dict) and "encoder_conf" in raw


def save_config(cfg: DictConfig, path: str | os.PathLike) -> None:
    """Write the fully resolved config (the experiment's `train.yaml`) atomically: to a
    temporary file, synced, then renamed, so a crash leaves the old file or the new one."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(OmegaConf.to_yaml(cfg, resolve=True))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def resolve_vocab_size(cfg: DictConfig) -> int:
    """`model.vocab_size`, or the number of lines of `tokenizer.units` when it is 0."""
    if cfg.model.vocab_size > 0:
        return int(cfg.model.vocab_size)
    if not cfg.tokenizer.units:
        raise ValueError("model.vocab_size is 0 and tokenizer.units is empty: set one of them")
    return sum(1 for _, line in utf8_lines(cfg.tokenizer.units) if line.strip())


def resolve_special_tokens(cfg: DictConfig) -> SpecialTokens:
    """The ids of `<blank>`, `<unk>`, `<sos>`, `<eos>`: `tokenizer.special_tokens` (WeNet's
    `tokenizer_conf.special_tokens`), else the symbols of `tokenizer.units`, else WeNet's
    defaults (blank 0, unk 1, sos = eos = vocab_size - 1); see `SpecialTokens.resolve`."""
    given = dict(cfg.tokenizer.special_tokens)
    units = {}
    if set(given) != {"<blank>", "<unk>", "<sos>", "<eos>"} and cfg.tokenizer.units:
        if not os.path.isfile(cfg.tokenizer.units):
            raise FileNotFoundError(
                f"tokenizer.units: {cfg.tokenizer.units} not found (the special-token ids "
                "come from it when tokenizer.special_tokens does not name all four)"
            )
        units = read_units(cfg.tokenizer.units)
    return SpecialTokens.resolve(resolve_vocab_size(cfg), given, units)
