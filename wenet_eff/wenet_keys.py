"""WeNet's train.yaml keys and ours, one table, so a WeNet train.yaml trains here with its own
settings and WeNet's `--override_config "key value"` names WeNet's keys.

A key path joins the levels with dots (`dataset_conf.batch_conf.batch_size`). `TRAINING_KEYS`
are the trainer, optimizer and data-pipeline keys: `wenet_import` maps them from a train.yaml
with `training_config`. The model and its files (`encoder_conf`, `decoder_conf`, `model_conf`,
`tokenizer_conf`, `cmvn_conf`) are translated by `wenet_import` from a whole train.yaml;
`MODEL_KEYS` and `MODEL_PREFIXES` translate one such key (`our_key`). `training_problems` names
what a WeNet train.yaml asks for that training here would not do.
"""

from __future__ import annotations

from typing import Any

TRAINING_KEYS = {
    "max_epoch": "train.max_epoch",
    "accum_grad": "train.accum_grad",
    "grad_clip": "train.grad_clip",
    "log_interval": "train.log_interval",
    "save_interval": "train.save_interval",
    "optim": "optim.name",
    "optim_conf.lr": "optim.lr",
    "optim_conf.betas": "optim.betas",
    "optim_conf.eps": "optim.eps",
    "optim_conf.weight_decay": "optim.weight_decay",
    "scheduler": "optim.scheduler",
    "scheduler_conf.warmup_steps": "optim.warmup_steps",
    "dataset_conf.filter_conf.max_length": "data.filter.max_length",
    "dataset_conf.filter_conf.min_length": "data.filter.min_length",
    "dataset_conf.filter_conf.token_max_length": "data.filter.token_max_length",
    "dataset_conf.filter_conf.token_min_length": "data.filter.token_min_length",
    "dataset_conf.resample_conf.resample_rate": "data.sample_rate",
    "dataset_conf.speed_perturb": "data.speed_perturb",
    "dataset_conf.fbank_conf.num_mel_bins": "data.num_mel_bins",
    "dataset_conf.fbank_conf.frame_shift": "data.frame_shift",
    "dataset_conf.fbank_conf.frame_length": "data.frame_length",
    "dataset_conf.fbank_conf.dither": "data.dither",
    "dataset_conf.spec_aug": "data.spec_aug",
    "dataset_conf.spec_aug_conf.num_t_mask": "data.spec_aug_conf.num_t_mask",
    "dataset_conf.spec_aug_conf.num_f_mask": "data.spec_aug_conf.num_f_mask",
    "dataset_conf.spec_aug_conf.max_t": "data.spec_aug_conf.max_t",
    "dataset_conf.spec_aug_conf.max_f": "data.spec_aug_conf.max_f",
    "dataset_conf.spec_sub": "data.spec_sub",
    "dataset_conf.spec_sub_conf.num_t_sub": "data.spec_sub_conf.num_t_sub",
    "dataset_conf.spec_sub_conf.max_t": "data.spec_sub_conf.max_t",
    "dataset_conf.spec_trim": "data.spec_trim",
    "dataset_conf.spec_trim_conf.max_t": "data.spec_trim_conf.max_t",
    "dataset_conf.shuffle": "data.shuffle",
    "dataset_conf.shuffle_conf.shuffle_size": "data.shuffle_size",
    "dataset_conf.sort": "data.sort",
    "dataset_conf.sort_conf.sort_size": "data.sort_size",
    "dataset_conf.batch_conf.batch_type": "data.batch_type",
    "dataset_conf.batch_conf.batch_size": "data.batch_size",
    "dataset_conf.batch_conf.max_frames_in_batch": "data.max_frames_in_batch",
}
MODEL_KEYS = {
    "input_dim": "model.input_dim",
    "output_dim": "model.vocab_size",
    "model_conf.ctc_weight": "model.ctc_weight",
    "model_conf.reverse_weight": "model.reverse_weight",
    "model_conf.lsm_weight": "model.lsm_weight",
    "model_conf.length_normalized_loss": "model.length_normalized_loss",
    "cmvn_conf.cmvn_file": "cmvn.file",
    "tokenizer_conf.symbol_table_path": "tokenizer.units",
    "tokenizer_conf.bpe_path": "tokenizer.bpe_model",
    "tokenizer_conf.non_lang_syms_path": "tokenizer.non_lang_syms",
    "tokenizer_conf.split_with_space": "tokenizer.split_with_space",
}
MODEL_PREFIXES = {"encoder_conf.": "model.encoder.", "decoder_conf.": "model.decoder."}
# the top-level nodes of our schema: `train.max_epoch` is already our key
OUR_SECTIONS = ("model", "data", "tokenizer", "cmvn", "optim", "train", "compress")

