"""SpecAugment, SpecSub and SpecTrim: invariants of WeNet's semantics, no input mutation."""

import random

import pytest
import torch

from wenet_eff.data.augment import spec_aug, spec_sub, spec_trim


@pytest.fixture
def feats() -> torch.Tensor:
    return torch.arange(1, 100 * 20 + 1, dtype=torch.float32).reshape(100, 20)


def test_spec_aug_masks_spans_with_zero(feats):
    before = feats.clone()
    out = spec_aug(feats, num_t_mask=2, num_f_mask=2, max_t=10, max_f=3, rng=random.Random(0))
    assert torch.equal(feats, before)
    assert out.shape == feats.shape
    kept = out != 0
    assert torch.equal(out[kept], feats[kept])
    zero_rows = (~kept).all(dim=1).sum().item()
    zero_cols = (~kept).all(dim=0).sum().item()
    assert 1 <= zero_rows <= 2 * 10 and 1 <= zero_cols <= 2 * 3
    # every zero lies in a fully masked row or column
    assert ((~kept) <= ((~kept).all(1, keepdim=True) | (~kept).all(0, keepdim=True))).all()


def test_spec_aug_is_reproducible(feats):
    a = spec_aug(feats, 2, 2, 10, 3, random.Random(5))
    b = spec_aug(feats, 2, 2, 10, 3, random.Random(5))
    assert torch.equal(a, b)


def test_spec_sub_copies_earlier_frames(feats):
    before = feats.clone()
    out = spec_sub(feats, num_t_sub=3, max_t=20, rng=random.Random(1))
    assert torch.equal(feats, before) and out.shape == feats.shape
    changed = 0
    for t in range(out.shape[0]):
        if torch.equal(out[t], feats[t]):
            continue
        changed += 1
        assert any(torch.equal(out[t], feats[s]) for s in range(t)), f"frame {t} not from earlier"
    assert changed > 0


def test_spec_trim_drops_tail_frames(feats):
    before = feats.clone()
    for seed in range(20):
        out = spec_trim(feats, max_t=20, rng=random.Random(seed))
        assert 80 <= out.shape[0] < 100
        assert torch.equal(out, feats[: out.shape[0]])
    assert torch.equal(feats, before)


def test_spec_trim_keeps_short_utterances():
    short = torch.ones(4, 3)
    for seed in range(20):
        out = spec_trim(short, max_t=20, rng=random.Random(seed))
        assert out.shape[0] >= 3  # only 1 frame (< half) may go


def test_empty_feats_pass_through():
    empty = torch.zeros(0, 20)
    rng = random.Random(0)
    assert spec_aug(empty, 2, 2, 10, 3, rng).shape == (0, 20)
    assert spec_sub(empty, 3, 20, rng).shape == (0, 20)
    assert spec_trim(empty, 20, rng).shape == (0, 20)
