"""AISHELL-1 in its official layout -> Kaldi data dirs train, dev and test.

Reads AISHELL_DIR/data_aishell/wav/{train,dev,test}/<speaker>/<key>.wav (the release's
per-speaker archives wav/S*.tar.gz extracted in place) and
AISHELL_DIR/data_aishell/transcript/aishell_transcript_v0.8.txt (`KEY w1 w2 ...`, words
separated by spaces). Writes DATA_DIR/{train,dev,test}/{wav.scp,text,utt2dur}, sorted by key;
texts lose their spaces (character units, as in WeNet's AISHELL recipe), wav.scp holds absolute
paths and utt2dur comes from the wav headers.

Skipped and counted on stderr: a wav whose name holds whitespace (bad_key: keys are one
token), audio without a transcript line (no_text), a transcript line whose audio is in no split
(no_audio), an empty transcript (empty_text), an unreadable wav (bad_audio).

Usage: prepare_aishell.py [--nj 8] /data/aishell data    # /data/aishell holds data_aishell/
"""

from __future__ import annotations

import argparse
import glob
import os
import sys

from data_prep import DataDirWriter, Skipped, audio_durations, require

from wenet_eff.data.sources import key_problem

PROG = "prepare_aishell"
SPLITS = ("train", "dev", "test")
TRANSCRIPT = os.path.join("transcript", "aishell_transcript_v0.8.txt")


def find_wavs(wav_dir: str) -> dict[str, dict[str, str]]:
    """{split: {key: absolute wav path}} under wav_dir/<split>/<speaker>/<key>.wav.

    Raises:
        FileNotFoundError: a split directory is missing (names it, and says to extract the
            per-speaker archives when they are still packed).
    """
    packed = glob.glob(os.path.join(wav_dir, "*.tar.gz"))
    hint = f"extract the {len(packed)} archives {wav_dir}/*.tar.gz there first" if packed else ""
    wavs = {}
    for split in SPLITS:
        split_dir = require(os.path.join(wav_dir, split), "dir", hint)
        wavs[split] = {
            os.path.basename(path)[: -len(".wav")]: os.path.abspath(path)
            for path in sorted(glob.glob(os.path.join(split_dir, "*", "*.wav")))
        }
    return wavs


def read_transcript(path: str) -> dict[str, str]:
    """{key: text without spaces} of the transcript file (an empty text stays "")."""
    texts = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            if fields:
                texts[fields[0]] = "".join(fields[1:])
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nj", type=int, default=1, help="threads reading the wav headers")
    parser.add_argument("aishell_dir", help="the directory that holds data_aishell/")
    parser.add_argument("data_dir", help="parent of the train/dev/test dirs to write")
    args = parser.parse_args()
    root = os.path.join(args.aishell_dir, "data_aishell")
    try:
        require(root, "dir", "give the directory that holds data_aishell/")
        texts = read_transcript(require(os.path.join(root, TRANSCRIPT)))
        wavs = find_wavs(os.path.join(root, "wav"))
    except FileNotFoundError as exc:
        sys.exit(f"{PROG}: {exc}")
    skipped = Skipped("bad_key", "no_text", "no_audio", "empty_text", "bad_audio")
    for split, split_wavs in wavs.items():
        skipped.add("bad_key", [key for key in split_wavs if key_problem(key)])
        wavs[split] = {key: path for key, path in split_wavs.items() if not key_problem(key)}
    with_audio = {key for split_wavs in wavs.values() for key in split_wavs}
    skipped.add("no_audio", [key for key in texts if key not in with_audio])
    summaries = []
    for split, split_wavs in wavs.items():
        skipped.add("no_text", [key for key in split_wavs if key not in texts])
        skipped.add("empty_text", [key for key in split_wavs if texts.get(key) == ""])
        keys = [key for key in split_wavs if texts.get(key)]
        durations, bad = audio_durations({key: split_wavs[key] for key in keys}, args.nj)
        skipped.add("bad_audio", bad)
        with DataDirWriter(os.path.join(args.data_dir, split)) as writer:
            for key, duration in durations.items():
                writer.add(key, texts[key], duration, path=split_wavs[key])
        summaries.append(writer.summary())
    print("\n".join(summaries), file=sys.stderr)
    skipped.report(PROG)


if __name__ == "__main__":
    main()
