"""What every benchmark shares: the model arguments, building the model, the JSON record."""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path

import torch
from omegaconf import DictConfig

from wenet_eff import compress
from wenet_eff.config import load_config
from wenet_eff.model import ASRModel, build_model


def add_model_args(p: argparse.ArgumentParser, out: str) -> None:
    """--model/--config/--checkpoint/--vocab_size/--threads/--override/--out."""
    p.add_argument("--model", default="u2pp_conformer", help="packaged model config")
    p.add_argument("--config", default="", help="or a train.yaml path (its own vocabulary)")
    p.add_argument("--checkpoint", default="", help="weights to load (default: random)")
    p.add_argument(
        "--vocab_size", type=int, default=0, help="vocabulary (default: 5002 for --model)"
    )
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--override", nargs="*", default=[], help="config overrides key=value")
    p.add_argument("--out", default=out, help="JSON result path")


def build_bench_model(args: argparse.Namespace) -> tuple[DictConfig, ASRModel]:
    """Set the thread count and seed, then build (and optionally load) the model."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    vocab = args.vocab_size or (0 if args.config else 5002)
    overrides = ([f"model.vocab_size={vocab}"] if vocab else []) + list(args.override)
    cfg = load_config(args.config or args.model, overrides)
    model = build_model(cfg)
    if args.checkpoint:
        compress.load_weights(model, args.checkpoint, "--checkpoint")
    return cfg, model


def environment() -> dict:
    """Where the numbers were measured."""
    return {
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


def write_json(result: dict, out: str) -> None:
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")
