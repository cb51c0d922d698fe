"""WeNet's command-line flags for `bin.train` (and WeNet's `--override_config` and refused
flags for `bin.recognize`), translated onto our config keys.

A WeNet recipe's run.sh trains with

    torchrun --nnodes=1 --nproc_per_node=2 ... wenet/bin/train.py --train_engine torch_ddp \\
        --config conf/train.yaml --data_type raw --train_data data/train/data.list \\
        --cv_data data/dev/data.list [--checkpoint exp/x/5.pt] --model_dir exp/x \\
        --tensorboard_dir tensorboard --ddp.dist_backend nccl --num_workers 8 --prefetch 500 \\
        --pin_memory --deepspeed_config conf/ds_stage2.json --deepspeed.save_states model_only

and `-m wenet_eff.bin.train` with the same flags trains the config `--config` names (a WeNet
train.yaml, one of ours, or a recipe's Hydra config: `load_config`), each flag setting the key
`TRAIN_FLAGS` names. `--checkpoint` inside a `--model_dir` with checkpoints must be its newest,
which a run resumes from anyway (exactly: optimizer, scheduler and data position too); any
other initialises the weights (`train.init_checkpoint`). `--tensorboard_dir D` links `D/<exp name>`
to `model_dir/tensorboard`, where the events are. `--override_config "a.b value"` takes WeNet's
key paths (`wenet_keys.our_key`) or ours. Accepted with nothing to do: `--pin_memory` (batches
are not pinned), `--timeout` (ranks run in lockstep, no join timeout),
`--deepspeed.save_states` (the newest checkpoint always keeps its optimizer state, older ones
only weights). WeNet flags of things wenet_eff does not do are refused, naming why.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import yaml
from omegaconf import DictConfig

from wenet_eff.config import is_wenet_config, load_config
from wenet_eff.train.checkpoint import list_checkpoints
from wenet_eff.wenet_keys import our_key, training_problems

logger = logging.getLogger("wenet_eff.train")

# WeNet flag -> the config key it sets (the flags handled by hand are in `train_overrides`)
TRAIN_FLAGS = {
    "--model_dir": "train.exp_dir",
    "--cv_data": "data.cv_data",
    "--data_type": "data.data_type",
    "--num_workers": "data.num_workers",
    "--prefetch": "data.prefetch",
    "--train_engine": "train.train_engine",
    "--deepspeed_config": "train.deepspeed_config",
    "--ddp.dist_backend": "train.dist_backend",
    "--dtype": "train.dtype",
    "--symbol_table": "tokenizer.units",
    "--non_lang_syms": "tokenizer.non_lang_syms",
    "--cmvn": "cmvn.file",
}
_TORCHRUN = "start the ranks with torchrun (--nnodes, --nproc_per_node), which sets them"
# WeNet flags of things wenet_eff does not do (prefixes end with "_")
TRAIN_REFUSED = {
    "--ddp.init_method": _TORCHRUN,
    "--ddp.world_size": _TORCHRUN,
    "--ddp.rank": _TORCHRUN,
    "--local_rank": _TORCHRUN,
    "--enc_init": "initialising the encoder alone is not implemented (--checkpoint: all weights)",
    "--enc_init_mods": "initialising the encoder alone is not implemented",
    "--freeze_modules": "freezing modules is not implemented",
    "--use_lora": "LoRA is not implemented",
    "--only_optimize_lora": "LoRA is not implemented",
    "--lora_": "LoRA is not implemented",
    "--fsdp_": "torch_fsdp is not implemented (--train_engine deepspeed shards with ZeRO)",
    "--fp16_grad_sync": "fp16 gradient sync is not implemented",
    "--jit": "TorchScript tracing is not used (bin.export checks the exported graphs)",
    "--print_model": "not implemented (the log names the model and its parameter counts)",
}

# WeNet recognize.py flags of decoders wenet_eff does not have
_NOT_HERE = "not implemented"
RECOGNIZE_REFUSED = {
    "--simulate_streaming": "--decoding_chunk_size N decodes under the chunk mask, whose "
    "encoder output equals chunk-by-chunk streaming's (tests/nn/test_encoder.py)",
    "--dtype": "fp32 only (bin.pack/bin.export serve int8)",
    "--search_ctc_weight": "transducer decoding is " + _NOT_HERE,
    "--search_transducer_weight": "transducer decoding is " + _NOT_HERE,
    "--transducer_weight": "transducer decoding is " + _NOT_HERE,
    "--attn_weight": "transducer decoding is " + _NOT_HERE,
    "--word": "HLG decoding is not implemented (--lm fuses a word n-gram ARPA)",
    "--hlg": "HLG decoding is not implemented (--lm fuses a word n-gram ARPA)",
    "--lm_scale": "HLG decoding is not implemented (--lm_weight weighs --lm)",
    "--decoder_scale": "HLG decoding is " + _NOT_HERE,
    "--r_decoder_scale": "HLG decoding is " + _NOT_HERE,
    "--context_bias_mode": "context biasing is --context_path FILE --context_score S here",
    "--context_list_path": "use --context_path",
    "--context_graph_score": "use --context_score",
    "--use_lora": "LoRA is " + _NOT_HERE,
    "--lora_ckpt_path": "LoRA is " + _NOT_HERE,
}


def _quote(value: str) -> str:
    """`value` as a Hydra override string (quoted: a path may hold `=`, `,` or brackets)."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def train_parser() -> argparse.ArgumentParser:
    """WeNet's wenet/bin/train.py flags that wenet_eff takes."""
    p = argparse.ArgumentParser(
        prog="python -m wenet_eff.bin.train",
        description="Train with WeNet's flags (or Hydra overrides: see the module docstring).",
    )
    p.add_argument("--config", required=True, help="train.yaml: WeNet's, ours or a recipe's")
    p.add_argument("--model_dir", required=True, help="the experiment directory")
    p.add_argument("--train_data", required=True, nargs="+", help="data.list or shard list")
    p.add_argument("--cv_data", required=True)
    p.add_argument("--data_type", choices=["raw", "shard"])
    p.add_argument("--checkpoint", help="newest checkpoint of --model_dir, or weights to start")
    p.add_argument("--tensorboard_dir", help="links DIR/<exp name> to model_dir/tensorboard")
    p.add_argument("--override_config", action="append", default=[], help="'key.path value'")
    p.add_argument("--num_workers", type=int)
    p.add_argument("--prefetch", type=int)
    p.add_argument("--pin_memory", action="store_true", help="accepted; batches are not pinned")
    p.add_argument("--use_amp", action="store_true", help="mixed precision: train.dtype=bf16")
    p.add_argument("--dtype", choices=["fp32", "bf16"])
    p.add_argument("--train_engine", choices=["torch_ddp", "deepspeed"])
    p.add_argument("--deepspeed_config")
    p.add_argument("--deepspeed.save_states", choices=["model_only", "model+optimizer"])
    p.add_argument("--ddp.dist_backend", choices=["nccl", "gloo"])
    p.add_argument("--timeout", type=int, help="accepted; ranks run in lockstep")
    p.add_argument("--device", choices=["cuda", "cpu"], help="cuda: cuda:LOCAL_RANK")
    p.add_argument("--gpu", type=int, help="one process on GPU N (-1: the CPU)")
    p.add_argument("--symbol_table", help="units.txt (tokenizer.units)")
    p.add_argument("--bpe_model", help="sentencepiece model (tokenizer.type=bpe)")
    p.add_argument("--non_lang_syms")
    p.add_argument("--cmvn", help="global_cmvn (cmvn.file)")
    return p


