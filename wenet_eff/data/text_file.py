"""Line-by-line reading of the UTF-8 text files a recipe hands over (data.list, shard lists,
units.txt, non-language symbols, Kaldi tables), with errors that name the file and line."""

from __future__ import annotations

import os
from collections.abc import Iterator


class NotUtf8Error(ValueError):
    """A line of a text file is not valid UTF-8."""


def utf8_lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """(line number from 1, line with its newline) of the UTF-8 text file `path`.

    Raises:
        NotUtf8Error: naming the file, line, column and byte of the first invalid sequence,
            and how to re-encode the file.
    """
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise NotUtf8Error(
                    f"{os.fspath(path)}:{lineno}: not UTF-8 (byte 0x{raw[exc.start]:02x} at byte "
                    f"{exc.start + 1} of the line); convert the file to UTF-8, e.g. "
                    "iconv -f GB18030 -t UTF-8 (or the encoding it was written in)"
                ) from None
