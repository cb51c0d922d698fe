r"""Paper tables and plots from experiment directories (see `wenet_eff.bench.tables`).

    python -m wenet_eff.bin.tables exp/mini exp/mini_moe --label mini=Dense --label mini_moe=MoE \
        --bench bench_results/runtime_rtf.json --out_dir exp/tables

Prints the Markdown tables and writes OUT_DIR/{tables.md,tables.json,wer_vs_rtf.png,
wer_vs_size.png}.
"""

from __future__ import annotations

import argparse

from wenet_eff.bench.tables import Selection, make_tables
from wenet_eff.model import DECODE_METHODS


def _label(text: str) -> tuple[str, str]:
    key, sep, label = text.partition("=")
    if not sep or not key or not label:
        raise argparse.ArgumentTypeError(f"--label {text!r}: expected NAME=LABEL")
    return key, label


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("exp_dirs", nargs="+", help="experiment directories (each with train.yaml)")
    p.add_argument(
        "--label",
        type=_label,
        action="append",
        default=[],
        help="NAME=LABEL (repeatable): the row name of an experiment (its directory name or "
        "path as given) or of a benchmark's model",
    )
    p.add_argument(
        "--bench",
        nargs="+",
        action="extend",
        default=[],
        help="runtime_rtf/decode_rtf/moe_rtf JSON files (repeatable)",
    )
    p.add_argument("--out_dir", default="exp/tables")
    p.add_argument("--mode", default="attention_rescoring", choices=DECODE_METHODS)
    p.add_argument(
        "--test_sets",
        nargs="+",
        action="extend",
        default=[],
        help="WER columns (default: all found); names may also be space-separated in one word",
    )
    p.add_argument("--precision", default="fp32", help="RTF of this runtime precision")
    p.add_argument("--chunk", type=int, default=-1, help="RTF at this chunk size (-1: full)")
    p.add_argument("--checkpoint", default="", help="checkpoint file name (default: avg_*.pt)")
    p.add_argument("--reference", default="", help="float run for relative WER (default: auto)")
    args = p.parse_args(argv)
    test_sets = [name for word in args.test_sets for name in word.split()]
    sel = Selection(args.mode, test_sets, args.precision, args.chunk)
    try:
        result = make_tables(
            args.exp_dirs, dict(args.label), args.bench, args.out_dir, sel, args.checkpoint,
            args.reference,
        )  # fmt: skip
    except (FileNotFoundError, ValueError) as exc:  # a bad directory, label or JSON: say which
        raise SystemExit(f"tables: {exc}") from exc
    print(result["markdown"], end="")
    written = ["tables.md", "tables.json", *(f"{name}.png" for name in result["pareto_front"])]
    print(f"wrote {', '.join(f'{args.out_dir}/{f}' for f in written)}")
    return result


if __name__ == "__main__":
    main()
