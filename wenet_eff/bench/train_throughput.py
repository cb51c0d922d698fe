"""Training throughput of a model config on this machine (eager): input frames per second.

    python -m wenet_eff.bench.train_throughput --model u2pp_conformer --threads 2
    python -m wenet_eff.bench.train_throughput --model paper_moe_1b --device cuda --dtype bf16

One timed iteration = forward + backward + gradient clipping + Adam step on a synthetic batch
(random 80-dim features, `--batch_size` x `--frames` frames; random targets of
`--tokens` tokens). Throughput counts input feature frames (10 ms each), so it also reads as
seconds of audio trained per second / 100. On CUDA each step's time includes its GPU work (the
loss is read back) and the peak GPU memory of the timed steps is reported. Writes JSON and
prints a table.
"""

from __future__ import annotations

import argparse
import time

import torch

from wenet_eff.bench.common import (
    add_device_arg,
    add_model_args,
    build_bench_model,
    environment,
    write_json,
)
from wenet_eff.train.optim import build_optimizer


def make_step(args: argparse.Namespace, cfg, model: torch.nn.Module):
    """One training iteration on a fixed synthetic batch of `args` sizes; returns the loss."""
    model.train()
    optimizer = build_optimizer(model.parameters(), cfg.optim)
    device = torch.device(args.device)
    feats = torch.randn(args.batch_size, args.frames, cfg.model.input_dim, device=device)
    feats_lengths = torch.full((args.batch_size,), args.frames, device=device)
    text_ids = model.text_ids()  # neither blank nor sos/eos
    target = text_ids[torch.randint(len(text_ids), (args.batch_size, args.tokens))].to(device)
    target_lengths = torch.full((args.batch_size,), args.tokens, device=device)

    def step() -> float:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.dtype == "bf16"):
            loss = model(feats, feats_lengths, target, target_lengths)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    return step


def run(args: argparse.Namespace) -> dict:
    """Time `args.repeats` training iterations after `args.warmup` untimed ones."""
    cfg, model = build_bench_model(args)
    vocab = model.vocab_size
    step = make_step(args, cfg, model)
    for _ in range(args.warmup):
        step()
    cuda = torch.device(args.device).type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(args.device)
    times, losses = [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        losses.append(step())
        times.append(time.perf_counter() - start)
    frames = args.batch_size * args.frames
    mean = sum(times) / len(times)
    return {
        "model": cfg.model.name,
        "params": model.num_params(),
        "dtype": args.dtype,
        "batch_size": args.batch_size,
        "frames": args.frames,
        "tokens": args.tokens,
        "vocab_size": vocab,
        "repeats": args.repeats,
        "seconds_per_step": mean,
        "min_seconds_per_step": min(times),
        "frames_per_second": frames / mean,
        "losses": losses,
        "peak_gpu_memory_gb": torch.cuda.max_memory_allocated(args.device) / 2**30
        if cuda
        else None,
        **environment(args.device),
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_model_args(p, "bench_results/train_throughput.json")
    add_device_arg(p)
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--frames", type=int, default=1000, help="input frames per utterance")
    p.add_argument("--tokens", type=int, default=30, help="target tokens per utterance")
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    if 0 < args.vocab_size < 3:
        p.error("--vocab_size must be >= 3 (blank, a token, sos/eos)")
    result = run(args)
    params = result["params"]["total"] / 1e6
    where = result.get("device", f"{args.threads} threads")
    print(
        f"training throughput: {result['model']} ({params:.1f}M params), {where}, "
        f"{args.dtype}, batch {args.batch_size} x {args.frames} frames, "
        f"vocab {result['vocab_size']}"
    )
    peak = result["peak_gpu_memory_gb"]
    print(
        f"{'seconds/step':>14}{'min s/step':>12}{'frames/s':>12}{'audio s/s':>11}"
        + (f"{'peak GB':>9}" if peak is not None else "")
    )
    fps = result["frames_per_second"]
    print(
        f"{result['seconds_per_step']:>14.3f}{result['min_seconds_per_step']:>12.3f}"
        f"{fps:>12.0f}{fps / 100:>11.2f}" + (f"{peak:>9.1f}" if peak is not None else "")
    )
    write_json(result, args.out)
    return result


if __name__ == "__main__":
    main()
