"""Export an experiment as a WeNet experiment directory: the reverse of `wenet_eff.wenet_import`.

`export_wenet(cfg, model, out_dir)` writes `train.yaml` in WeNet's schema (what WeNet's
`init_model`, `init_tokenizer` and `recognize.py` read, and the data / optimizer settings of
WeNet's `train.py`), `final.pt` (the state dict: its names already are WeNet's), `units.txt`,
`global_cmvn` and, for a bpe tokenizer, the sentencepiece model. Paths in train.yaml are
`out_dir/<file>` as given, as WeNet's recipes keep paths relative to the recipe directory.

A setting WeNet has no way to say is refused with its name (`WeNetExportError`), never dropped:
stability norms, compression, MoE training options, non-WeNet optimizers and schedulers, a
positional table other than WeNet's 5000 rows, a decoder without a right-to-left part. What
was written is then read back through `wenet_import` and must give bit-identical outputs.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
import yaml
from omegaconf import DictConfig, OmegaConf

WENET_MAX_POS_LEN = 5000  # WeNet builds every sinusoidal table with 5000 rows
WENET_SPEEDS = [0.9, 1.0, 1.1]  # WeNet's speed_perturb
ENCODER_KEYS = (
    "output_size", "attention_heads", "linear_units", "num_blocks", "dropout_rate",
    "positional_dropout_rate", "attention_dropout_rate", "input_layer", "normalize_before",
    "cnn_module_kernel", "use_cnn_module", "activation_type", "causal", "use_dynamic_chunk",
    "cnn_module_norm", "use_dynamic_left_chunk", "macaron_style", "static_chunk_size",
)  # fmt: skip
DECODER_KEYS = (
    "attention_heads", "linear_units", "num_blocks", "r_num_blocks", "dropout_rate",
    "positional_dropout_rate", "self_attention_dropout_rate", "src_attention_dropout_rate",
    "normalize_before",
)  # fmt: skip
MOE_KEYS = ("mlp_type", "n_expert", "n_expert_activated")
STABILITY_OPTIONS = ("qk_norm", "softmax_cap", "qkv_norm", "proj_norm", "fc2_norm", "embed_norm")


class WeNetExportError(ValueError):
    """The experiment has settings WeNet cannot express (each named in the message)."""


def refusals(cfg: DictConfig) -> list[str]:
    """One line per setting of `cfg` that WeNet's train.yaml cannot express."""
    out = []
    mcfg = cfg.model
    st = mcfg.stability
    if st.encoder or st.decoder:
        out += [f"model.stability.{k}={st[k]}" for k in STABILITY_OPTIONS if st[k]]
    out += [f"model.moe.{k}={v}" for k, v in mcfg.moe.items() if v]
    for part in ("quant", "sparsity"):
        if cfg.compress[part].enabled:
            out.append(f"compress.{part}.enabled=true (WeNet has no fake quantization or masks)")
    for part in ("encoder", "decoder"):
        if mcfg[part].max_pos_len != WENET_MAX_POS_LEN:
            out.append(f"model.{part}.max_pos_len={mcfg[part].max_pos_len} (WeNet's is 5000)")
    if mcfg.decoder.r_num_blocks == 0:
        out.append(
            "model.decoder.r_num_blocks=0 (WeNet's bitransformer decoder always has a "
            "right-to-left embedding and output layer)"
        )
    if cfg.optim.name not in ("adam", "adamw"):
        out.append(f"optim.name={cfg.optim.name} (WeNet has adam, adamw)")
    if cfg.optim.scheduler != "warmuplr":
        out.append(f"optim.scheduler={cfg.optim.scheduler} (WeNet's U2++ recipes use warmuplr)")
    if cfg.data.speed_perturb and list(cfg.data.speeds) != WENET_SPEEDS:
        out.append(f"data.speeds={list(cfg.data.speeds)} (WeNet perturbs by {WENET_SPEEDS})")
    return out


def _ffn(conf: DictConfig) -> dict:
    return {k: conf[k] for k in MOE_KEYS} if conf.mlp_type == "moe" else {}


