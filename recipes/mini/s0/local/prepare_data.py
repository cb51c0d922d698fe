"""Split the synthesised corpus into train / dev / test Kaldi data dirs and check the splits.

Checks (a failure stops with the offending sentences or voices named):
  - no synthetic transcript equals a test_real sentence (test_real is for testing only);
  - no test or dev sentence is in train;
  - test has at least one voice that train never uses (held-out voices are test only).
Prints the hours of every set, test_real included.

Usage: prepare_data.py --synth_dir data/local/synth --exclude data/local/test_real/exclude.txt \
           --test_real data/test_real data
"""

from __future__ import annotations

import argparse
import os
import sys

from generate_sentences import read_exclude
from kaldi_files import read_table, write_table

SPLITS = ("train", "dev", "test")


def check_splits(
    text: dict[str, str], split: dict[str, str], voice: dict[str, str], exclude: set[str]
) -> dict[str, int]:
    """Validate a split assignment (see module docstring); returns counts for the report.

    Raises:
        ValueError: a check failed; the message names a few offending sentences or voices.
    """
    leaked = sorted({t for t in text.values() if t in exclude})
    if leaked:
        raise ValueError(f"{len(leaked)} synthetic sentences are test_real sentences: {leaked[:5]}")
    sentences = {s: {t for k, t in text.items() if split[k] == s} for s in SPLITS}
    for held in ("dev", "test"):
        shared = sorted(sentences[held] & sentences["train"])
        if shared:
            raise ValueError(f"{len(shared)} {held} sentences are also in train: {shared[:5]}")
    voices = {s: {voice[k] for k in text if split[k] == s} for s in SPLITS}
    unseen = voices["test"] - voices["train"] - voices["dev"]
    if not unseen:
        raise ValueError("test has no voice that train and dev never use")
    return {"test_real_sentences_excluded": len(exclude), "unseen_test_voices": len(unseen)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--synth_dir", required=True)
    parser.add_argument("--exclude", required=True, help="test_real sentences (exclude.txt)")
    parser.add_argument("--test_real", required=True, help="the test_real data dir")
    parser.add_argument("data_dir", help="parent of the train/dev/test dirs to write")
    args = parser.parse_args()
    tables = {
        name: read_table(os.path.join(args.synth_dir, name))
        for name in ("wav.scp", "text", "utt2dur", "utt2voice", "utt2split")
    }
    exclude = read_exclude(args.exclude)
    test_real_text = read_table(os.path.join(args.test_real, "text"))
    exclude |= set(test_real_text.values())
    counts = check_splits(tables["text"], tables["utt2split"], tables["utt2voice"], exclude)
    hours = {}
    for split in SPLITS:
        keys = sorted(k for k, s in tables["utt2split"].items() if s == split)
        os.makedirs(os.path.join(args.data_dir, split), exist_ok=True)
        for name, table in tables.items():
            write_table(os.path.join(args.data_dir, split, name), table, keys)
        hours[split] = (len(keys), sum(float(tables["utt2dur"][k]) for k in keys) / 3600)
    real_dur = read_table(os.path.join(args.test_real, "utt2dur"))
    hours["test_real"] = (len(real_dur), sum(map(float, real_dur.values())) / 3600)
    print(
        f"{args.data_dir}/{{{','.join(SPLITS)}}}/{{wav.scp,text,utt2dur,utt2voice,utt2split}} "
        f"written; no overlap with {counts['test_real_sentences_excluded']} test_real "
        f"sentences; {counts['unseen_test_voices']} test voices unseen in train",
        file=sys.stderr,
    )
    for name, (num, h) in hours.items():
        print(f"  {name:<10} {num:>6} utts {h:7.3f} h", file=sys.stderr)


if __name__ == "__main__":
    main()
