"""Reading checkpoint files: a model state_dict into a model, strictly, with errors that name
the file.

The lowest layer of the package (it imports only torch), so that compression
(`compress.load_weights`), training (`train.checkpoint`: resuming, averaging) and the command
lines all read weights the same way without importing each other.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import torch


class UnreadableCheckpoint(ValueError):
    """A checkpoint file exists but cannot be loaded (truncated, corrupt, unreadable)."""


def read_checkpoint(path: str | os.PathLike, weights_only: bool) -> Any:
    """`torch.load(path)` on the CPU; UnreadableCheckpoint naming the file when it is damaged.
    `weights_only=False` only for our own files (resume state holds pickled RNG states)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    # a damaged file fails in many ways (zip reader, unpickler, EOF, I/O): all mean "unreadable"
    except Exception as exc:
        raise UnreadableCheckpoint(
            f"cannot read {path} ({type(exc).__name__}: {exc}): truncated, corrupt or unreadable"
        ) from exc


def load_model_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A model state_dict from `path` (tensors only); UnreadableCheckpoint when damaged."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return read_checkpoint(path, weights_only=True)


def load_weights(
    model: torch.nn.Module,
    path: str | os.PathLike,
    source: str,
    optional: set[str] | frozenset[str] = frozenset(),
    skip: Callable[[str], bool] | None = None,
) -> set[str]:
    """Load the state_dict at `path` into `model` (strict, except that the `optional` keys may
    be missing, and that keys with `skip(key)` true are left out); `source` names it in
    errors. Returns the optional keys that were missing."""
    state = load_model_state(path)
    if skip is not None:
        state = {k: v for k, v in state.items() if not skip(k)}
    try:  # shapes are still checked strictly; the key sets are compared below
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise ValueError(f"{source} {path} does not fit the model of this config: {exc}") from exc
    required = sorted(set(result.missing_keys) - set(optional))
    unexpected = sorted(result.unexpected_keys)
    if required or unexpected:
        raise ValueError(
            f"{source} {path} does not fit the model of this config: {len(required)} missing "
            f"keys {required[:5]}{' ...' * (len(required) > 5)}, {len(unexpected)} unexpected "
            f"keys {unexpected[:5]}{' ...' * (len(unexpected) > 5)}"
        )
    return set(optional) & set(result.missing_keys)