# sections of a train.yaml that wenet_import reads whole, and the type names it implements
_MODEL_SECTIONS = ("encoder_conf", "decoder_conf", "tokenizer_conf", "ctc_conf", "cmvn_conf")
_MODEL_TYPES = {
    "encoder": "conformer",
    "decoder": "bitransformer",
    "model": "asr_model",
    "ctc": "ctc",
    "cmvn": "global_cmvn",
    "dataset": "asr",
    "tokenizer": None,  # char or bpe: wenet_import picks
    "cmvn_file": None,
    "is_json_cmvn": None,
}
# what WeNet's train.py writes into an experiment's train.yaml about the run, not the model
_RUN_RECORD = (
    "vocab_size", "model_dir", "train_engine", "use_amp", "save_states", "dtype", "init_infos",
    "dataset_conf.cycle",
)  # fmt: skip


def flatten(raw: dict, prefix: str = "") -> dict[str, Any]:
    """{key path: value} of the leaves of nested dicts (a list is a leaf)."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{path}."))
        else:
            out[path] = value
    return out


def _wenet_defaults(raw: dict) -> dict[str, Any]:
    """What WeNet's trainer uses for training keys a train.yaml leaves out, where our defaults
    differ: gradient clipping at 50, and torch's Adam / AdamW arguments (WeNet passes only
    optim_conf to them)."""
    defaults: dict[str, Any] = {"grad_clip": 50.0}
    if raw.get("optim") in ("adam", "adamw"):
        defaults.update({"optim_conf.betas": [0.9, 0.999], "optim_conf.eps": 1e-8})
        defaults["optim_conf.weight_decay"] = 0.0 if raw["optim"] == "adam" else 0.01
    return defaults


def training_config(raw: dict) -> dict:
    """The `TRAINING_KEYS` of a parsed WeNet train.yaml as a nested dict of our schema (keys it
    leaves out: WeNet's defaults where they differ from ours)."""
    out: dict = {}
    for path, value in {**_wenet_defaults(raw), **flatten(raw)}.items():
        if path in TRAINING_KEYS:
            *parents, leaf = TRAINING_KEYS[path].split(".")
            node = out
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
    return out


def our_key(wenet_key: str) -> str:
    """Our config key for WeNet's key path `wenet_key` (our own keys pass as they are).

    Raises:
        KeyError: `wenet_key` has no equivalent here (the message names it).
    """
    if wenet_key in TRAINING_KEYS:
        return TRAINING_KEYS[wenet_key]
    if wenet_key in MODEL_KEYS:
        return MODEL_KEYS[wenet_key]
    for prefix, ours in MODEL_PREFIXES.items():
        if wenet_key.startswith(prefix):
            return ours + wenet_key[len(prefix) :]
    if "." in wenet_key and wenet_key.split(".")[0] in OUR_SECTIONS:
        return wenet_key
    raise KeyError(
        f"WeNet key {wenet_key!r} has no equivalent in wenet_eff (WeNet keys it maps: "
        f"{', '.join([*TRAINING_KEYS, *MODEL_KEYS, *(p + '*' for p in MODEL_PREFIXES)])}; "
        f"or one of ours: {', '.join(s + '.*' for s in OUR_SECTIONS)})"
    )


def training_problems(raw: dict) -> list[str]:
    """What a parsed WeNet train.yaml asks of training that wenet_eff would not do: keys with
    no equivalent and model types it does not implement (each `key=value: why`)."""
    problems = []
    for path, value in flatten(raw).items():
        top = path.split(".")[0]
        if path in TRAINING_KEYS or path in MODEL_KEYS or path in _RUN_RECORD:
            continue
        if top in _MODEL_SECTIONS:
            continue
        if path in _MODEL_TYPES:
            expected = _MODEL_TYPES[path]
            if expected is not None and value != expected:
                problems.append(f"{path}={value!r}: only {expected!r} is implemented")
            continue
        problems.append(f"{path}={value!r}: no equivalent in wenet_eff")
    return problems
