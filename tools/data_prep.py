"""Helpers of the recipes' corpus preparation scripts (recipes/<corpus>/s0/local/prepare_*.py).

A Kaldi data dir written line by line (`wav.scp`, `text`, `utt2dur` [, `segments`]), audio
durations read from file headers, checks that name a missing corpus file, and the count of the
utterances a script skipped (by reason, with a few keys, reported on stderr). Keys with
whitespace are refused (`key_problem`): the scripts skip them as `bad_key` before writing.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor

import soundfile as sf

from wenet_eff.data.sources import key_problem


def require(path: str, kind: str = "file", hint: str = "") -> str:
    """`path` when it is an existing `kind` ("file" or "dir").

    Raises:
        FileNotFoundError: it is missing; the message names it (and adds `hint`).
    """
    exists = os.path.isdir(path) if kind == "dir" else os.path.isfile(path)
    if not exists:
        what = "directory" if kind == "dir" else "file"
        raise FileNotFoundError(f"no such {what}: {path}" + (f" ({hint})" if hint else ""))
    return path


def audio_durations(paths: dict[str, str], nj: int = 1) -> tuple[dict[str, float], list[str]]:
    """Durations (seconds) of audio files from their headers, without decoding the samples.

    Args:
        paths: {key: audio path}.
        nj: threads reading headers (helps on network file systems).

    Returns:
        ({key: duration} in the order of `paths`, keys whose file cannot be read or is empty).
    """

    def duration(path: str) -> float | None:
        try:
            info = sf.info(path)
        except (sf.LibsndfileError, RuntimeError, OSError):
            return None
        return info.duration if info.frames > 0 else None

    with ThreadPoolExecutor(max(1, nj)) as pool:
        found = dict(zip(paths, pool.map(duration, paths.values()), strict=True))
    bad = [key for key, dur in found.items() if dur is None]
    return {key: dur for key, dur in found.items() if dur is not None}, bad


class DataDirWriter:
    """Writes a Kaldi data dir line by line (so a corpus never has to be held in memory).

    Without segments each utterance is its own recording (`wav.scp` keyed by utterance); with
    `segments=True` recordings are added once with `add_recording` and utterances point into
    them with `start`/`end` seconds. Times are written in milliseconds precision.
    """

    def __init__(self, out_dir: str, segments: bool = False) -> None:
        os.makedirs(out_dir, exist_ok=True)
        self.out_dir = out_dir
        names = ["wav.scp", "text", "utt2dur"] + (["segments"] if segments else [])
        self._files = {n: open(os.path.join(out_dir, n), "w", encoding="utf-8") for n in names}
        self.num_utts = 0
        self.seconds = 0.0

    def add_recording(self, recording: str, path: str) -> None:
        """A `wav.scp` line (use with segments=True; `add` writes it otherwise).

        Raises:
            ValueError: `key_problem` refuses `recording`.
        """
        _check_key(recording)
        self._files["wav.scp"].write(f"{recording} {path}\n")

    def add(
        self,
        key: str,
        text: str,
        duration: float,
        path: str | None = None,
        segment: tuple[str, float, float] | None = None,
    ) -> None:
        """One utterance: its audio `path`, or a `segment` (recording, start, end) of one.

        Raises:
            ValueError: `key_problem` refuses `key` (skip such keys as `bad_key` before).
        """
        _check_key(key)
        if segment is None:
            self._files["wav.scp"].write(f"{key} {path}\n")
        else:
            recording, start, end = segment
            self._files["segments"].write(f"{key} {recording} {start:.3f} {end:.3f}\n")
        self._files["text"].write(f"{key} {text}\n")
        self._files["utt2dur"].write(f"{key} {duration:.3f}\n")
        self.num_utts += 1
        self.seconds += duration

    def close(self) -> None:
        for f in self._files.values():
            f.close()

    def __enter__(self) -> DataDirWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def summary(self) -> str:
        """`DIR: N utterances, H h` for the report."""
        return f"{self.out_dir}: {self.num_utts} utterances, {self.seconds / 3600:.3f} h"


def _check_key(key: str) -> None:
    if problem := key_problem(key):
        raise ValueError(f"DataDirWriter: {problem}")


class Skipped:
    """Counts skipped utterances by reason, keeping the first few keys of each to name."""

    def __init__(self, *reasons: str, num_examples: int = 5) -> None:
        self.counts = dict.fromkeys(reasons, 0)
        self.examples: dict[str, list[str]] = {r: [] for r in reasons}
        self.num_examples = num_examples

    def add(self, reason: str, keys: str | list[str]) -> None:
        """Count `keys` (one key or several) as skipped for `reason` (one given at creation)."""
        keys = [keys] if isinstance(keys, str) else keys
        self.counts[reason] += len(keys)
        self.examples[reason].extend(keys[: self.num_examples - len(self.examples[reason])])

    def report(self, prog: str) -> None:
        """`prog: N utterances skipped (reason), e.g. k1, k2` on stderr, for each reason seen
        (a key that is not one token quoted)."""
        for reason, count in self.counts.items():
            if count:
                keys = [repr(k) if key_problem(k) else k for k in self.examples[reason]]
                print(f"{prog}: {count} utterances skipped ({reason}), e.g. {', '.join(keys)}",
                      file=sys.stderr)  # fmt: skip
