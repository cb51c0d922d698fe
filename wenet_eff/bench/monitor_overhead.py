"""Cost of the stability monitor (train.stability.OutputNormMonitor) per training step.

    python -m wenet_eff.bench.monitor_overhead --model mini --threads 2

Plain and monitored training iterations (forward + backward + clipping + Adam on one fixed
synthetic batch, as in train_throughput) alternate, so machine noise hits both alike. A
monitored iteration hooks every weight layer and attention module, then collects (one device
sync). The overhead of monitoring every k-th update is (monitored - plain) / (k x plain),
printed for k = 1, 10, 50, 100 (target: <= 3 % at 50). Writes JSON and prints a table.
"""

from __future__ import annotations

import argparse
import statistics
import time

from wenet_eff.bench.common import add_model_args, build_bench_model, environment, write_json
from wenet_eff.bench.train_throughput import make_step
from wenet_eff.train.stability import OutputNormMonitor

INTERVALS = (1, 10, 50, 100)


def run(args: argparse.Namespace) -> dict:
    cfg, model = build_bench_model(args)
    step = make_step(args, cfg, model)
    monitor = OutputNormMonitor(model, interval=1)
    values: dict = {}

    def monitored() -> None:
        nonlocal values
        monitor.arm()
        step()
        values = monitor.collect()

    for _ in range(args.warmup):
        step()
        monitored()
    plain, mon = [], []
    for _ in range(args.repeats):
        for fn, times in ((step, plain), (monitored, mon)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    # medians: a shared machine's stalls hit single iterations
    t_plain, t_mon = statistics.median(plain), statistics.median(mon)
    extra = t_mon - t_plain
    return {
        "model": cfg.model.name,
        "params": model.num_params(),
        "batch_size": args.batch_size,
        "frames": args.frames,
        "repeats": args.repeats,
        "monitored_layers": len(monitor.layers),
        "attention_layers": len(monitor.attention),
        "values_per_monitored_step": len(values),
        "seconds_plain_step": t_plain,
        "seconds_monitored_step": t_mon,
        "extra_seconds_per_monitored_step": extra,
        "overhead_by_interval": {str(k): extra / (k * t_plain) for k in INTERVALS},
        **environment(),
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_model_args(p, "bench_results/monitor_overhead.json")
    p.set_defaults(model="mini", device="cpu")  # make_step reads args.device; CPU timing here
    p.add_argument("--batch_size", type=int, default=6)
    p.add_argument("--frames", type=int, default=1000, help="input frames per utterance")
    p.add_argument("--tokens", type=int, default=30, help="target tokens per utterance")
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=10, help="pairs of plain + monitored steps")
    args = p.parse_args(argv)
    r = run(args)
    print(
        f"monitor overhead: {r['model']} ({r['params']['total'] / 1e6:.1f}M params), "
        f"{args.threads} threads, batch {args.batch_size} x {args.frames} frames, "
        f"{r['monitored_layers']} weight layers + {r['attention_layers']} attention layers "
        f"({r['values_per_monitored_step']} values per monitored step)"
    )
    print(f"{'plain s/step':>13}{'monitored s/step':>18}{'extra s':>10}", end="")
    print("".join(f"{'every ' + str(k):>11}" for k in INTERVALS))
    print(
        f"{r['seconds_plain_step']:>13.3f}{r['seconds_monitored_step']:>18.3f}"
        f"{r['extra_seconds_per_monitored_step']:>10.4f}",
        end="",
    )
    print("".join(f"{100 * r['overhead_by_interval'][str(k)]:>10.2f}%" for k in INTERVALS))
    write_json(r, args.out)
    return r


if __name__ == "__main__":
    main()