def is_wenet_command(argv: list[str]) -> bool:
    """Whether `argv` uses WeNet's flags (rather than Hydra's `key=value` overrides)."""
    flags = {*train_parser()._option_string_actions, *TRAIN_REFUSED}
    return any(arg.split("=")[0] in flags for arg in argv if arg.startswith("--"))


def refuse_unknown(parser: argparse.ArgumentParser, unknown: list[str], refused: dict) -> None:
    """parser.error naming the WeNet flags of `unknown` that `refused` explains, else all."""
    reasons = []
    for arg in unknown:
        flag = arg.split("=")[0]
        for name, why in refused.items():
            if flag == name or (name.endswith("_") and flag.startswith(name)):
                reasons.append(f"{flag}: {why}")
                break
    if reasons:
        parser.error("WeNet flags not supported here: " + "; ".join(reasons))
    if unknown:
        parser.error(
            f"unrecognized arguments: {' '.join(unknown)} (WeNet's flags and Hydra's key=value "
            "overrides do not mix: give config keys as --override_config 'key value')"
        )


def override_config(items: list[str]) -> list[str]:
    """WeNet's `--override_config` items (`key.path value`) as our `key=value` overrides.

    Raises:
        ValueError: an item that is not two words, or a WeNet key without equivalent (named).
    """
    overrides = []
    for item in items:
        words = item.split()
        if len(words) != 2:
            raise ValueError(f"--override_config {item!r}: expected 'key.path value'")
        try:
            overrides.append(f"{our_key(words[0])}={words[1]}")
        except KeyError as exc:
            raise ValueError(f"--override_config {item!r}: {exc.args[0]}") from None
    return overrides


