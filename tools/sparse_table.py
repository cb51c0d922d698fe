"""Sparsity x WER table of sparse fine-tuning experiments against their float control.

Reads FLOAT_DIR/test/<mode>/wer and, per sparse experiment dir, its train.yaml (sparsity and
optimizer settings), folded.pt.sparsity.json (bin.masks fold: zeros per masked layer, N:M
check) and test/<mode>/wer (decoded from the folded checkpoint, or from packed.pt with its
size when the run was also quantized); for STEP runs also the
update where the precondition phase ended (from the run's log, `STEP: precondition phase
over after N updates`). Prints a Markdown table and writes the rows as JSON with its
provenance (--json, for RESULTS.md).

Usage: sparse_table.py --float_dir exp/mini_none --modes "ctc_greedy_search attention_rescoring" \
           --json exp/mini/sparse_table.json exp/mini_sparse_2_4 exp/mini_sparse_1_4
"""

from __future__ import annotations

import argparse
import json
import os
import re

import yaml
from wer_table import mode_wers  # tools/ (path.sh puts it on PYTHONPATH)

from wenet_eff.bench.common import write_json
from wenet_eff.bench.sections import sparse_table

SWITCH = re.compile(r"STEP: precondition phase over after (\d+) updates")


def describe(cfg: dict) -> str:
    sp = cfg["compress"]["sparsity"]
    if sp["method"] == "nm":
        trainer = "STEP" if cfg["optim"]["name"] == "step" else "SR-STE" if sp["decay"] else "STE"
        label = f"{sp['n']}:{sp['m']} {trainer}"
    elif sp["method"] == "magnitude":
        label = f"magnitude {sp['sparsity']:.0%} (steps {sp['start_step']}-{sp['end_step']})"
    else:
        label = f"S3-Router keep {sp['keep_ratio']}"
    if cfg["compress"]["quant"]["enabled"]:
        label += f" + int{cfg['compress']['quant']['bits']}"
    return label


def switch_step(exp: str) -> int | None:
    """The update where STEP switched, from the run's train logs (None if not found)."""
    found = None
    for root, _, files in os.walk(exp):
        for name in files:
            if name.endswith(".log"):
                with open(os.path.join(root, name), encoding="utf-8", errors="replace") as f:
                    for line in f:
                        match = SWITCH.search(line)
                        if match:
                            found = int(match.group(1))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--float_dir", required=True)
    parser.add_argument("--modes", required=True, help="space-separated")
    parser.add_argument("--test_set", default="test")
    parser.add_argument("--json", default="")
    parser.add_argument("sparse_dirs", nargs="+")
    args = parser.parse_args()
    modes = args.modes.split()

    def wers(exp: str) -> dict[str, float]:
        return mode_wers(os.path.join(exp, args.test_set), modes)

    rows = [{"exp": args.float_dir, "method": "dense (float control)", "sparsity": 0.0,
             "nm_ok": None, "switch": None, "wer": wers(args.float_dir)}]  # fmt: skip
    for exp in args.sparse_dirs:
        with open(os.path.join(exp, "train.yaml"), encoding="utf-8") as f:
            cfg = yaml.safe_load(f)
        with open(os.path.join(exp, "folded.pt.sparsity.json"), encoding="utf-8") as f:
            report = json.load(f)["total"]
        size = None
        if os.path.exists(os.path.join(exp, "packed.pt.size.json")):  # sparse + quantized
            with open(os.path.join(exp, "packed.pt.size.json"), encoding="utf-8") as f:
                size = json.load(f)["total"]
        rows.append(
            {
                "exp": exp,
                "method": describe(cfg),
                "sparsity": report["sparsity"],
                "nm_ok": report.get("nm_ok"),
                "switch": switch_step(exp) if cfg["optim"]["name"] == "step" else None,
                "packed_bytes": size["packed_bytes"] if size else None,
                "packed_ratio": size["ratio"] if size else None,
                "wer": wers(exp),
            }
        )
    data = {"float_dir": args.float_dir, "test_set": args.test_set, "modes": modes,
            "sparse_rows": rows}  # fmt: skip
    print(sparse_table(data), end="")
    if args.json:
        write_json(data, args.json)


if __name__ == "__main__":
    main()
