"""Training throughput of a model config on this machine: input frames per second, the time
of each step's phases, peak memory.

    python -m wenet_eff.bench.train_throughput --model u2pp_conformer --threads 2
    python -m wenet_eff.bench.train_throughput --model mini_moe --dtype auto --compile
    python -m wenet_eff.bench.train_throughput --model paper_moe_1b --device cuda --dtype bf16

One timed iteration = forward + backward + optimizer (gradient clipping, the Adam step of
`train.optim`'s optimizer, clearing the gradients) on a synthetic batch (random 80-dim
features, `--batch_size` x `--frames` frames; random targets of `--tokens` tokens); each phase
is timed on its own (on CUDA up to its GPU work: the device is synchronized between phases).
Throughput counts input feature frames (10 ms each), so it also reads as seconds of audio
trained per second / 100. `--dtype auto` resolves as `train.dtype=auto` does
(train/precision.py). `--compile` runs the model through `torch.compile`: the first step
compiles (its time is reported apart, less a timed step's: the compile time), the timed steps
run the compiled model. Peak memory: the process's peak resident set (RSS; the model build
included), and on CUDA the peak GPU memory of the timed steps. Writes JSON and prints a table.

`--wenet_dir DIR` (a WeNet source tree) times WeNet's own model of the same config instead,
against ours: `wenet_baseline` builds it with WeNet's code and loads our model's weights into
it (their losses on the batch, in eval mode with full context, must agree), and the two train
on the same batch, interleaved, WeNet's with the Adam its trainer builds. It reports each
side's median and fastest step and phases, and the ratios ours / WeNet's:

    python -m wenet_eff.bench.train_throughput --model u2pp_conformer --threads 2 \
        --batch_size 4 --frames 600 --repeats 5 --wenet_dir /path/to/wenet
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from collections.abc import Callable

import torch

from wenet_eff.bench.common import (
    add_device_arg,
    add_model_args,
    build_bench_model,
    environment,
    synchronize,
    write_json,
)
from wenet_eff.bench.wenet_baseline import (
    build_wenet_model,
    loss_check,
    wenet_optimizer,
    wenet_version,
)
from wenet_eff.train.optim import build_optimizer
from wenet_eff.train.precision import DTYPES, resolve_dtype

PHASES = ("forward", "backward", "optimizer")
LOSS_RTOL = 1e-4  # the same weights' losses in ours and WeNet's model (float rounding: ~1e-7)


def make_batch(args: argparse.Namespace, cfg, model: torch.nn.Module) -> tuple[torch.Tensor, ...]:
    """A synthetic batch of `args` sizes: (feats (B, T, input_dim) random, feats_lengths (B,),
    target (B, tokens) of random text ids, target_lengths (B,)), on `args.device`."""
    device = torch.device(args.device)
    feats = torch.randn(args.batch_size, args.frames, cfg.model.input_dim, device=device)
    feats_lengths = torch.full((args.batch_size,), args.frames, device=device)
    text_ids = model.text_ids()  # neither blank nor sos/eos
    target = text_ids[torch.randint(len(text_ids), (args.batch_size, args.tokens))].to(device)
    target_lengths = torch.full((args.batch_size,), args.tokens, device=device)
    return feats, feats_lengths, target, target_lengths


def make_step(
    args: argparse.Namespace,
    cfg,
    model: torch.nn.Module,
    module: torch.nn.Module | None = None,
    batch: tuple[torch.Tensor, ...] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
) -> Callable[[], dict[str, float]]:
    """One training iteration on a fixed batch (`batch`, default a `make_batch` of `args`
    sizes; in bf16 autocast when `args.dtype` is bf16), run through `module` (default:
    `model`; e.g. its compiled form), stepping `optimizer` (default: `train.optim`'s of
    `model`'s parameters). The step returns the seconds of each of PHASES and the loss."""
    model.train()
    module = model if module is None else module
    optimizer = optimizer or build_optimizer(model.parameters(), cfg.optim)
    device = torch.device(args.device)
    batch = batch or make_batch(args, cfg, model)

    def step() -> dict[str, float]:
        cpu = time.process_time()
        marks = [time.perf_counter()]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.dtype == "bf16"):
            loss = module(*batch)["loss"]
        synchronize(device)
        marks.append(time.perf_counter())
        loss.backward()
        synchronize(device)
        marks.append(time.perf_counter())
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        synchronize(device)
        marks.append(time.perf_counter())
        seconds = {phase: marks[i + 1] - marks[i] for i, phase in enumerate(PHASES)}
        return {**seconds, "cpu": time.process_time() - cpu, "loss": float(loss.detach())}

    return step


