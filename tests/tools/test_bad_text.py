"""A non-UTF-8 line in a Kaldi table (`text`, `wav.scp`, `segments`) is an error naming the file,
line and byte, as in every other text file a recipe reads (tests/data/test_bad_text.py)."""

from __future__ import annotations

import pytest
from kaldi_files import read_segments, read_table

LATIN1_E = "\xe9".encode("latin-1")  # "é" in Latin-1: byte 0xe9, not UTF-8 on its own


@pytest.mark.parametrize(
    "reader, good, bad",
    [
        (read_table, b"u1 the cafe", b"u2 the caf" + LATIN1_E),
        (read_segments, b"u1 rec 0.0 1.0", b"u2 r" + LATIN1_E + b"c 1.0 2.0"),
    ],
    ids=["text", "segments"],
)
def test_a_non_utf8_line_names_the_file_and_line(tmp_path, reader, good, bad):
    path = tmp_path / "text"
    path.write_bytes(good + b"\n" + bad + b"\n")
    with pytest.raises(ValueError) as info:
        reader(path)
    assert str(info.value).startswith(f"{path}:2: not UTF-8 (byte 0xe9 at byte ")
