"""Collect the C++ runtime's results (stage 7) into a table: WER and RTF per model directory,
test set and chunk size.

Reads RUNTIME_DIR/<test_set>/chunk<N>/{wer,rtf.json} for each runtime directory, test set and
chunk; writes OUT.md and OUT.json (with its provenance, for RESULTS.md) and prints the table.
A missing file is an error naming it.

Usage: runtime_table.py --test_sets "test test_real" --chunks "-1 16" --out exp/mini/runtime_table \
           exp/mini/runtime_fp32 exp/mini/runtime_int8
"""

from __future__ import annotations

import argparse
import json
import os

from wenet_eff.bench.common import write_json
from wenet_eff.bench.results import parse_overall
from wenet_eff.bench.sections import runtime_table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--test_sets", required=True)
    p.add_argument("--chunks", required=True)
    p.add_argument("--out", required=True, help="output path without extension")
    p.add_argument("runtime_dirs", nargs="+")
    args = p.parse_args()
    rows = []
    for runtime_dir in args.runtime_dirs:
        meta = json.load(open(os.path.join(runtime_dir, "meta.json"), encoding="utf-8"))
        for test_set in args.test_sets.split():
            for chunk in args.chunks.split():
                base = os.path.join(runtime_dir, test_set, f"chunk{chunk}")
                rtf = json.load(open(os.path.join(base, "rtf.json"), encoding="utf-8"))
                wer = parse_overall(os.path.join(base, "wer"))
                rows.append(
                    {
                        "runtime_dir": runtime_dir,
                        "int8": meta["int8"],
                        "test_set": test_set,
                        "chunk": int(chunk),
                        "num_left_chunks": meta["num_left_chunks"] if int(chunk) > 0 else -1,
                        "wer": wer["wer"],
                        "rtf": rtf["rtf"],
                        "threads": rtf["threads"],
                        "utterances": rtf["utterances"],
                        "skipped": rtf["skipped"],
                    }
                )
    data = {"runtime_dirs": args.runtime_dirs, "runtime_rows": rows}
    table = runtime_table(data)
    with open(args.out + ".md", "w", encoding="utf-8") as f:
        f.write(table)
    write_json(data, args.out + ".json")
    print(table, end="")


if __name__ == "__main__":
    main()
