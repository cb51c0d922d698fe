"""Map a WeNet `train.yaml` onto our schema, so a WeNet experiment directory decodes here.

A WeNet experiment (train.yaml + final.pt + units.txt + global_cmvn) loads with
`load_config("exp/train.yaml")` and `model.load_state_dict(torch.load("exp/final.pt"))`.
Only architectures we implement are accepted: a Conformer encoder with relative-position
attention and the U2++ bidirectional decoder; anything else is a clear error naming the key.
The special-token ids are WeNet's model's: `tokenizer_conf.special_tokens` (`<sos/eos>` at 2 in
WeNet's current recipes) or `output_dim - 1` without it, and `ctc_conf.ctc_blank_id`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wenet_eff.data.tokenizer import SOS_EOS, read_units
from wenet_eff.wenet_keys import training_config

_ENCODER_KEYS = {
    "output_size", "attention_heads", "linear_units", "num_blocks", "dropout_rate",
    "positional_dropout_rate", "attention_dropout_rate", "input_layer", "normalize_before",
    "macaron_style", "use_cnn_module", "cnn_module_kernel", "cnn_module_norm", "causal",
    "activation_type", "static_chunk_size", "use_dynamic_chunk", "use_dynamic_left_chunk",
    "mlp_type", "n_expert", "n_expert_activated",
}  # fmt: skip
_DECODER_KEYS = {
    "attention_heads", "linear_units", "num_blocks", "r_num_blocks", "dropout_rate",
    "positional_dropout_rate", "self_attention_dropout_rate", "src_attention_dropout_rate",
    "normalize_before", "mlp_type", "n_expert", "n_expert_activated",
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
# WeNet's constructor defaults: a key its yaml leaves out means these, not our defaults.
_WENET_ENCODER_DEFAULTS = {
    "output_size": 256, "attention_heads": 4, "linear_units": 2048, "num_blocks": 6,
    "dropout_rate": 0.1, "positional_dropout_rate": 0.1, "attention_dropout_rate": 0.0,
    "input_layer": "conv2d", "normalize_before": True, "static_chunk_size": 0,
    "use_dynamic_chunk": False, "use_dynamic_left_chunk": False, "macaron_style": True,
    "activation_type": "swish", "use_cnn_module": True, "cnn_module_kernel": 15,
    "causal": False, "cnn_module_norm": "batch_norm",
    "mlp_type": "position_wise_feed_forward", "n_expert": 8, "n_expert_activated": 2,
}  # fmt: skip
_WENET_DECODER_DEFAULTS = {
    "attention_heads": 4, "linear_units": 2048, "num_blocks": 6, "r_num_blocks": 0,
    "dropout_rate": 0.1, "positional_dropout_rate": 0.1, "self_attention_dropout_rate": 0.0,
    "src_attention_dropout_rate": 0.0, "normalize_before": True,
    "mlp_type": "position_wise_feed_forward", "n_expert": 8, "n_expert_activated": 2,
}  # fmt: skip
_WENET_MODEL_DEFAULTS = {
    "ctc_weight": 0.5, "reverse_weight": 0.0, "lsm_weight": 0.0, "length_normalized_loss": False,
}  # fmt: skip


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


def _special_tokens(raw: dict, units_path: str, vocab_size: int) -> dict[str, int]:
    """The ids WeNet's model uses: `tokenizer_conf.special_tokens` for `<sos>` / `<eos>`
    (`output_dim - 1` when it names none, as WeNet's ASRModel does), `ctc_conf.ctc_blank_id`
    for `<blank>` (else special_tokens, else 0), `<unk>` when special_tokens names it."""
    tok_conf = raw.get("tokenizer_conf", {}) or {}
    special = dict(tok_conf.get("special_tokens") or {})
    out = {
        "<blank>": (raw.get("ctc_conf") or {}).get("ctc_blank_id", special.get("<blank>", 0)),
        "<sos>": special.get("<sos>", vocab_size - 1),
        "<eos>": special.get("<eos>", vocab_size - 1),
    }
    if "<unk>" in special:
        out["<unk>"] = special["<unk>"]
    if "<blank>" in special and special["<blank>"] != out["<blank>"]:
        raise ValueError(
            f"WeNet ctc_conf.ctc_blank_id={out['<blank>']} but tokenizer_conf.special_tokens."
            f"<blank>={special['<blank>']}: the two must agree"
        )
    if units_path and Path(units_path).is_file():
        units = read_units(units_path)
        if units.get(SOS_EOS, out["<sos>"]) != out["<sos>"] and "<sos>" not in special:
            raise ValueError(
                f"WeNet train.yaml has no tokenizer_conf.special_tokens, so WeNet's model uses "
                f"<sos> = <eos> = output_dim - 1 = {out['<sos>']}, but {units_path} has "
                f"{SOS_EOS} {units[SOS_EOS]}: add tokenizer_conf.special_tokens with the ids "
                "the model was trained with"
            )
    return out


def _input_dim(raw: dict) -> int:
    """`input_dim`, else the mel bins of the feature conf, as WeNet's train_utils fills it in."""
    if "input_dim" in raw:
        return int(raw["input_dim"])
    dataset = raw.get("dataset_conf") or {}
    for conf in ("fbank_conf", "log_mel_spectrogram_conf", "mfcc_conf"):
        if "num_mel_bins" in (dataset.get(conf) or {}):
            return int(dataset[conf]["num_mel_bins"])
    return 80


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
    if raw.get("decoder", "bitransformer") != "bitransformer":
        raise ValueError(
            f"WeNet decoder '{raw.get('decoder')}' is not supported (bitransformer only: "
            "a U2++ model)"
        )
    enc = {
        **_WENET_ENCODER_DEFAULTS,
        **_pick(raw.get("encoder_conf", {}), _ENCODER_KEYS, _ENCODER_FIXED, "encoder_conf"),
    }
    if "input_layer" in enc and enc["input_layer"] not in _INPUT_LAYERS:
        raise ValueError(f"WeNet encoder_conf.input_layer={enc['input_layer']} is not supported")
    dec = {
        **_WENET_DECODER_DEFAULTS,
        **_pick(
            raw.get("decoder_conf", {}), _DECODER_KEYS, {"src_attention": None}, "decoder_conf"
        ),
    }
    model_conf = {**_WENET_MODEL_DEFAULTS, **(raw.get("model_conf", {}) or {})}
    model = {
        "name": "wenet_import",
        "input_dim": _input_dim(raw),
        "vocab_size": int(raw.get("output_dim", 0)),
        "encoder": enc,
        "decoder": dec,
    }
    for key in _WENET_MODEL_DEFAULTS:
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
        "normalize": "none",  # WeNet tokenizes the text as it is
    }
    if tok_conf.get("non_lang_syms_path"):
        tokenizer["non_lang_syms"] = _local_file(
            tok_conf["non_lang_syms_path"], exp_dir, "non_lang_syms.txt"
        )
    tokenizer["special_tokens"] = _special_tokens(raw, tokenizer["units"], model["vocab_size"])
    out: dict[str, Any] = {"model": model, "tokenizer": tokenizer}
    cmvn_file = _local_file(cmvn_path, exp_dir, "global_cmvn") if cmvn_path else ""
    if not cmvn_file and (exp_dir / "global_cmvn").exists():
        cmvn_file = str(exp_dir / "global_cmvn")
    out["cmvn"] = {"file": cmvn_file}
    # features, data pipeline, optimizer and trainer: one table (wenet_keys)
    return {**out, **training_config(raw)}
