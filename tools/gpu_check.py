"""The GPU check: every part of `make gpu-check` on a CUDA machine, each within its time budget.

    python tools/gpu_check.py --out $OUT      (tools/gpu_check.sh installs the wheels first)

Parts, in order (budget in seconds; a part that outlives its budget, or the run's deadline, is
stopped and reported as timed out, and the next one starts):
  pytest       120  `pytest -m gpu`: training in fp32 / bf16 / fp16 + grad scaler, no CPU
                    tensors in CUDA forwards, the four decoding modes, streaming, MoE dispatch
                    and usage, QAT + packing, export + AOTInductor, torchaudio/kaldifeat fbank
  ddp           60  bin.train under torchrun, NCCL, one process per GPU: the mini model on the
                    carried .gpu_data (make gpu-data), bf16, 50 updates
  resume        40  the same command with train.max_steps=60: resumes at update 50, trains 10
  train_*       50  each: bench.train_throughput of paper_dense_225m, paper_moe_1b,
                    paper_dense_1b, bf16, batch 16 x 10 s, 30 tokens (frames/s, peak memory)
  moe_dispatch  30  bench.moe_rtf --models (none): dispatch vs the per-expert scan on 1,000
                    and 16,000 frames (paper and mini_moe layer shapes)
  rtf_b1       200  bench.decode_rtf of paper_dense_225m, batch 1 x 10 s: eager encoder and
                    CTC greedy, and the AOTInductor-compiled encoder (compiled here)
  rtf_b32      120  the same at batch 32 (the compile hits Inductor's caches)
The whole run stops by --deadline (default 560 s, inside the device tool's 600 s): the budgets
add up to more, so the last parts get what the earlier ones leave.

Writes OUT/gpu_check.log (every part's output), OUT/summary.json (per part: status, seconds,
figures) and OUT/bench/*.json (the benchmarks' JSON, with provenance), and prints a summary
table. Without CUDA it prints one line and exits 0.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = ".gpu_data"
PAPER_MODELS = ("paper_dense_225m", "paper_moe_1b", "paper_dense_1b")


@dataclass
class Part:
    """One step of the check: a command, its budget, and how to read its figures."""

    name: str
    budget: float
    cmd: list[str]
    figures: Callable[[], dict] = dict  # read after the part ran (its JSON, its checkpoint)


def _python(*args: str) -> list[str]:
    return [sys.executable, *args]


def _bench(name: str, out: Path, *args: str) -> list[str]:
    return _python("-m", "wenet_eff.bin.benchmark", name, "--out", str(out), *args)


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def _train_args(exp: Path, max_steps: int, gpus: int) -> list[str]:
    return [
        *_python("-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}"),
        "-m", "wenet_eff.bin.train", "model=mini",
        f"data.train_data={DATA}/train.list", f"data.cv_data={DATA}/cv.list",
        f"tokenizer.units={DATA}/units.txt", f"cmvn.file={DATA}/global_cmvn",
        f"train.exp_dir={exp}", f"train.max_steps={max_steps}", "train.dtype=bf16",
        "train.log_interval=10", "data.batch_size=16", "data.num_workers=4",
        "optim.warmup_steps=20",
    ]  # fmt: skip


def _checkpoint_step(exp: Path, name: str) -> dict:
    """What a checkpoint's yaml records of the run: updates, epoch, losses, skipped steps."""
    from wenet_eff.train import checkpoint as ckpt

    path = exp / f"{name}.yaml"
    if not path.exists():
        return {"checkpoint": f"{name} missing"}
    info = ckpt.read_info(path)
    keys = ("step", "epoch", "train_loss", "cv_loss", "nonfinite_steps", "train_time_s")
    return {"checkpoint": name, **{k: info.get(k) for k in keys}}