def peak_rss_mb() -> float:
    """This process's peak resident set so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(args: argparse.Namespace) -> dict:
    """Time `args.repeats` training iterations after `args.warmup` untimed ones (at least one
    with --compile: the compiling step)."""
    cfg, model = build_bench_model(args)
    dtype, why = resolve_dtype(args.dtype, cfg.model.encoder.output_size, torch.device(args.device))
    module = torch.compile(model) if args.compile else model
    step = make_step(argparse.Namespace(**{**vars(args), "dtype": dtype}), cfg, model, module)
    first = time.perf_counter()
    for _ in range(max(args.warmup, int(args.compile))):
        step()
    first = time.perf_counter() - first if args.compile else None
    cuda = torch.device(args.device).type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(args.device)
    steps = [step() for _ in range(args.repeats)]
    times = [sum(s[phase] for phase in PHASES) for s in steps]
    frames = args.batch_size * args.frames
    mean = sum(times) / len(times)
    return {
        "model": cfg.model.name,
        "params": model.num_params(),
        "dtype": dtype,
        "dtype_setting": args.dtype,
        "dtype_reason": why,
        "compile": args.compile,
        "batch_size": args.batch_size,
        "frames": args.frames,
        "tokens": args.tokens,
        "vocab_size": model.vocab_size,
        "repeats": args.repeats,
        "seconds_per_step": mean,
        "min_seconds_per_step": min(times),
        "phase_ms": {p: 1e3 * sum(s[p] for s in steps) / len(steps) for p in PHASES},
        # the warm-up steps (the first compiles) less as many timed steps
        "compile_seconds": first - max(args.warmup, 1) * statistics.median(times)
        if first is not None
        else None,
        "frames_per_second": frames / mean,
        "losses": [s["loss"] for s in steps],
        "peak_rss_mb": peak_rss_mb(),
        "peak_gpu_memory_gb": torch.cuda.max_memory_allocated(args.device) / 2**30
        if cuda
        else None,
        **environment(args.device),
    }


def side_stats(steps: list[dict[str, float]], frames: int) -> dict:
    """One model's timed steps: median and fastest step, median phase times, frames/s at the
    median, the process's CPU seconds per step (all its threads: on a shared machine the work
    done, without the time spent descheduled), the losses."""
    times = [sum(s[phase] for phase in PHASES) for s in steps]
    median = statistics.median(times)
    return {
        "median_seconds": median,
        "min_seconds": min(times),
        "seconds": times,
        "median_cpu_seconds": statistics.median(s["cpu"] for s in steps),
        "cpu_seconds": [s["cpu"] for s in steps],
        "phase_ms": {p: 1e3 * statistics.median(s[p] for s in steps) for p in PHASES},
        "frames_per_second": frames / median,
        "losses": [s["loss"] for s in steps],
    }


def optimizer_name(optimizer: torch.optim.Optimizer) -> str:
    """e.g. `Adam (fused)`, `Adam (for-loop)`: the class and the kernel its step runs."""
    group = optimizer.param_groups[0]
    if group.get("fused"):
        kernel = "fused"
    elif group.get("foreach") is None:
        kernel = "torch's default: for-loop on CPU, foreach on CUDA"
    else:
        kernel = "foreach" if group["foreach"] else "for-loop"
    return f"{type(optimizer).__name__} ({kernel})"


def run_versus_wenet(args: argparse.Namespace) -> dict:
    """Our model and WeNet's (`wenet_baseline`: WeNet's code, our weights, WeNet's Adam) train
    on one batch, interleaved: after `args.warmup` untimed steps of each, `args.repeats`
    rounds of one step each, the order reversed every other round, so the machine's load
    falls on both alike. Ratios: ours / WeNet's, of the median and of the fastest step."""
    cfg, model = build_bench_model(args)
    dtype, why = resolve_dtype(args.dtype, cfg.model.encoder.output_size, torch.device(args.device))
    wenet = build_wenet_model(args.wenet_dir, cfg, model)
    batch = make_batch(args, cfg, model)
    check = loss_check(model, wenet, batch)
    if check["relative_difference"] > LOSS_RTOL:
        raise RuntimeError(
            f"the same weights give different losses: ours {check['ours']}, WeNet's "
            f"{check['wenet']} ({args.wenet_dir}); the models differ, their times do not compare"
        )
    step_args = argparse.Namespace(**{**vars(args), "dtype": dtype})
    optimizers = {
        "ours": build_optimizer(model.parameters(), cfg.optim),
        "wenet": wenet_optimizer(wenet.parameters(), cfg),
    }
    steps = {
        side: make_step(step_args, cfg, m, batch=batch, optimizer=optimizers[side])
        for side, m in (("ours", model), ("wenet", wenet))
    }
    for _ in range(args.warmup):
        for step in steps.values():
            step()
    timed: dict[str, list] = {side: [] for side in steps}
    for round_ in range(args.repeats):
        for side in list(steps)[:: 1 if round_ % 2 == 0 else -1]:
            timed[side].append(steps[side]())
    frames = args.batch_size * args.frames
    sides = {side: side_stats(timed[side], frames) for side in steps}
    ours, theirs = sides["ours"], sides["wenet"]
    return {
        "model": cfg.model.name,
        "params": model.num_params(),
        "dtype": dtype,
        "dtype_setting": args.dtype,
        "dtype_reason": why,
        "batch_size": args.batch_size,
        "frames": args.frames,
        "tokens": args.tokens,
        "vocab_size": model.vocab_size,
        "repeats": args.repeats,
        "optimizers": {side: optimizer_name(o) for side, o in optimizers.items()},
        "wenet_dir": args.wenet_dir,
        "wenet_commit": wenet_version(args.wenet_dir),
        "loss_check": check,
        "sides": sides,
        "ratios": {
            "median": ours["median_seconds"] / theirs["median_seconds"],
            "min": ours["min_seconds"] / theirs["min_seconds"],
            "cpu_median": ours["median_cpu_seconds"] / theirs["median_cpu_seconds"],
        },
        "peak_rss_mb": peak_rss_mb(),
        **environment(args.device),
    }


