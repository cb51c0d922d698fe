"""Collect the `Overall ->` lines of compute_wer.py outputs into a mode x test-set table.

Reads EXP_DIR/<test_set>/<mode>/wer for every test set and mode; writes EXP_DIR/wer_table.md
(a Markdown table of WER %) and EXP_DIR/wer_table.json (every count, with its provenance for
RESULTS.md: `python -m wenet_eff.bin.tables EXP_DIR --results_dir results`), and prints the
table. A missing or unparsable wer file is an error naming it.

Usage: wer_table.py --test_sets "test test_real" --modes "ctc_greedy_search attention" exp/mini
"""

from __future__ import annotations

import argparse
import os

from wenet_eff.bench.common import write_json
from wenet_eff.bench.results import parse_overall
from wenet_eff.bench.sections import wer_table


def mode_wers(result_dir: str, modes: list[str]) -> dict[str, float]:
    """{mode: WER %} from RESULT_DIR/<mode>/wer."""
    return {m: parse_overall(os.path.join(result_dir, m, "wer"))["wer"] for m in modes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--test_sets", required=True, help="space-separated")
    parser.add_argument("--modes", required=True, help="space-separated")
    parser.add_argument("exp_dir")
    args = parser.parse_args()
    modes = args.modes.split()
    results = {
        test_set: {
            mode: parse_overall(os.path.join(args.exp_dir, test_set, mode, "wer")) for mode in modes
        }
        for test_set in args.test_sets.split()
    }
    data = {"exp_dir": args.exp_dir, "results": results}
    table = wer_table(data)
    with open(os.path.join(args.exp_dir, "wer_table.md"), "w", encoding="utf-8") as f:
        f.write(table)
    write_json(data, os.path.join(args.exp_dir, "wer_table.json"))
    print(table, end="")


if __name__ == "__main__":
    main()
