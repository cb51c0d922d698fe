"""Map a WeNet `train.yaml` onto our schema, so a WeNet experiment directory decodes here.

A WeNet experiment (train.yaml + final.pt + units.txt + global_cmvn) loads with
`load_config("exp/train.yaml")` and `model.load_state_dict(torch.load("exp/final.pt"))`.
Only architectures we implement are accepted: a Conformer encoder with relative-position
attention and a (bi)transformer decoder; anything else is a clear error naming the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

_ENCODER_KEYS = {
    "output_size", "attention_heads", "linear_units", "num_blocks", "dropout_rate",
    "positional_dropout_rate", "attention_dropout_rate", "input_layer", "normalize_before",
    "macaron_style", "use_cnn_module", "cnn_module_kernel", "cnn_module_norm", "causal",
    "activation_type", "static_chunk_size", "use_dynamic_chunk", "use_dynamic_left_chunk",
}  # fmt: skip
_DECODER_KEYS = {
    "attention_heads", "linear_units", "num_blocks", "r_num_blocks", "dropout_rate",
    "positional_dropout_rate", "self_attention_dropout_rate", "src_attention_dropout_rate",
    "normalize_before",
}  # fmt: skip
# WeNet keys that only select behaviour we implement as the default (value must match).
_ENCODER_FIXED = {
    "pos_enc_layer_type": "rel_pos",
    "selfattention_layer_type": "rel_selfattn",
    "use_sdpa": None,
    "layer_norm_type": "layer_norm",
    "gradient_checkpointing": None,
}
_INPUT_LAYERS = {"conv2d": "conv2d", "conv2d6": "conv2d6", "conv2d8": "conv2d8"}


def _pick(conf: dict, allowed: set[str], fixed: dict[str, Any], section: str) -> dict:
    out = {}
    for key, value in conf.items():
        if key in allowed:
            out[key] = value
        elif key in fixed:
            if fixed[key] is not None and value != fixed[key]:
                raise ValueError(f"WeNet {section}.{key}={value!r} is not supported here")
        else:
            raise ValueError(f"WeNet {section}.{key} is not supported by wenet_eff")
    return out


def _local_file(path: str | None, exp_dir: Path, fallback: str) -> str:
    """WeNet stores paths relative to its run directory; an exported exp dir has the files."""
    for candidate in (path, exp_dir / Path(path).name if path else None, exp_dir / fallback):
        if candidate and Path(candidate).exists():
            return str(candidate)
    return str(path or "")


def wenet_to_config(raw: dict, exp_dir: Path) -> dict:
    """Translate a parsed WeNet train.yaml into a dict of our `Config` schema.

    Args:
        raw: the parsed WeNet YAML.
        exp_dir: its directory (where units.txt and global_cmvn of an exported model live).
    Returns:
        a plain dict to merge into the schema.
    """
    if raw.get("encoder", "conformer") != "conformer":
        raise ValueError(f"WeNet encoder '{raw.get('encoder')}' is not supported (conformer only)")
    if raw.get("decoder", "bitransformer") not in ("bitransformer", "transformer"):
        raise ValueError(f"WeNet decoder '{raw.get('decoder')}' is not supported")
    enc = _pick(raw.get("encoder_conf", {}), _ENCODER_KEYS, _ENCODER_FIXED, "encoder_conf")
    if "input_layer" in enc and enc["input_layer"] not in _INPUT_LAYERS:
        raise ValueError(f"WeNet encoder_conf.input_layer={enc['input_layer']} is not supported")
    dec = _pick(raw.get("decoder_conf", {}), _DECODER_KEYS, {"src_attention": None}, "decoder_conf")
    if raw.get("decoder", "bitransformer") == "transformer":
        dec["r_num_blocks"] = 0
    model_conf = raw.get("model_conf", {})
    model = {
        "name": "wenet_import",
        "input_dim": int(raw.get("input_dim", 80)),
        "vocab_size": int(raw.get("output_dim", 0)),
        "encoder": enc,
        "decoder": dec,
    }
    for key in ("ctc_weight", "reverse_weight", "lsm_weight", "length_normalized_loss"):
        if key in model_conf:
            model[key] = model_conf[key]

    cmvn_conf = raw.get("cmvn_conf", {}) or {}
    cmvn_path = cmvn_conf.get("cmvn_file", raw.get("cmvn_file"))
    if cmvn_conf.get("is_json_cmvn", raw.get("is_json_cmvn", True)) is False:
        raise ValueError("WeNet cmvn_conf.is_json_cmvn=false (Kaldi binary CMVN) is not supported")
    tok_conf = raw.get("tokenizer_conf", {}) or {}
    tokenizer = {
        "type": "bpe" if raw.get("tokenizer") == "bpe" or tok_conf.get("bpe_path") else "char",
        "units": _local_file(tok_conf.get("symbol_table_path"), exp_dir, "units.txt"),
        "bpe_model": _local_file(tok_conf.get("bpe_path"), exp_dir, "bpe.model")
        if tok_conf.get("bpe_path")
        else "",
        "split_with_space": bool(tok_conf.get("split_with_space", False)),
    }
    out: dict[str, Any] = {"model": model, "tokenizer": tokenizer}
    cmvn_file = _local_file(cmvn_path, exp_dir, "global_cmvn") if cmvn_path else ""
    if not cmvn_file and (exp_dir / "global_cmvn").exists():
        cmvn_file = str(exp_dir / "global_cmvn")
    out["cmvn"] = {"file": cmvn_file}
    fbank = (raw.get("dataset_conf", {}) or {}).get("fbank_conf", {}) or {}
    data = {k: fbank[k] for k in ("num_mel_bins", "frame_length", "frame_shift") if k in fbank}
    if data:
        out["data"] = data
    return out
