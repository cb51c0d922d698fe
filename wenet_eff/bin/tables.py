r"""Paper tables and plots from experiment directories (see `wenet_eff.bench.tables`), and a
recipe's RESULTS.md from the result JSON kept in its results/ folder (`wenet_eff.bench.results_md`).

    python -m wenet_eff.bin.tables exp/mini exp/mini_moe --label mini=Dense --label mini_moe=MoE \
        --bench bench_results/runtime_rtf.json --out_dir exp/tables --results_dir results
    python -m wenet_eff.bin.tables --results_dir results --keep bench_results/compress_size.json
    python -m wenet_eff.bin.tables --results_dir results

With experiment directories: prints the Markdown tables and writes OUT_DIR/{tables.md,
tables.json,wer_vs_rtf.png,wer_vs_size.png}. With --results_dir: keeps tables.json, each
experiment's result JSON (as <dir name>.<file>), the --bench and --keep files in it, then
rewrites RESULTS.md (--results_md; default beside the results directory) from every JSON there.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from wenet_eff.bench.results_md import experiment_results, keep_results, write_results_md
from wenet_eff.bench.tables import Selection, make_tables
from wenet_eff.model import DECODE_METHODS


def _label(text: str) -> tuple[str, str]:
    key, sep, label = text.partition("=")
    if not sep or not key or not label:
        raise argparse.ArgumentTypeError(f"--label {text!r}: expected NAME=LABEL")
    return key, label


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("exp_dirs", nargs="*", help="experiment directories (each with train.yaml)")
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
    p.add_argument(
        "--results_dir",
        default="",
        help="keep the result JSON here (a recipe's committed results/) and rewrite RESULTS.md "
        "from every JSON in it",
    )
    p.add_argument(
        "--keep",
        nargs="+",
        action="extend",
        default=[],
        help="more result JSON to keep in --results_dir (benchmarks, tables; repeatable)",
    )
    p.add_argument("--results_md", default="", help="default: RESULTS.md beside --results_dir")
    args = p.parse_args(argv)
    if not args.exp_dirs and not args.results_dir:
        p.error("give experiment directories, or --results_dir to rewrite its RESULTS.md")
    if args.keep and not args.results_dir:
        p.error("--keep needs --results_dir")
    test_sets = [name for word in args.test_sets for name in word.split()]
    sel = Selection(args.mode, test_sets, args.precision, args.chunk)
    result = {}
    try:  # a bad directory, label or JSON: say which
        kept = [(Path(f).name, Path(f)) for f in [*args.bench, *args.keep]]
        if args.exp_dirs:
            result = make_tables(
                args.exp_dirs, dict(args.label), args.bench, args.out_dir, sel, args.checkpoint,
                args.reference,
            )  # fmt: skip
            print(result["markdown"], end="")
            written = ["tables.md", "tables.json", *(f"{n}.png" for n in result["pareto_front"])]
            print(f"wrote {', '.join(f'{args.out_dir}/{f}' for f in written)}")
            kept.append(("tables.json", Path(args.out_dir) / "tables.json"))
            kept += [r for d in args.exp_dirs for r in experiment_results(d)]
        if args.results_dir:
            for path in keep_results(kept, args.results_dir):
                print(f"kept {path}")
            print(f"wrote {write_results_md(args.results_dir, args.results_md)}")
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"tables: {exc}") from exc
    return result


if __name__ == "__main__":
    main()
