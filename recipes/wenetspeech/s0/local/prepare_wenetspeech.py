"""WenetSpeech in its official layout -> one Kaldi data dir per subset (segments of opus files).

Reads WENETSPEECH_DIR/WenetSpeech.json: {"audios": [{"aid", "path", "duration", "segments":
[{"sid", "begin_time", "end_time", "text", "subsets", ...}, ...]}, ...], ...}, each path
relative to the JSON's directory (e.g. audio/train/youtube/B00000/Y0000000000_--5llN02F84.opus).
The JSON (~1 GB for the whole corpus) is streamed: one audio entry is decoded at a time and
lines are written as they come, in the JSON's order. Writes DATA_DIR/<name>/{wav.scp,segments,
text,utt2dur} for each subset label of --subsets:

  L M S W -> train_l train_m train_s train_w;  DEV -> dev;  TEST_NET -> test_net;
  TEST_MEETING -> test_meeting

wav.scp maps aid -> absolute opus path (a recording is listed where one of its segments is),
segments `sid aid begin end` (seconds), utt2dur end - begin. Texts are kept as they are
(whitespace runs collapsed).

Skipped and counted on stderr (a segment once, whatever subsets it is in): a segment whose sid
or recording aid holds whitespace (bad_key: keys are one token), a recording whose file is
missing (no_audio, e.g. a partial download), end <= begin or begin < 0 (bad_times), end after
the recording's duration (beyond_audio), an empty text (empty_text).

Usage: prepare_wenetspeech.py --subsets "S DEV TEST_NET TEST_MEETING" /data/WenetSpeech data
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Iterator
from typing import IO, Any

from data_prep import DataDirWriter, Skipped, require

from wenet_eff.data.sources import key_problem

PROG = "prepare_wenetspeech"
SUBSET_DIRS = {
    "L": "train_l", "M": "train_m", "S": "train_s", "W": "train_w",
    "DEV": "dev", "TEST_NET": "test_net", "TEST_MEETING": "test_meeting",
}  # fmt: skip
# Times and durations in the JSON are rounded; a reader clips a segment at the end of the file.
END_TOLERANCE = 0.01  # seconds
_WHITESPACE = re.compile(r"\s*")
_DECODER = json.JSONDecoder()
_AFTER_VALUE = frozenset(",:]} \t\n\r")


class _JsonStream:
    """Reads JSON values one at a time from a text file, holding about one chunk in memory."""

    def __init__(self, f: IO[str], name: str, chunk_chars: int) -> None:
        self.f, self.name, self.chunk_chars = f, name, chunk_chars
        self.buf, self.pos, self.dropped, self.eof = "", 0, 0, False

    def _read_more(self) -> bool:
        data = "" if self.eof else self.f.read(self.chunk_chars)
        self.eof = not data
        self.dropped += self.pos
        self.buf, self.pos = self.buf[self.pos :] + data, 0
        return not self.eof

    def error(self, what: str) -> ValueError:
        return ValueError(f"{self.name}: malformed JSON at character {self.dropped + self.pos}: "
                          f"{what}")  # fmt: skip

    def peek(self) -> str:
        """The next non-whitespace character ("" at the end of the file), not consumed."""
        while True:
            self.pos = _WHITESPACE.match(self.buf, self.pos).end()
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self._read_more():
                return ""

    def expect(self, chars: str) -> str:
        """Consume the next non-whitespace character, which must be one of `chars`."""
        char = self.peek()
        if not char or char not in chars:
            raise self.error(f"expected one of {chars!r}, found {char or 'the end'!r}")
        self.pos += 1
        return char

    def value(self) -> Any:
        """Decode the next value, reading on while it is cut at the end of the buffer."""
        self.peek()
        while True:
            try:
                value, end = _DECODER.raw_decode(self.buf, self.pos)
                # A number cut at the buffer's end ("1." of "1.5") decodes too; a whole value is
                # followed by whitespace or punctuation.
                if self.eof or (end < len(self.buf) and self.buf[end] in _AFTER_VALUE):
                    self.pos = end
                    return value
            except json.JSONDecodeError as exc:
                if self.eof:
                    raise self.error(exc.msg) from None
            self._read_more()


def iter_json_array(path: str, key: str, chunk_chars: int = 1 << 22) -> Iterator[Any]:
    """The items of the array `key` of the file's top-level object, decoded one at a time.

    Raises:
        ValueError: the file is not a JSON object with that array, or is malformed (the message
            names the file and the character offset).
    """
    with open(path, encoding="utf-8") as f:
        stream = _JsonStream(f, path, chunk_chars)
        stream.expect("{")
        while stream.peek() != "}":
            name = stream.value()
            stream.expect(":")
            if name == key:
                stream.expect("[")
                if stream.peek() == "]":
                    return
                while True:
                    yield stream.value()
                    if stream.expect(",]") == "]":
                        return
            stream.value()
            if stream.expect(",}") == "}":
                break
    raise ValueError(f"{path}: the top-level object has no {key!r} array")


def prepare(corpus_dir: str, labels: list[str], data_dir: str, skipped: Skipped) -> list[str]:
    """Write the data dirs of subsets `labels` from corpus_dir/WenetSpeech.json.

    Returns:
        a summary line per data dir.

    Raises:
        FileNotFoundError: no WenetSpeech.json.
        ValueError: malformed JSON, or an audio or segment entry lacks a field (named).
    """
    json_path = require(os.path.join(corpus_dir, "WenetSpeech.json"))
    writers = {
        label: DataDirWriter(os.path.join(data_dir, SUBSET_DIRS[label]), segments=True)
        for label in labels
    }
    try:
        for audio in iter_json_array(json_path, "audios"):
            try:
                _add_audio(audio, corpus_dir, writers, skipped)
            except KeyError as exc:
                aid = audio.get("aid", "?") if isinstance(audio, dict) else "?"
                raise ValueError(f"{json_path}: audio {aid}: an entry has no field {exc}") from None
    finally:
        for writer in writers.values():
            writer.close()
    return [writer.summary() for writer in writers.values()]


def _add_audio(
    audio: dict, corpus_dir: str, writers: dict[str, DataDirWriter], skipped: Skipped
) -> None:
    """Write the segments of one audio entry that are in a requested subset."""
    wanted = []
    for segment in audio["segments"]:
        labels = [label for label in segment["subsets"] if label in writers]
        if labels:
            wanted.append((segment, labels))
    if not wanted:
        return
    aid, duration = audio["aid"], float(audio["duration"])
    path = os.path.abspath(os.path.join(corpus_dir, audio["path"]))
    if key_problem(aid):
        skipped.add("bad_key", [segment["sid"] for segment, _ in wanted])
        return
    if not os.path.isfile(path):
        skipped.add("no_audio", [segment["sid"] for segment, _ in wanted])
        return
    listed: set[str] = set()
    for segment, labels in wanted:
        sid, text = segment["sid"], " ".join(segment["text"].split())
        begin, end = round(float(segment["begin_time"]), 3), round(float(segment["end_time"]), 3)
        if key_problem(sid):
            skipped.add("bad_key", sid)
        elif end <= begin or begin < 0:
            skipped.add("bad_times", sid)
        elif end > duration + END_TOLERANCE:
            skipped.add("beyond_audio", sid)
        elif not text:
            skipped.add("empty_text", sid)
        else:
            for label in labels:
                if label not in listed:
                    writers[label].add_recording(aid, path)
                    listed.add(label)
                writers[label].add(sid, text, end - begin, segment=(aid, begin, end))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--subsets",
        default="L DEV TEST_NET TEST_MEETING",
        help=f"subset labels of the JSON, out of {' '.join(SUBSET_DIRS)}",
    )
    parser.add_argument("corpus_dir", help="holds WenetSpeech.json and audio/")
    parser.add_argument("data_dir", help="parent of the data dirs to write")
    args = parser.parse_args()
    labels = args.subsets.split()
    unknown = [label for label in labels if label not in SUBSET_DIRS]
    if unknown or not labels:
        sys.exit(f"{PROG}: unknown --subsets {unknown or '(none)'}; known: {' '.join(SUBSET_DIRS)}")
    skipped = Skipped("bad_key", "no_audio", "bad_times", "beyond_audio", "empty_text")
    try:
        require(args.corpus_dir, "dir", "the WenetSpeech release: WenetSpeech.json and audio/")
        summaries = prepare(args.corpus_dir, labels, args.data_dir, skipped)
    except (FileNotFoundError, ValueError) as exc:
        sys.exit(f"{PROG}: {exc}")
    print("\n".join(summaries), file=sys.stderr)
    skipped.report(PROG)


if __name__ == "__main__":
    main()