def _checkpoint(checkpoint: str, model_dir: str) -> list[str]:
    """The overrides of WeNet's `--checkpoint` (see the module docstring)."""
    path = Path(checkpoint)
    if not path.is_file():
        raise ValueError(f"--checkpoint {checkpoint}: no such file")
    exp = Path(model_dir)
    inside = exp.is_dir() and path.resolve().parent == exp.resolve()
    names = [name for name, _ in list_checkpoints(exp)] if inside else []
    if not names:  # weights to start from (a pretrained model, or one put into model_dir)
        return [f"train.init_checkpoint={_quote(checkpoint)}"]
    if path.resolve().stem not in (names[-1], "final"):
        raise ValueError(
            f"--checkpoint {checkpoint}: a run resumes {model_dir} from its newest "
            f"checkpoint, {names[-1]}; to restart from {path.name}, train into a new "
            f"--model_dir with --checkpoint {checkpoint} (it then initialises the weights)"
        )
    return []


def train_overrides(args: argparse.Namespace) -> list[str]:
    """Our `key=value` overrides for the parsed WeNet flags `args`."""
    if len(args.train_data) > 1:
        raise ValueError(
            f"--train_data {' '.join(args.train_data)}: one list here (concatenate the lists)"
        )
    overrides = override_config(args.override_config)
    overrides.append(f"data.train_data={_quote(args.train_data[0])}")
    for flag, key in TRAIN_FLAGS.items():
        value = getattr(args, flag[2:], None)
        if value is not None:
            overrides.append(f"{key}={_quote(value) if isinstance(value, str) else value}")
    if args.bpe_model:
        overrides += ["tokenizer.type=bpe", f"tokenizer.bpe_model={_quote(args.bpe_model)}"]
    if args.use_amp:  # WeNet's is fp16 with a GradScaler; ours is bf16 autocast
        overrides.append("train.dtype=bf16")
    if args.device:
        overrides.append(f"train.device={'auto' if args.device == 'cuda' else 'cpu'}")
    if args.gpu is not None:
        overrides.append(f"train.device={'cpu' if args.gpu < 0 else f'cuda:{args.gpu}'}")
    if args.checkpoint:
        overrides += _checkpoint(args.checkpoint, args.model_dir)
    return overrides


def link_tensorboard(tensorboard_dir: str, model_dir: str) -> None:
    """`tensorboard_dir/<name of model_dir>` -> `model_dir/tensorboard` (WeNet's place)."""
    link = Path(tensorboard_dir) / Path(model_dir).resolve().name
    target = Path(model_dir).resolve() / "tensorboard"
    if link.is_symlink() and link.resolve() == target:
        return
    if link.exists() or link.is_symlink():
        logger.warning("%s exists: the TensorBoard events are in %s", link, target)
        return
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target, target_is_directory=True)


def train_config(argv: list[str]) -> DictConfig:
    """The training config of a WeNet train.py command line `argv` (exits with the reason
    when a flag or the config cannot be used)."""
    parser = train_parser()
    args, unknown = parser.parse_known_args(argv)
    refuse_unknown(parser, unknown, TRAIN_REFUSED)
    logging.basicConfig(
        level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"
    )
    try:
        overrides = train_overrides(args)
        with open(args.config, encoding="utf-8") as f:
            raw = yaml.safe_load(f) or {}
        if is_wenet_config(raw) and (problems := training_problems(raw)):
            raise ValueError(f"{args.config}: {'; '.join(problems)}")
        cfg = load_config(args.config, overrides)
    except (OSError, ValueError) as exc:
        sys.exit(f"wenet_eff.bin.train: {exc}")
    logger.info("WeNet flags: %s as %s", args.config, " ".join(overrides))
    if args.tensorboard_dir and int(os.environ.get("RANK", 0)) == 0:
        link_tensorboard(args.tensorboard_dir, args.model_dir)
    return cfg