def _pick(node: DictConfig, *keys: str) -> dict:
    return {k: node[k] for k in keys}


def _dataset_conf(data: DictConfig) -> dict:
    """WeNet's dataset_conf: each *_conf holds the keyword arguments of WeNet's processor."""
    return {
        "filter_conf": _pick(
            data.filter, "max_length", "min_length", "token_max_length", "token_min_length"
        ),
        "resample_conf": {"resample_rate": data.sample_rate},
        "speed_perturb": data.speed_perturb,
        "fbank_conf": {
            "num_mel_bins": data.num_mel_bins,
            "frame_shift": data.frame_shift,
            "frame_length": data.frame_length,
            "dither": data.dither,
        },
        "spec_aug": data.spec_aug,
        "spec_aug_conf": _pick(data.spec_aug_conf, "num_t_mask", "num_f_mask", "max_t", "max_f"),
        "spec_sub": data.spec_sub,
        "spec_sub_conf": _pick(data.spec_sub_conf, "max_t", "num_t_sub"),
        "spec_trim": data.spec_trim,
        "spec_trim_conf": _pick(data.spec_trim_conf, "max_t"),
        "shuffle": data.shuffle,
        "shuffle_conf": {"shuffle_size": data.shuffle_size},
        "sort": data.sort,
        "sort_conf": {"sort_size": data.sort_size},
        "batch_conf": {
            "batch_type": data.batch_type,
            "batch_size": data.batch_size,
            "max_frames_in_batch": data.max_frames_in_batch,
        },
    }


def wenet_train_yaml(cfg: DictConfig, model: torch.nn.Module, files: dict[str, str]) -> dict:
    """WeNet's train.yaml for `model` (built from `cfg`); `files` maps units / cmvn / bpe /
    non_lang_syms to the paths written into it (a key left out: none)."""
    mcfg, tok, optim = cfg.model, cfg.tokenizer, cfg.optim
    special = model.special
    conf = OmegaConf.to_container(mcfg, resolve=True)
    encoder_conf = {k: conf["encoder"][k] for k in ENCODER_KEYS}
    encoder_conf.update(pos_enc_layer_type="rel_pos", selfattention_layer_type="rel_selfattn")
    raw: dict = {
        "encoder": "conformer",
        "encoder_conf": {**encoder_conf, **_ffn(mcfg.encoder)},
        "decoder": "bitransformer",
        "decoder_conf": {
            **{k: conf["decoder"][k] for k in DECODER_KEYS},
            **_ffn(mcfg.decoder),
        },
        "tokenizer": tok.type,
        "tokenizer_conf": {
            "symbol_table_path": files["units"],
            "split_with_space": bool(tok.split_with_space),
            "bpe_path": files.get("bpe"),
            "non_lang_syms_path": files.get("non_lang_syms"),
            "is_multilingual": False,
            "num_languages": 1,
            "special_tokens": special.as_dict(),
        },
        "ctc": "ctc",
        "ctc_conf": {"ctc_blank_id": special.blank},
    }
    if "cmvn" in files:
        raw["cmvn"] = "global_cmvn"
        raw["cmvn_conf"] = {"cmvn_file": files["cmvn"], "is_json_cmvn": True}
    raw["model"] = "asr_model"
    raw["model_conf"] = {
        k: conf[k] for k in ("ctc_weight", "lsm_weight", "length_normalized_loss", "reverse_weight")
    }
    raw.update(input_dim=mcfg.input_dim, output_dim=model.vocab_size, vocab_size=model.vocab_size)
    raw["dataset"] = "asr"
    raw["dataset_conf"] = _dataset_conf(cfg.data)
    raw.update(
        grad_clip=cfg.train.grad_clip,
        accum_grad=cfg.train.accum_grad,
        max_epoch=cfg.train.max_epoch,
        log_interval=cfg.train.log_interval,
        optim=optim.name,
        optim_conf={
            "lr": optim.lr,
            "betas": list(optim.betas),
            "eps": optim.eps,
            "weight_decay": optim.weight_decay,
        },
        scheduler="warmuplr",
        scheduler_conf={"warmup_steps": optim.warmup_steps},
    )
    return OmegaConf.to_container(OmegaConf.create(raw), resolve=True)


