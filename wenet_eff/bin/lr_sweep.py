"""Learning-rate sweep per stability variant: which learning rates each one survives.

    python -m wenet_eff.bin.lr_sweep --out exp/lr_sweep \\
        --config_dir recipes/mini/s0/conf --config_name train_mini \\
        --variants none qk_norm qk_norm_cap qkv_norm qk_proj_fc2_norm \\
        --lrs 0.004 0.008 0.016 0.032 --steps 400 --warmup 50 --jobs 2 -- \\
        data.train_data=... data.cv_data=... tokenizer.units=... cmvn.file=...

Every (variant, lr) pair is one real training run (`python -m wenet_eff.bin.train` in a
subprocess, `--jobs` at a time, `OMP_NUM_THREADS` = cores / jobs) with `stability=VARIANT`,
a constant learning rate after `--warmup` linear warmup updates, `--steps` updates, the
output-norm monitor every `--monitor_interval` updates and the divergence guard in stop mode.
Arguments after `--` are Hydra overrides shared by all runs. A run whose exp dir already has
its `sweep_result.json` is not run again (its result is read again from its exp dir, with the
current rules), so an interrupted sweep continues where it stopped.

A run's status is `diverged` when it stopped with a divergence (non-finite losses or the
guard's loss spikes), when its final loss (mean of the last `--final_fraction` of logged
losses) is above `--diverge_ratio` x the lowest running mean of the same width it reached
before, or when its cv loss at the end is above `--cv_ratio` x the lowest cv loss of the whole
sweep (a run that got worse from its first updates on never had a low running mean to rise
from, but ends far above what the same budget reaches at a good learning rate); `ok`
otherwise. The cv loss (the dev list at the last update, the same utterances for every run)
tells how far a run got: one that never leaves the initial CTC plateau is `ok` by these rules,
with a cv loss that is high but not `--cv_ratio` x the best. With `--max_logit X`, an `ok`
run whose largest attention logit went above X is `runaway` instead: its loss has not blown up
(yet), but at logits of ~1e4 the softmax is one-hot (attention entropy collapse, Dehghani et
al. 2023). A variant's highest
stable learning rate is the largest of the ladder with status `ok` whose smaller learning rates
are `ok` too (a lucky survivor above a failure does not count).

Writes OUT/sweep.json, prints the table "variant x highest stable lr, final loss" plus the full
grid, and plots OUT/linear_norms.png: the output RMS per layer role (of the linear layer
itself, before any LayerNorm after it) and the max attention logit over updates, for the
baseline at its first failing learning rate (or the ladder's highest) beside the other
variants at that rate.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from wenet_eff.train import checkpoint as ckpt

VARIANTS = (
    "none",
    "qk_norm",
    "qk_norm_cap",
    "qkv_norm",
    "qk_proj_fc2_norm",
    "qk_proj_fc2_embed_norm",
)
ROLES = ("attn.qkv", "attn.out", "ffn.w_1", "ffn.w_2")
ROLE_NAMES = {"attn.qkv": "QKV", "attn.out": "Proj", "ffn.w_1": "FC1", "ffn.w_2": "FC2"}


def run_dir(out: Path, variant: str, lr: float) -> Path:
    return out / variant / f"lr{lr:g}"


def train_command(args: argparse.Namespace, variant: str, lr: float, exp: Path) -> list[str]:
    cmd = [sys.executable, "-m", "wenet_eff.bin.train"]
    if args.config_dir:
        cmd += ["--config-dir", str(Path(args.config_dir).resolve())]
    if args.config_name:
        cmd += ["--config-name", args.config_name]
    return cmd + [
        *args.overrides,
        f"stability={variant}",
        f"optim.lr={lr}",
        "optim.scheduler=constant",
        f"optim.warmup_steps={args.warmup}",
        f"train.max_steps={args.steps}",
        "train.max_epoch=1000",
        f"train.log_interval={args.log_interval}",
        f"train.monitor_interval={args.monitor_interval}",
        "train.save_interval=0",
        "train.guard.enabled=true",
        "train.guard.action=stop",
        f"train.exp_dir={exp}",
    ]


def scalars(exp: Path) -> dict[str, list[tuple[int, float]]]:
    """Every TensorBoard scalar of a run: tag -> [(step, value)] (the newest per step)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(exp / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    out = {}
    for tag in events.Tags()["scalars"]:
        by_step = {e.step: e.value for e in events.Scalars(tag)}
        out[tag] = [[step, value] for step, value in sorted(by_step.items())]
    return out


def judge(losses: list[float], stopped: bool, args: argparse.Namespace) -> tuple[str, float, float]:
    """(status, final loss, lowest running mean) of a run's logged training losses."""
    finite = [v for v in losses if math.isfinite(v)]
    if not finite:
        return "diverged", math.nan, math.nan
    width = max(1, round(len(finite) * args.final_fraction))
    means = [sum(finite[i : i + width]) / width for i in range(len(finite) - width + 1)]
    final, best = means[-1], min(means)
    if stopped or final > args.diverge_ratio * best:
        return "diverged", final, best
    return "ok", final, best


def collect(exp: Path, returncode: int, log: str, args: argparse.Namespace) -> dict:
    """The result of a finished run, from its TensorBoard scalars and exit status."""
    tags = scalars(exp) if (exp / "tensorboard").is_dir() else {}
    losses = [v for _, v in tags.get("train/loss", [])]
    # bin.train logs TrainingDiverged's message ("... training diverged ...") and exits 1
    stopped = returncode == 1 and "training diverged" in log.lower()
    status, final, best = judge(losses, stopped, args)
    logits = tags.get("stability/attn_logit_max/all", [])
    peak_logit = max((v for _, v in logits), default=math.nan)
    if status == "ok" and args.max_logit > 0 and logits and not peak_logit <= args.max_logit:
        status = "runaway"
    done = ckpt.list_checkpoints(exp)  # the run's last checkpoint holds its cv loss
    cv_loss = done[-1][1].get("cv_loss") if done else None
    if returncode != 0 and not stopped:
        status = "failed"
    norms = {
        role: tags.get(f"stability/linear_rms_mean/{role}", [])
        for role in ROLES
        if f"stability/linear_rms_mean/{role}" in tags
    }
    return {
        "status": status,
        "returncode": returncode,
        "stopped_by": (log.strip().splitlines() or [""])[-1][-400:] if stopped else "",
        "steps": tags["train/loss"][-1][0] if tags.get("train/loss") else 0,
        "final_loss": final,
        "best_loss": best,
        "cv_loss": cv_loss if cv_loss is not None and math.isfinite(cv_loss) else None,
        "losses": tags.get("train/loss", []),
        "linear_rms_mean": norms,
        "attn_logit_max": logits,
        "peak_attn_logit": peak_logit,
    }


def run_all(args: argparse.Namespace, out: Path) -> dict[tuple[str, float], dict]:
    """Run (or reuse) every (variant, lr) pair, `args.jobs` at a time."""
    todo, results = [], {}
    for variant in args.variants:
        for lr in args.lrs:
            exp = run_dir(out, variant, lr)
            if (exp / "sweep_result.json").is_file():
                saved = json.loads((exp / "sweep_result.json").read_text())
                log = (exp / "sweep.log").read_text()
                results[variant, lr] = {
                    **{k: saved[k] for k in ("variant", "lr", "seconds")},
                    **collect(exp, saved["returncode"], log, args),
                }
            else:
                todo.append((variant, lr))
    threads = max(1, (os.cpu_count() or 1) // args.jobs) if args.threads <= 0 else args.threads
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    running: list[tuple[str, float, subprocess.Popen, Path, float]] = []
    total, done = len(todo), 0
    while todo or running:
        while todo and len(running) < args.jobs:
            variant, lr = todo.pop(0)
            exp = run_dir(out, variant, lr)
            exp.mkdir(parents=True, exist_ok=True)
            log = open(exp / "sweep.log", "w")  # noqa: SIM115 -- closed when the run ends
            proc = subprocess.Popen(
                train_command(args, variant, lr, exp), stdout=log, stderr=subprocess.STDOUT, env=env
            )
            running.append((variant, lr, proc, exp, time.perf_counter()))
        time.sleep(1.0)
        for item in list(running):
            variant, lr, proc, exp, start = item
            if proc.poll() is None:
                continue
            running.remove(item)
            done += 1
            result = {
                "variant": variant,
                "lr": lr,
                "seconds": round(time.perf_counter() - start, 1),
                **collect(exp, proc.returncode, (exp / "sweep.log").read_text(), args),
            }
            (exp / "sweep_result.json").write_text(json.dumps(result))
            results[variant, lr] = result
            print(
                f"[{done}/{total}] {variant:>17} lr {lr:<8g} {result['status']:<12} "
                f"final loss {result['final_loss']:.2f} ({result['steps']} updates, "
                f"{result['seconds']:.0f} s)",
                flush=True,
            )
    return results


def judge_against_sweep(results: dict, args: argparse.Namespace) -> None:
    """The `--cv_ratio` rule, in place: it needs every run's cv loss."""
    cvs = [r["cv_loss"] for r in results.values() if r.get("cv_loss") is not None]
    if not cvs or args.cv_ratio <= 0:
        return
    best = min(cvs)
    for r in results.values():
        cv = r.get("cv_loss")
        if r["status"] in ("ok", "runaway") and cv is not None and cv > args.cv_ratio * best:
            r["status"] = "diverged"
            r["diverged_by"] = f"cv loss {cv:.2f} > {args.cv_ratio:g} x the sweep's best {best:.2f}"


def highest_stable(results: dict, variant: str, lrs: list[float]) -> float | None:
    best = None
    for lr in sorted(lrs):
        if results[variant, lr]["status"] != "ok":
            break
        best = lr
    return best


def summarise(results: dict, args: argparse.Namespace) -> dict:
    lrs = sorted(args.lrs)
    rows = []
    reference = highest_stable(results, "qk_norm", lrs) if "qk_norm" in args.variants else None
    for variant in args.variants:
        top = highest_stable(results, variant, lrs)
        rows.append(
            {
                "variant": variant,
                "highest_stable_lr": top,
                "final_loss_at_it": results[variant, top]["final_loss"] if top else None,
                "cv_loss_at_it": results[variant, top].get("cv_loss") if top else None,
                "ratio_vs_qk_norm": top / reference if top and reference else None,
                "grid": {f"{lr:g}": (results[variant, lr]["status"],
                                     results[variant, lr]["final_loss"],
                                     results[variant, lr].get("cv_loss")) for lr in lrs},
            }
        )  # fmt: skip
    return {"lrs": lrs, "max_logit": args.max_logit, "rows": rows}


def print_tables(summary: dict) -> None:
    print("\nvariant x highest learning rate without divergence (the ladder's lrs)")
    if summary["max_logit"]:
        print(f"(nor runaway attention logits above {summary['max_logit']:g})")
    print(
        f"{'variant':>18} {'highest stable lr':>18} {'final loss':>11} {'cv loss':>9} "
        f"{'vs qk_norm':>11}"
    )

    def num(value: float | None) -> str:
        return f"{value:.2f}" if value is not None else "-"

    for row in summary["rows"]:
        top = f"{row['highest_stable_lr']:g}" if row["highest_stable_lr"] else "none"
        ratio = f"{row['ratio_vs_qk_norm']:.2f}x" if row["ratio_vs_qk_norm"] else "-"
        print(
            f"{row['variant']:>18} {top:>18} {num(row['final_loss_at_it']):>11} "
            f"{num(row['cv_loss_at_it']):>9} {ratio:>11}"
        )
    lrs = summary["lrs"]
    print("\ncv loss at the end (status) per learning rate")
    print(f"{'variant':>18}" + "".join(f"{'lr ' + format(lr, 'g'):>22}" for lr in lrs))
    for row in summary["rows"]:
        cells = []
        for lr in lrs:
            status, _, cv = row["grid"][f"{lr:g}"]
            cells.append(f"{cv:.2f} ({status})" if cv is not None else f"- ({status})")
        print(f"{row['variant']:>18}" + "".join(f"{c:>22}" for c in cells))


def plot_norms(results: dict, args: argparse.Namespace, path: Path) -> str | None:
    """Output RMS per role over updates at the baseline's first failing lr (or its highest)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = args.variants[0]
    lrs = sorted(args.lrs)
    failing = [lr for lr in lrs if results[base, lr]["status"] != "ok"]
    lr = failing[0] if failing else lrs[-1]
    fig, axes = plt.subplots(1, len(ROLES) + 1, figsize=(4 * (len(ROLES) + 1), 3.6), sharex=True)
    panels = [(role, f"{ROLE_NAMES[role]} output RMS") for role in ROLES]
    panels.append(("logit", "max attention logit"))
    for ax, (key, title) in zip(axes, panels, strict=True):
        for variant in args.variants:
            run = results[variant, lr]
            series = run["attn_logit_max"] if key == "logit" else run["linear_rms_mean"].get(key)
            if series:
                steps, values = zip(*series, strict=True)
                style = "-" if variant == base else "--"
                ax.plot(steps, values, style, label=f"{variant} ({run['status']})")
        ax.set_title(title)
        ax.set_xlabel("update")
        ax.set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.suptitle(f"linear-layer output RMS (mean over layers) at lr {lr:g}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return f"{lr:g}"


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    overrides = argv[argv.index("--") + 1 :] if "--" in argv else []
    argv = argv[: argv.index("--")] if "--" in argv else argv
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", required=True, help="sweep directory (one exp dir per run)")
    p.add_argument("--config_dir", default="", help="Hydra config dir (e.g. a recipe's conf/)")
    p.add_argument("--config_name", default="", help="its config (default: the packaged train)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), help="stability=... names")
    p.add_argument("--lrs", nargs="+", type=float, required=True, help="the learning-rate ladder")
    p.add_argument("--steps", type=int, default=400, help="updates per run")
    p.add_argument("--warmup", type=int, default=50, help="linear warmup updates")
    p.add_argument("--log_interval", type=int, default=10)
    p.add_argument("--monitor_interval", type=int, default=10)
    p.add_argument("--jobs", type=int, default=1, help="runs at a time")
    p.add_argument("--threads", type=int, default=0, help="threads per run (0: cores / jobs)")
    p.add_argument("--final_fraction", type=float, default=0.2)
    p.add_argument("--diverge_ratio", type=float, default=1.5)
    p.add_argument(
        "--cv_ratio",
        type=float,
        default=2.0,
        help="cv loss above this x the sweep's best: diverged",
    )
    p.add_argument("--max_logit", type=float, default=0.0, help=">0: runs above it are `runaway`")
    args = p.parse_args(argv)
    args.overrides = overrides
    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = run_all(args, out)
    judge_against_sweep(results, args)
    summary = summarise(results, args)
    print_tables(summary)
    plot_lr = plot_norms(results, args, out / "linear_norms.png")
    record = {
        "variants": args.variants,
        "lrs": sorted(args.lrs),
        "steps": args.steps,
        "warmup": args.warmup,
        "overrides": overrides,
        "summary": summary,
        "plot": {"path": str(out / "linear_norms.png"), "lr": plot_lr},
        "runs": [results[v, lr] for v in args.variants for lr in sorted(args.lrs)],
    }
    (out / "sweep.json").write_text(json.dumps(record, indent=1))
    print(f"\nwrote {out / 'sweep.json'} and {out / 'linear_norms.png'}")
    return record


if __name__ == "__main__":
    main()
