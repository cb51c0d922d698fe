"""Buffers and batching for the data pipeline: shuffle, sort, static/dynamic batches, padding,
and the per-batch report of skipped utterances."""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import torch
from torch.nn.utils.rnn import pad_sequence

logger = logging.getLogger(__name__)

IGNORE_ID = -1  # target padding, ignored by the losses
# Counted next to the skip reasons but for utterances that were kept (e.g. decoding text with
# characters outside units.txt); consumers summing skips should leave these out.
UNKNOWN_TOKEN_MAPPED = "unknown_token_mapped"
DOWNMIXED = "downmixed"  # multi-channel audio averaged to mono (data.audio)
INFORMATIONAL_REASONS = frozenset({UNKNOWN_TOKEN_MAPPED, DOWNMIXED})


@dataclass
class Example:
    """A processed utterance: feats (T, D) float32, target (L,) int64."""

    key: str
    feats: torch.Tensor
    target: torch.Tensor


class SkipCounter:
    """Logs each skipped utterance and counts skips by reason until the next batch drains them;
    `note` logs and counts a kept utterance under an informational reason the same way."""

    def __init__(self) -> None:
        self.pending: Counter[str] = Counter()

    def __call__(self, key: str, reason: str, detail: str = "") -> None:
        self._count("skip utterance", key, reason, detail)

    def note(self, key: str, reason: str, detail: str = "") -> None:
        """Count kept utterance `key` under `reason`, one of `INFORMATIONAL_REASONS`."""
        if reason not in INFORMATIONAL_REASONS:
            raise ValueError(f"'{reason}' is not one of INFORMATIONAL_REASONS")
        self._count("keep utterance", key, reason, detail, logging.INFO)

    def _count(
        self, action: str, key: str, reason: str, detail: str, level: int = logging.WARNING
    ) -> None:
        # a kept utterance is only informational (a stereo corpus would warn on every line)
        logger.log(level, "%s %s: %s%s", action, key, reason, f" ({detail})" if detail else "")
        self.pending[reason] += 1

    def drain(self) -> dict[str, int]:
        counts = dict(self.pending)
        self.pending.clear()
        return counts


def shuffle_buffer(examples: Iterable[Example], size: int, rng: random.Random) -> Iterator[Example]:
    """Shuffle within consecutive windows of `size` examples."""
    buf: list[Example] = []
    for ex in examples:
        buf.append(ex)
        if len(buf) >= size:
            rng.shuffle(buf)
            yield from buf
            buf = []
    rng.shuffle(buf)
    yield from buf


def sort_buffer(examples: Iterable[Example], size: int) -> Iterator[Example]:
    """Sort by frame count within consecutive windows of `size` examples (less padding)."""
    buf: list[Example] = []
    for ex in examples:
        buf.append(ex)
        if len(buf) >= size:
            yield from sorted(buf, key=lambda e: e.feats.shape[0])
            buf = []
    yield from sorted(buf, key=lambda e: e.feats.shape[0])


def static_batches(examples: Iterable[Example], batch_size: int) -> Iterator[list[Example]]:
    """Batches of `batch_size` examples (the last may be smaller)."""
    buf: list[Example] = []
    for ex in examples:
        buf.append(ex)
        if len(buf) >= batch_size:
            yield buf
            buf = []
    if buf:
        yield buf


def dynamic_batches(
    examples: Iterable[Example], max_frames_in_batch: int, on_skip: SkipCounter
) -> Iterator[list[Example]]:
    """Batches whose padded size (batch size * longest frames) stays <= `max_frames_in_batch`.

    An example longer than `max_frames_in_batch` on its own is skipped (`too_long_for_batch`).
    """
    buf: list[Example] = []
    longest = 0
    for ex in examples:
        frames = ex.feats.shape[0]
        if frames > max_frames_in_batch:
            on_skip(ex.key, "too_long_for_batch", f"{frames} > max_frames_in_batch")
            continue
        if max(longest, frames) * (len(buf) + 1) > max_frames_in_batch:
            yield buf
            buf, longest = [], 0
        buf.append(ex)
        longest = max(longest, frames)
    if buf:
        yield buf


def pad_batch(examples: list[Example], feat_dim: int, skipped: dict[str, int]) -> dict:
    """Collate examples, longest first.

    Returns:
        keys: list[str] (B); feats: (B, T_max, D) float32 zero-padded; feats_lengths: (B,) int64;
        target: (B, L_max) int64 padded with IGNORE_ID; target_lengths: (B,) int64;
        skipped: {reason: count} of utterances skipped since the previous batch, plus any
        `INFORMATIONAL_REASONS` counting utterances that were kept.
        With no examples, B = 0 and T_max = L_max = 0.
    """
    examples = sorted(examples, key=lambda e: e.feats.shape[0], reverse=True)
    if examples:
        feats = pad_sequence([e.feats for e in examples], batch_first=True, padding_value=0.0)
        target = pad_sequence(
            [e.target for e in examples], batch_first=True, padding_value=IGNORE_ID
        )
    else:
        feats = torch.zeros(0, 0, feat_dim)
        target = torch.zeros(0, 0, dtype=torch.int64)
    return {
        "keys": [e.key for e in examples],
        "feats": feats,
        "feats_lengths": torch.tensor([e.feats.shape[0] for e in examples], dtype=torch.int64),
        "target": target,
        "target_lengths": torch.tensor([e.target.shape[0] for e in examples], dtype=torch.int64),
        "skipped": skipped,
    }


def padded_batches(
    batches: Iterable[list[Example]], feat_dim: int, skips: SkipCounter
) -> Iterator[dict]:
    """Pad each batch and attach the skips counted so far; skips still pending when the stream
    ends come out in one last batch with no utterances."""
    for batch in batches:
        yield pad_batch(batch, feat_dim, skips.drain())
    if skips.pending:
        yield pad_batch([], feat_dim, skips.drain())
