"""Read and write Kaldi data-dir tables (`wav.scp`, `text`, `utt2dur`, `segments`).

A table is `key value` per line: the key up to the first whitespace (spaces or tabs, as Kaldi
reads it), the value the rest of the line. Errors name the file and line.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from wenet_eff.data.text_file import utf8_lines


@dataclass(frozen=True)
class Segment:
    """One line of a Kaldi `segments` file: an utterance cut from a recording (seconds).

    `end` is None for Kaldi's `-1` (to the end of the recording).
    """

    key: str
    recording: str
    start: float
    end: float | None


def read_table(path: str | os.PathLike, allow_empty: bool = False) -> dict[str, str]:
    """`key value` lines into {key: value}, in file order (key and value split at the first
    whitespace run, so a key never holds whitespace).

    Args:
        path: the table file.
        allow_empty: accept a key with no value (e.g. an empty hypothesis) as "".

    Raises:
        ValueError: a line is not UTF-8, has no value (unless `allow_empty`) or repeats a key.
    """
    table: dict[str, str] = {}
    for lineno, line in utf8_lines(path):
        if not line.strip():
            continue
        key, value = (line.split(maxsplit=1) + [""])[:2]
        value = value.strip()
        if not value and not allow_empty:
            raise ValueError(f"{path}:{lineno}: expected 'key value', got {line.rstrip()!r}")
        if key in table:
            raise ValueError(f"{path}:{lineno}: duplicate key {key!r}")
        table[key] = value
    return table


def write_table(
    path: str | os.PathLike, table: dict[str, str], keys: Iterable[str] | None = None
) -> None:
    """Write `key value` lines for `keys` (default: all keys of `table`, in its order)."""
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(f"{key} {table[key]}\n" for key in (table if keys is None else keys))


def read_segments(path: str | os.PathLike) -> list[Segment]:
    """Kaldi `segments`: `utt_key recording_key start end` (seconds; end -1: to the end)."""
    segments = []
    for lineno, line in utf8_lines(path):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{lineno}"
        if len(fields) != 4:
            raise ValueError(f"{where}: expected 'utt recording start end', got {line!r}")
        try:
            start, end = float(fields[2]), float(fields[3])
        except ValueError:
            raise ValueError(f"{where}: start/end are not numbers: {line.rstrip()!r}") from None
        if start < 0 or (end != -1 and end <= start):
            raise ValueError(f"{where}: need 0 <= start < end (or end -1), got {start}, {end}")
        segments.append(Segment(fields[0], fields[1], start, None if end == -1 else end))
    return segments
