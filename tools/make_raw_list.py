#!/usr/bin/env python3
"""Kaldi `wav.scp` + `text` [+ `segments`] -> `data.list` (JSON lines, WeNet's raw format).

Usage: make_raw_list.py [--segments segments] wav.scp text data.list

Each line is `{"key": ..., "wav": path, "txt": ...}`, plus `"start"`/`"end"` (seconds) for a
segment. Without segments the keys of wav.scp and text are matched; with segments each segment
key is matched against text and its recording against wav.scp. Utterances missing on either
side are left out, counted and reported on stderr with a few of their keys.
wav.scp entries must be file paths (Kaldi pipes `cmd |` are not supported).
"""

from __future__ import annotations

import argparse
import json
import sys

from kaldi_files import read_segments, read_table


def build_entries(
    wavs: dict[str, str], texts: dict[str, str], segments_path: str | None = None
) -> tuple[list[dict], dict[str, list[str]]]:
    """data.list entries (in wav.scp or segments order) and the keys left out, by reason.

    Reasons: `no_text` (audio or segment without a transcript), `no_audio` (a transcript
    without audio, or a segment whose recording is not in wav.scp).
    """
    missing: dict[str, list[str]] = {"no_text": [], "no_audio": []}
    entries = []
    if segments_path is None:
        for key, wav in wavs.items():
            if key not in texts:
                missing["no_text"].append(key)
            else:
                entries.append({"key": key, "wav": wav, "txt": texts[key]})
        used = set(wavs)
    else:
        used = set()
        for seg in read_segments(segments_path):
            used.add(seg.key)
            if seg.key not in texts:
                missing["no_text"].append(seg.key)
            elif seg.recording not in wavs:
                missing["no_audio"].append(seg.key)
            else:
                entry = {"key": seg.key, "wav": wavs[seg.recording], "txt": texts[seg.key]}
                entry["start"] = seg.start
                if seg.end is not None:
                    entry["end"] = seg.end
                entries.append(entry)
    missing["no_audio"].extend(key for key in texts if key not in used)
    return entries, missing


def read_kaldi_dir(
    wav_scp: str, text: str, segments: str | None = None
) -> tuple[list[dict], dict[str, list[str]]]:
    """`build_entries` of the Kaldi files `wav_scp`, `text` [and `segments`].

    Raises:
        ValueError: wav.scp holds pipes (`cmd |`), or a table is malformed (file:line).
    """
    wavs = read_table(wav_scp)
    pipes = [key for key, wav in wavs.items() if wav.rstrip().endswith("|")]
    if pipes:
        raise ValueError(
            f"{wav_scp}: {len(pipes)} entries are pipes (e.g. {pipes[0]}); write the audio to "
            "files first"
        )
    return build_entries(wavs, read_table(text), segments)


def report_missing(prog: str, missing: dict[str, list[str]]) -> None:
    """`prog: N utterances left out (reason), e.g. k1, k2` on stderr, for each reason seen."""
    for reason, keys in missing.items():
        if keys:
            print(f"{prog}: {len(keys)} utterances left out ({reason}), e.g. "
                  f"{', '.join(keys[:5])}", file=sys.stderr)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--segments", help="Kaldi segments file (utt recording start end)")
    parser.add_argument("wav_scp")
    parser.add_argument("text")
    parser.add_argument("data_list")
    args = parser.parse_args()
    try:
        entries, missing = read_kaldi_dir(args.wav_scp, args.text, args.segments)
    except ValueError as exc:
        sys.exit(f"make_raw_list: {exc}")
    with open(args.data_list, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(entry, ensure_ascii=False) + "\n" for entry in entries)
    report_missing("make_raw_list", missing)
    print(f"{args.data_list}: {len(entries)} utterances", file=sys.stderr)


if __name__ == "__main__":
    main()
