"""Run a benchmark by name: `python -m wenet_eff.bin.benchmark NAME [its options]`.

    python -m wenet_eff.bin.benchmark decode_rtf --model u2pp_conformer --threads 2
    python -m wenet_eff.bin.benchmark train_throughput --model u2pp_conformer --threads 2
    python -m wenet_eff.bin.benchmark moe_rtf --threads 2
    python -m wenet_eff.bin.benchmark streaming_latency --config exp/x/train.yaml --checkpoint ...
    python -m wenet_eff.bin.benchmark runtime_rtf \
        --model dense=exp/mini/train.yaml:exp/mini/avg_2.pt --data data/test/data.list
    python -m wenet_eff.bin.benchmark runtime_lm --ngrams 1000000 --phrases 1000
    python -m wenet_eff.bin.benchmark serve --model_dir exp/mini_moe/runtime_fp32 --streams 1 8 32

Each benchmark prints a table and writes JSON (see `--help` of each) with its provenance: this
command, the git commit, the date and the machine (`wenet_eff.bench.common.write_json`), so
`python -m wenet_eff.bin.tables --results_dir DIR --keep FILE.json` can keep it for RESULTS.md.
"""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = (
    "decode_rtf",
    "train_throughput",
    "moe_rtf",
    "streaming_latency",
    "compress_size",
    "monitor_overhead",
    "runtime_rtf",
    "runtime_lm",
    "serve",
)


def main(argv: list[str] | None = None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in BENCHMARKS:
        sys.exit(f"usage: python -m wenet_eff.bin.benchmark {{{','.join(BENCHMARKS)}}} [options]")
    return importlib.import_module(f"wenet_eff.bench.{argv[0]}").main(argv[1:])


if __name__ == "__main__":
    main()