def parts(out: Path, work: Path, gpus: int) -> list[Part]:
    """Every part of the check (see the module docstring)."""
    bench = out / "bench"
    exp = work / "exp_ddp"
    result = [
        Part(
            "pytest",
            120,
            _python("-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "tests/gpu"),
        ),
        Part("ddp", 60, _train_args(exp, 50, gpus), lambda: _checkpoint_step(exp, "step_50")),
        Part("resume", 40, _train_args(exp, 60, gpus), lambda: _checkpoint_step(exp, "step_60")),
    ]
    for model in PAPER_MODELS:
        path = bench / f"train_{model}.json"
        args = ["--model", model, "--device", "cuda", "--dtype", "bf16", "--batch_size", "16",
                "--frames", "1000", "--tokens", "30", "--warmup", "2",
                "--repeats", "5"]  # fmt: skip
        result.append(
            Part(
                f"train_{model}",
                50,
                _bench("train_throughput", path, *args),
                lambda p=path: {
                    k: _read(p).get(k)
                    for k in ("frames_per_second", "seconds_per_step", "peak_gpu_memory_gb")
                },
            )
        )
    moe = bench / "moe_dispatch.json"
    result.append(
        Part(
            "moe_dispatch",
            30,
            _bench("moe_rtf", moe, "--device", "cuda", "--frames", "1000", "16000", "--models"),
            lambda: {
                f"{d['frames']}f {d['dim']}x{d['units']}": round(d["infer_speedup"], 2)
                for d in _read(moe).get("dispatch", [])
            },
        )
    )
    for batch, budget in ((1, 200), (32, 120)):
        path = bench / f"rtf_b{batch}.json"
        args = ["--model", "paper_dense_225m", "--device", "cuda", "--batch_size", str(batch),
                "--seconds", "10", "--repeats", "5", "--chunks", "16", "--exported",
                "--methods", "ctc_greedy_search"]  # fmt: skip
        result.append(
            Part(
                f"rtf_b{batch}",
                budget,
                _bench("decode_rtf", path, *args),
                lambda p=path: {
                    **{r["stage"]: round(r["rtf"], 5) for r in _read(p).get("results", [])},
                    "compile_s": _read(p).get("export_compile_seconds"),
                },
            )
        )
    return result


def run_part(part: Part, log, deadline: float) -> dict:
    """Run one part with its budget (cut to the deadline); its output goes to `log`."""
    left = deadline - time.monotonic()
    row = {"part": part.name, "budget_s": part.budget}
    if left < 5:
        return {**row, "status": "not run (deadline)", "seconds": 0.0}
    budget = min(part.budget, left)
    log.write(f"\n===== {part.name} (budget {budget:.0f} s): {' '.join(part.cmd)}\n")
    log.flush()
    start = time.monotonic()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("CI", None)  # pytest: a skip here is a skip, not CI's failure
    # its own process group, so a timeout also stops what it started (torchrun's workers)
    proc = subprocess.Popen(
        part.cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    try:
        code = proc.wait(timeout=budget)
        status = "ok" if code == 0 else f"failed (exit {code})"
    except subprocess.TimeoutExpired:
        status = f"timed out after {budget:.0f} s"
    finally:  # whatever of the group is left
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    row.update(status=status, seconds=round(time.monotonic() - start, 1))
    try:
        row["figures"] = part.figures()
    except Exception as exc:  # a part that failed may leave partial files
        row["figures"] = {"error": repr(exc)}
    log.write(f"----- {part.name}: {status} in {row['seconds']} s\n")
    log.flush()
    return row


def environment() -> dict:
    import torch

    return {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "gpus": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "python": sys.version.split()[0],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "gpu_check_out")))
    p.add_argument("--work", type=Path, default=Path("/tmp/wenet_eff_gpu_check"))
    p.add_argument("--deadline", type=float, default=560, help="seconds for all parts")
    p.add_argument("--only", nargs="*", default=[], help="run only these parts")
    args = p.parse_args(argv)
    start = time.monotonic()
    try:
        import torch

        cuda = torch.cuda.is_available()
    except ImportError:
        cuda = False
    if not cuda:
        print("gpu-check: no CUDA device here (torch.cuda.is_available() is false); nothing to do")
        return 0
    if not (REPO / DATA / "train.list").exists():
        print(f"gpu-check: {DATA}/ is missing: run make gpu-data here and carry {DATA}")
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench").mkdir(exist_ok=True)
    summary = {"environment": environment(), "parts": []}
    print(json.dumps(summary["environment"]), flush=True)
    deadline = start + args.deadline
    with open(args.out / "gpu_check.log", "a", encoding="utf-8") as log:
        for part in parts(args.out, args.work, torch.cuda.device_count()):
            if args.only and part.name not in args.only:
                continue
            row = run_part(part, log, deadline)
            summary["parts"].append(row)
            print(f"{row['part']:<26}{row['status']:<24}{row['seconds']:>7.1f} s", flush=True)
            (args.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print_summary(summary)
    return 0 if all(r["status"] == "ok" for r in summary["parts"]) else 1


def print_summary(summary: dict) -> None:
    env = summary["environment"]
    print(f"\ngpu-check on {', '.join(env['gpus'])}: torch {env['torch']} (CUDA {env['cuda']})")
    print(f"{'part':<26}{'status':<24}{'seconds':>8}  figures")
    for row in summary["parts"]:
        figures = ", ".join(f"{k}={v}" for k, v in row.get("figures", {}).items())
        print(f"{row['part']:<26}{row['status']:<24}{row['seconds']:>8.1f}  {figures}")


if __name__ == "__main__":
    sys.exit(main())
