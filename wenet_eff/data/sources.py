"""Utterance sources: `data.list` JSON lines (raw) and lists of tar shards, read lazily."""

from __future__ import annotations

import json
import os
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from wenet_eff.data.audio import DownmixFn, load_audio, load_audio_bytes
from wenet_eff.data.text_file import utf8_lines

AUDIO_EXTENSIONS = {"wav", "flac", "mp3", "ogg", "opus", "m4a", "wma"}

# on_skip(key, reason, detail): how sources report an unusable utterance or shard.
SkipFn = Callable[[str, str, str], None]
BAD_KEY = "bad_key"  # the skip reason of a key that `key_problem` refuses


def key_problem(key: str) -> str | None:
    """Why `key` cannot name an utterance, or None when it can.

    A key is the first field of every `key value` file downstream (Kaldi `text` and `wav.scp`,
    recognize's results, compute_wer), split at whitespace; so a key must be non-empty and hold
    no whitespace (what `str.isspace` calls whitespace: space, tab, U+3000, ...).
    """
    if not key:
        return "empty key; every utterance needs one"
    if any(char.isspace() for char in key):
        return (
            f"key {key!r} contains whitespace, which splits it in text, wav.scp and result "
            "files; rename the utterance"
        )
    return None


@dataclass
class Utterance:
    """One utterance before decoding: `wav` is a path (raw) or the encoded file bytes (shard)."""

    key: str
    txt: str
    wav: str | bytes
    start: float | None = None
    end: float | None = None

    @property
    def source(self) -> str:
        """What audio errors name: the audio file (raw) or the key (shard member)."""
        return self.key if isinstance(self.wav, bytes) else self.wav

    def load(self, on_downmix: DownmixFn | None = None) -> tuple[np.ndarray, int]:
        """(wav (N,) float32, sample rate), as `load_audio` reads it; raises AudioError."""
        if isinstance(self.wav, bytes):
            return load_audio_bytes(self.wav, self.source, self.start, self.end, on_downmix)
        return load_audio(self.wav, self.start, self.end, on_downmix)


def read_data_list(path: str | os.PathLike) -> list[dict]:
    """Read and validate `data.list`: one JSON object per line with `key`, `wav`, `txt`
    (strings) and optional `start`, `end` (seconds, 0 <= start < end).

    Raises:
        ValueError naming the file and line of a malformed entry (not UTF-8 included).
    """
    path = os.fspath(path)
    entries = []
    for lineno, line in utf8_lines(path):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: not valid JSON ({exc.msg})") from exc
        if not isinstance(obj, dict):
            raise ValueError(f"{where}: expected a JSON object with key, wav, txt")
        for name in ("key", "wav", "txt"):
            if not isinstance(obj.get(name), str):
                raise ValueError(f"{where}: missing or non-string '{name}'")
        start, end = _seconds(obj, "start", where), _seconds(obj, "end", where)
        if (start is not None and start < 0) or (
            start is not None and end is not None and end <= start
        ):
            raise ValueError(f"{where}: invalid segment start={start} end={end}")
        entries.append(obj)
    return entries


def _seconds(obj: dict, name: str, where: str) -> float | None:
    value = obj.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise ValueError(f"{where}: '{name}' must be a number of seconds, got {value!r}")
    return value


def read_shard_list(path: str | os.PathLike) -> list[str]:
    """One `.tar` path per line; blank lines ignored."""
    return [line.strip() for _, line in utf8_lines(path) if line.strip()]


def raw_utterances(entries: list[dict], on_skip: SkipFn) -> Iterator[Utterance]:
    """The Utterances of validated `data.list` entries; a key that `key_problem` refuses is
    reported as `bad_key`."""
    for entry in entries:
        if problem := key_problem(entry["key"]):
            on_skip(entry["key"], BAD_KEY, problem)
        else:
            yield Utterance(
                entry["key"], entry["txt"], entry["wav"], entry.get("start"), entry.get("end")
            )


def iter_shard(tar_path: str, on_skip: SkipFn) -> Iterator[Utterance]:
    """Stream the utterances of one tar shard (`KEY.wav` + `KEY.txt` members, adjacent).

    A shard that is missing, not a tar, or truncated is reported once as `bad_shard` (key: the
    shard path) after the utterances read before the damage. An entry whose key `key_problem`
    refuses is `bad_key`, without audio `missing_file`, without text `missing_text`, with
    non-UTF-8 text `bad_text`.
    """
    key, parts = None, {}
    try:
        with tarfile.open(tar_path, mode="r|*") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                stem, _, ext = member.name.rpartition(".")
                if stem != key and key is not None:
                    yield from _shard_entry(key, parts, on_skip)
                    parts = {}
                key = stem
                parts[ext.lower()] = tar.extractfile(member).read()
        if key is not None:
            yield from _shard_entry(key, parts, on_skip)
    except (tarfile.TarError, OSError, EOFError) as exc:
        on_skip(tar_path, "bad_shard", f"unreadable shard ({exc})")


def _shard_entry(key: str, parts: dict[str, bytes], on_skip: SkipFn) -> Iterator[Utterance]:
    audio = [ext for ext in parts if ext in AUDIO_EXTENSIONS]
    if problem := key_problem(key):
        on_skip(key, BAD_KEY, problem)
    elif not audio:
        on_skip(key, "missing_file", "shard entry has no audio member")
    elif "txt" not in parts:
        on_skip(key, "missing_text", "shard entry has no .txt member")
    else:
        try:
            txt = parts["txt"].decode("utf-8").strip()
        except UnicodeDecodeError:
            on_skip(key, "bad_text", "text is not UTF-8")
            return
        yield Utterance(key, txt, parts[audio[0]])