def print_table(result: dict, threads: int) -> None:
    """The run's settings, then one row: step time, its phases, throughput, peak memory."""
    params = result["params"]["total"] / 1e6
    where = result.get("device", f"{threads} threads")
    compiled = f", compiled in {result['compile_seconds']:.1f} s" if result["compile"] else ""
    print(
        f"training throughput: {result['model']} ({params:.1f}M params), {where}, "
        f"{result['dtype']} ({result['dtype_setting']}: {result['dtype_reason']}){compiled}, "
        f"batch {result['batch_size']} x {result['frames']} frames, vocab {result['vocab_size']}"
    )
    peak = result["peak_gpu_memory_gb"]
    print(
        f"{'ms/step':>9}{'min ms':>9}{'forward':>9}{'backward':>9}{'optim':>8}"
        f"{'frames/s':>10}{'audio s/s':>10}{'RSS MB':>8}" + (f"{'GPU GB':>8}" if peak else "")
    )
    fps, ms = result["frames_per_second"], result["phase_ms"]
    print(
        f"{1e3 * result['seconds_per_step']:>9.0f}{1e3 * result['min_seconds_per_step']:>9.0f}"
        + "".join(f"{ms[p]:>{w}.0f}" for p, w in zip(PHASES, (9, 9, 8), strict=True))
        + f"{fps:>10.0f}{fps / 100:>10.2f}{result['peak_rss_mb']:>8.0f}"
        + (f"{peak:>8.1f}" if peak else "")
    )


def print_versus(result: dict) -> None:
    """The settings, one row per model (median and fastest step, median phases), the ratios."""
    params = result["params"]["total"] / 1e6
    check = result["loss_check"]
    print(
        f"training step, ours vs WeNet ({result['wenet_dir']} {result['wenet_commit']}): "
        f"{result['model']} ({params:.1f}M params), {result['threads']} threads, "
        f"{result['dtype']}, batch {result['batch_size']} x {result['frames']} frames, "
        f"{result['repeats']} interleaved rounds; same-weights loss {check['ours']:.6g} vs "
        f"{check['wenet']:.6g}"
    )
    print(
        f"{'':>7}{'median ms':>11}{'min ms':>9}{'forward':>9}{'backward':>9}{'optim':>8}"
        f"{'CPU s':>8}  optimizer"
    )
    for side, name in (("ours", "ours"), ("wenet", "WeNet")):
        st = result["sides"][side]
        print(
            f"{name:>7}{1e3 * st['median_seconds']:>11.0f}{1e3 * st['min_seconds']:>9.0f}"
            + "".join(
                f"{st['phase_ms'][p]:>{w}.0f}" for p, w in zip(PHASES, (9, 9, 8), strict=True)
            )
            + f"{st['median_cpu_seconds']:>8.1f}  {result['optimizers'][side]}"
        )
    r = result["ratios"]
    print(
        f"ours / WeNet: median {r['median']:.3f}, fastest {r['min']:.3f}, CPU seconds (median) "
        f"{r['cpu_median']:.3f}"
    )


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_model_args(p, "bench_results/train_throughput.json")
    add_device_arg(p)
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--frames", type=int, default=1000, help="input frames per utterance")
    p.add_argument("--tokens", type=int, default=30, help="target tokens per utterance")
    p.add_argument("--dtype", choices=DTYPES, default="fp32", help="as train.dtype")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--wenet_dir",
        default="",
        help="a WeNet source tree (the folder holding `wenet/`): time WeNet's model of the same\n"
        "config and weights against ours, interleaved (--repeats rounds)",
    )
    args = p.parse_args(argv)
    if 0 < args.vocab_size < 3:
        p.error("--vocab_size must be >= 3 (blank, a token, sos/eos)")
    if args.wenet_dir and args.compile:
        p.error("--compile with --wenet_dir: the comparison runs both models eagerly")
    if args.wenet_dir:
        result = run_versus_wenet(args)
        print_versus(result)
    else:
        result = run(args)
        print_table(result, args.threads)
    write_json(result, args.out)
    return result


if __name__ == "__main__":
    main()
