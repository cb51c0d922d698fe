"""Feature-level augmentation with WeNet's semantics: SpecAugment masks, SpecSub, SpecTrim.

Every function takes feats (T, D) and a `random.Random`, and returns a new tensor
(the input is never modified), so results are reproducible under a seed.
"""

from __future__ import annotations

import random

import torch


def spec_aug(
    feats: torch.Tensor,
    num_t_mask: int,
    num_f_mask: int,
    max_t: int,
    max_f: int,
    rng: random.Random,
) -> torch.Tensor:
    """Zero `num_t_mask` time spans of 1..max_t frames and `num_f_mask` bands of 1..max_f bins.

    Args:
        feats: (T, D).
    Returns:
        (T, D) copy with the masked spans set to 0.
    """
    out = feats.clone()
    num_t, dim = out.shape
    if num_t > 0 and max_t > 0:
        for _ in range(num_t_mask):
            start = rng.randint(0, num_t - 1)
            out[start : start + rng.randint(1, max_t), :] = 0
    if dim > 0 and max_f > 0:
        for _ in range(num_f_mask):
            start = rng.randint(0, dim - 1)
            out[:, start : start + rng.randint(1, max_f)] = 0
    return out


def spec_sub(feats: torch.Tensor, num_t_sub: int, max_t: int, rng: random.Random) -> torch.Tensor:
    """Replace `num_t_sub` spans of 1..max_t frames with the same-length span starting earlier.

    Args:
        feats: (T, D).
    Returns:
        (T, D) copy; each substituted span [s, e) holds the original frames [s-p, e-p), 0 <= p <= s.
    """
    out = feats.clone()
    num_t = out.shape[0]
    if num_t == 0 or max_t <= 0:
        return out
    for _ in range(num_t_sub):
        start = rng.randint(0, num_t - 1)
        end = min(num_t, start + rng.randint(1, max_t))
        shift = rng.randint(0, start)
        out[start:end, :] = feats[start - shift : end - shift, :]
    return out


def spec_trim(feats: torch.Tensor, max_t: int, rng: random.Random) -> torch.Tensor:
    """Drop 1..max_t frames from the end, unless that would remove half the utterance or more.

    Args:
        feats: (T, D).
    Returns:
        (T - n, D) copy, n in [1, max_t] (n = 0 when n >= T/2).
    """
    num_t = feats.shape[0]
    if max_t <= 0:
        return feats.clone()
    trim = rng.randint(1, max_t)
    if trim >= num_t / 2:
        return feats.clone()
    return feats[: num_t - trim].clone()
