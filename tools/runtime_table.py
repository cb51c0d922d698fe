"""Collect the C++ runtime's results (stage 7) into a table: WER and RTF per model directory,
test set, LM and chunk size, full context beside Python's decode of the same checkpoint.

Reads RUNTIME_DIR/<test_set>/[lm/]chunk<N>/{wer,rtf.json,text} for each runtime directory, test
set and chunk (the lm/ results where they exist); with --python_dir, stage 5's
PYTHON_DIR/<test_set>/[lm/]attention_rescoring/{wer,text} give each full-context row Python's
WER and the share of utterances whose transcripts are identical. Writes OUT.md and OUT.json
(with its provenance, for RESULTS.md) and prints the table. A missing file is an error naming it.

Usage: runtime_table.py --test_sets "test test_real" --chunks "-1 16" --python_dir exp/mini \
           --out exp/mini/runtime_table exp/mini/runtime_fp32 exp/mini/runtime_int8
"""

from __future__ import annotations

import argparse
import json
import os

from wenet_eff.bench.common import write_json
from wenet_eff.bench.results import parse_overall
from wenet_eff.bench.sections import runtime_table


def read_text(path: str) -> dict[str, str]:
    """`key text` lines (text may be empty) -> {key: text}."""
    with open(path, encoding="utf-8") as f:
        pairs = (line.rstrip("\n").partition(" ") for line in f if line.strip())
        return {key: text.strip() for key, _, text in pairs}


def python_side(python_dir: str | None, test_set: str, lm: bool, runtime_text: str) -> dict:
    """Python's WER and the identical-transcript share for a full-context row ({} without)."""
    if not python_dir:
        return {}
    base = os.path.join(python_dir, test_set, *(["lm"] if lm else []), "attention_rescoring")
    if not os.path.exists(os.path.join(base, "wer")):
        return {}
    ours, theirs = read_text(runtime_text), read_text(os.path.join(base, "text"))
    same = sum(ours.get(key) == text for key, text in theirs.items())
    return {"python_wer": parse_overall(os.path.join(base, "wer"))["wer"],
            "identical": same / max(len(theirs), 1)}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--test_sets", required=True)
    p.add_argument("--chunks", required=True)
    p.add_argument("--python_dir", help="the experiment whose stage-5 results to compare with")
    p.add_argument("--out", required=True, help="output path without extension")
    p.add_argument("runtime_dirs", nargs="+")
    args = p.parse_args()
    rows = []
    for runtime_dir in args.runtime_dirs:
        meta = json.load(open(os.path.join(runtime_dir, "meta.json"), encoding="utf-8"))
        for test_set in args.test_sets.split():
            for lm in (False, True):
                for chunk in args.chunks.split():
                    base = os.path.join(runtime_dir, test_set, *(["lm"] if lm else []),
                                        f"chunk{chunk}")  # fmt: skip
                    if lm and not os.path.isdir(base):
                        continue  # decoded without an LM
                    rtf = json.load(open(os.path.join(base, "rtf.json"), encoding="utf-8"))
                    wer = parse_overall(os.path.join(base, "wer"))
                    text = os.path.join(base, "text")
                    rows.append(
                        {
                            "runtime_dir": runtime_dir,
                            "int8": meta["int8"],
                            "test_set": test_set,
                            "lm": lm,
                            "chunk": int(chunk),
                            "num_left_chunks": meta["num_left_chunks"] if int(chunk) > 0 else -1,
                            "wer": wer["wer"],
                            "rtf": rtf["rtf"],
                            "threads": rtf["threads"],
                            "utterances": rtf["utterances"],
                            "skipped": rtf["skipped"],
                            **(
                                python_side(args.python_dir, test_set, lm, text)
                                if int(chunk) < 0
                                else {}
                            ),  # fmt: skip
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
