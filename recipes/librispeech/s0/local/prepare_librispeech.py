"""One LibriSpeech subset in its official layout -> a Kaldi data dir.

Reads SUBSET_DIR/<reader>/<chapter>/<reader>-<chapter>-<utt>.flac and each chapter's
<reader>-<chapter>.trans.txt (`KEY TRANSCRIPT` lines, upper case, kept as they are). Writes
OUT_DIR/{wav.scp,text,utt2dur,utt2spk,spk2utt}, sorted by key; wav.scp holds absolute paths,
utt2dur comes from the FLAC headers (nothing is decoded), and the speaker of an utterance is
<reader>-<chapter> (Kaldi's LibriSpeech convention: a chapter is one recording session).

Skipped and counted on stderr: a flac whose name holds whitespace (bad_key: keys are one token),
a transcript line without its flac (no_audio), a flac without a transcript line (no_text), an
empty transcript (empty_text), an unreadable flac (bad_audio).

Usage: prepare_librispeech.py [--nj 8] /data/LibriSpeech/dev-clean data/dev_clean
"""

from __future__ import annotations

import argparse
import glob
import os
import sys

from data_prep import DataDirWriter, Skipped, audio_durations, require
from kaldi_files import write_table

from wenet_eff.data.sources import key_problem

PROG = "prepare_librispeech"


def read_subset(subset_dir: str, skipped: Skipped) -> tuple[dict[str, str], dict[str, str]]:
    """({key: transcript}, {key: absolute flac path}) of the utterances that have both.

    Raises:
        FileNotFoundError: `subset_dir` holds no <reader>/<chapter>/*.trans.txt.
    """
    pattern = os.path.join(subset_dir, "*", "*", "*.trans.txt")
    transcripts = sorted(glob.glob(pattern))
    if not transcripts:
        raise FileNotFoundError(
            f"no transcripts {pattern}: expected a LibriSpeech subset directory "
            "such as /data/LibriSpeech/dev-clean"
        )
    texts: dict[str, str] = {}
    for path in transcripts:
        with open(path, encoding="utf-8") as f:
            for line in f:
                fields = line.split()
                if fields:
                    texts[fields[0]] = " ".join(fields[1:])
    flacs = {
        os.path.basename(path)[: -len(".flac")]: os.path.abspath(path)
        for path in sorted(glob.glob(os.path.join(subset_dir, "*", "*", "*.flac")))
    }
    skipped.add("bad_key", [key for key in flacs if key_problem(key)])
    flacs = {key: path for key, path in flacs.items() if not key_problem(key)}
    skipped.add("no_audio", [key for key in texts if key not in flacs])
    skipped.add("no_text", [key for key in flacs if key not in texts])
    skipped.add("empty_text", [key for key in flacs if texts.get(key) == ""])
    keys = sorted(key for key in flacs if texts.get(key))
    return {key: texts[key] for key in keys}, {key: flacs[key] for key in keys}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nj", type=int, default=1, help="threads reading the FLAC headers")
    parser.add_argument("subset_dir", help="e.g. /data/LibriSpeech/dev-clean")
    parser.add_argument("out_dir", help="e.g. data/dev_clean")
    args = parser.parse_args()
    skipped = Skipped("bad_key", "no_audio", "no_text", "empty_text", "bad_audio")
    try:
        require(args.subset_dir, "dir", "a LibriSpeech subset, e.g. /data/LibriSpeech/dev-clean")
        texts, flacs = read_subset(args.subset_dir, skipped)
    except FileNotFoundError as exc:
        sys.exit(f"{PROG}: {exc}")
    durations, bad = audio_durations(flacs, args.nj)
    skipped.add("bad_audio", bad)
    with DataDirWriter(args.out_dir) as writer:
        for key, duration in durations.items():
            writer.add(key, texts[key], duration, path=flacs[key])
    utt2spk = {key: key.rsplit("-", 1)[0] for key in durations}
    spk2utt: dict[str, list[str]] = {}
    for key, spk in utt2spk.items():
        spk2utt.setdefault(spk, []).append(key)
    write_table(os.path.join(args.out_dir, "utt2spk"), utt2spk)
    write_table(os.path.join(args.out_dir, "spk2utt"), {s: " ".join(u) for s, u in spk2utt.items()})
    print(f"{writer.summary()}, {len(spk2utt)} speakers (reader-chapter)", file=sys.stderr)
    skipped.report(PROG)


if __name__ == "__main__":
    main()
