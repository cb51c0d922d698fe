"""What every benchmark and results table shares: the model arguments, building the model,
and the JSON record with its provenance (command, git commit, date, machine).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from omegaconf import DictConfig

from wenet_eff import compress
from wenet_eff.config import load_config
from wenet_eff.export.int8 import cpu_info
from wenet_eff.model import ASRModel, build_model

# the checkout wenet_eff runs from (a git work tree when installed editable)
_REPO = Path(__file__).resolve().parents[2]


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


def add_device_arg(p: argparse.ArgumentParser) -> None:
    """--device: where the benchmark runs (cpu, cuda, cuda:N)."""
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")


def build_bench_model(args: argparse.Namespace) -> tuple[DictConfig, ASRModel]:
    """Set the thread count and seed, then build (and optionally load) the model, on
    `args.device` when the benchmark takes --device."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    vocab = args.vocab_size or (0 if args.config else 5002)
    overrides = ([f"model.vocab_size={vocab}"] if vocab else []) + list(args.override)
    cfg = load_config(args.config or args.model, overrides)
    model = build_model(cfg)
    if args.checkpoint:
        compress.load_weights(model, args.checkpoint, "--checkpoint")
    return cfg, model.to(getattr(args, "device", "cpu"))


def synchronize(device: torch.device | str) -> None:
    """Wait for the kernels queued on `device` (CUDA runs them asynchronously)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def mean_seconds(
    fn: Callable[[], object], repeats: int, device: torch.device | str = "cpu"
) -> float:
    """Mean wall seconds of `fn()` over `repeats` runs after one warm-up run (allocator,
    thread pool, CUDA kernels' first launch); on CUDA the time includes the queued GPU work."""
    fn()
    synchronize(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    synchronize(device)
    return (time.perf_counter() - start) / repeats


def environment(device: torch.device | str = "cpu") -> dict:
    """Where the numbers were measured (with the GPU's name on CUDA)."""
    env = {
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    if torch.device(device).type == "cuda":
        env["device"] = torch.cuda.get_device_name(device)
    return env


def command_line() -> str:
    """This process's command as it would be typed again: `python -m MODULE ARGS` for a module
    run with -m, `python SCRIPT ARGS` for a script (its path as given)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    module = spec.name.removesuffix(".__main__") if spec is not None else ""
    head = ["python", "-m", module] if module else ["python", sys.argv[0]]
    return shlex.join(head + sys.argv[1:])


def git_commit() -> tuple[str, bool]:
    """(commit, uncommitted changes to tracked files) of the checkout wenet_eff runs from;
    ("", False) when it is not a git work tree (an installed wheel)."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(_REPO), *args], capture_output=True, text=True, check=True,
            timeout=30,
        ).stdout.strip()  # fmt: skip

    if not (_REPO / ".git").exists():
        return "", False
    try:
        return git("rev-parse", "HEAD"), bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return "", False


def isa_class(info: dict) -> str:
    """The vector extensions that decide GEMM speeds, e.g. `AVX2`, `AVX-512 VNNI + AMX`."""
    if info["avx512f"]:
        vnni = " VNNI" if "avx512_vnni" in info["int8_dot"] else ""
        return "AVX-512" + vnni + (" + AMX" if "amx_int8" in info["int8_dot"] else "")
    if info["avx2"]:
        return "AVX2" + (" + AVX-VNNI" if "avx_vnni" in info["int8_dot"] else "")
    return f"{platform.machine()}, no AVX2"


def provenance(threads: int | None = None) -> dict:
    """Where a result comes from: this process's command, the git commit, the date (UTC), the
    machine (CPU model, its vector extensions, cores) and `threads` where known."""
    commit, dirty = git_commit()
    info = cpu_info()
    return {
        "command": command_line(),
        "commit": commit,
        "dirty": dirty,
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "cpu": info["model"] or platform.processor() or platform.machine(),
        "isa": isa_class(info),
        "cores": os.cpu_count(),
        "threads": threads,
    }


def write_json(result: dict, out: str) -> dict:
    """Add its `provenance` to `result` (in place; threads from the result's own `threads`)
    and write it, so `python -m wenet_eff.bin.tables --results_dir` can keep it and render
    RESULTS.md from it. Returns `result`, as written."""
    result["provenance"] = provenance(result.get("threads"))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out}", file=sys.stderr)
    return result