def _copy_inputs(cfg: DictConfig, out: Path, out_name: str) -> dict[str, str]:
    """Copy units / CMVN / bpe model / non-language symbols into `out`; {role: yaml path}."""
    tok = cfg.tokenizer
    sources = {
        "units": (tok.units, "units.txt"),
        "cmvn": (cfg.cmvn.file, "global_cmvn"),
        "bpe": (tok.bpe_model if tok.type == "bpe" else "", "bpe.model"),
        "non_lang_syms": (tok.non_lang_syms, "non_lang_syms.txt"),
    }
    files = {}
    for role, (src, name) in sources.items():
        if not src:
            continue
        if not Path(src).is_file():
            raise FileNotFoundError(f"{src}: not found (the config's file for {role})")
        shutil.copyfile(src, out / name)
        files[role] = f"{out_name}/{name}"
    if "units" not in files:
        raise WeNetExportError("tokenizer.units is empty: WeNet needs the units.txt")
    return files


def export_wenet(cfg: DictConfig, model: torch.nn.Module, out_dir: str | Path) -> dict:
    """Write the WeNet experiment directory of `model` (built from `cfg`) to `out_dir`.

    Returns:
        the train.yaml written (a dict).
    Raises:
        WeNetExportError: settings WeNet cannot express (all of them named); nothing written.
    """
    refused = refusals(cfg)
    if refused:
        raise WeNetExportError(
            "WeNet has no way to express: " + "; ".join(refused) + ". Export a model "
            "without them (e.g. --override optim.scheduler=warmuplr for a training-only "
            "setting); nothing written"
        )
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = _copy_inputs(cfg, out, str(out_dir).rstrip("/"))
    raw = wenet_train_yaml(cfg, model, files)
    with open(out / "train.yaml", "w", encoding="utf-8") as f:
        yaml.safe_dump(raw, f, sort_keys=False, allow_unicode=True)
    torch.save(model.state_dict(), out / "final.pt")
    mismatch = round_trip_mismatch(model, cfg.model.input_dim, out)
    if mismatch:
        for name in ("train.yaml", "final.pt", *(Path(p).name for p in files.values())):
            (out / name).unlink()
        raise WeNetExportError(
            f"{out}: read back as a WeNet experiment, the model differs ({mismatch}); a "
            "setting was not carried over: nothing kept"
        )
    return raw


@torch.no_grad()
def round_trip_mismatch(model: torch.nn.Module, input_dim: int, exp_dir: Path) -> str:
    """'' when the WeNet experiment in `exp_dir`, loaded back (strictly) through
    `wenet_import`, gives bit-identical encoder outputs and losses to `model` on random
    input; else what differs."""
    from wenet_eff.model import load_model

    _, again = load_model(exp_dir / "train.yaml", exp_dir / "final.pt")
    model = model.eval()
    gen = torch.Generator().manual_seed(0)
    speech = torch.randn(2, 150, input_dim, generator=gen)
    speech_lens = torch.tensor([150, 97])
    tokens = model.text_ids()
    text = tokens[torch.randint(len(tokens), (2, 6), generator=gen)]
    text_lens = torch.tensor([6, 4])
    if again.special != model.special:
        return f"special tokens {again.special} != {model.special}"
    for chunk in (-1, 4):
        ours, theirs = (m.encoder(speech, speech_lens, chunk)[0] for m in (model, again))
        if not torch.equal(ours, theirs):
            return f"encoder output (chunk {chunk}) by {(ours - theirs).abs().max():.3g}"
    ours, theirs = (m(speech, speech_lens, text, text_lens) for m in (model, again))
    for key in ("loss", "loss_ctc", "loss_att"):
        if not torch.equal(ours[key], theirs[key]):
            return f"{key} {float(ours[key])} != {float(theirs[key])}"
    return ""
