"""The fused attention path (`fused_softmax`, set by the .pt2 export) computes what the
explicit softmax computes."""

from __future__ import annotations

import pytest
import torch

from wenet_eff.nn.attention import (
    MultiHeadedAttention,
    RelPositionMultiHeadedAttention,
    StabilityConfig,
)


def _pair(cls, stability=None):
    torch.manual_seed(0)
    plain = cls(4, 32, 0.0, stability).eval()
    fused = cls(4, 32, 0.0, stability).eval()
    fused.load_state_dict(plain.state_dict())
    fused.fused_softmax = True
    return plain, fused


@pytest.mark.parametrize("keys", [4, 2])  # own keys, keys shared by pairs of queries
@torch.no_grad()
def test_fused_plain_attention_equals_the_softmax(keys):
    plain, fused = _pair(MultiHeadedAttention)
    q = torch.randn(4, 6, 32)
    kv = torch.randn(keys, 9, 32)
    mask = torch.ones(keys, 1, 9, dtype=torch.bool)
    mask[0, :, 5:] = False  # a padded key sequence
    masks = [mask, torch.ones(0, 0, 0, dtype=torch.bool)]
    if keys == 4:  # a per-query mask (self-attention); shared keys take (G, 1, T2) only
        masks.append(torch.tril(torch.ones(6, 9, dtype=torch.bool)).expand(4, 6, 9))
    for m in masks:
        expected, _ = plain(q, kv, kv, m)
        got, _ = fused(q, kv, kv, m)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_fused_relative_position_attention_equals_the_softmax_with_a_cache():
    plain, fused = _pair(RelPositionMultiHeadedAttention)
    x = torch.randn(1, 5, 32)
    cache = torch.randn(1, 4, 7, 16)
    pos = torch.randn(1, 12, 32)
    mask = torch.ones(1, 1, 12, dtype=torch.bool)
    mask[..., :3] = False  # cache slots not filled yet
    expected, expected_cache = plain(x, x, x, mask, pos, cache)
    got, got_cache = fused(x, x, x, mask, pos, cache)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got_cache, expected_cache)


@torch.no_grad()
def test_fused_path_steps_aside_for_capped_logits_and_training():
    """softmax_cap is no additive term: the fused flag leaves such a layer on its softmax;
    so does training, whose attention dropout the fused call lacks."""
    st = StabilityConfig(softmax_cap=0.5)
    plain, fused = _pair(MultiHeadedAttention, st)
    with torch.no_grad():  # logits large enough for the cap to bind
        fused.linear_q.weight.mul_(20)
        plain.linear_q.weight.mul_(20)
    x = torch.randn(2, 6, 32)
    none = torch.ones(0, 0, 0, dtype=torch.bool)
    torch.testing.assert_close(fused(x, x, x, none)[0], plain(x, x, x, none)[0])
    plain.softmax_cap = 0.0
    assert not torch.allclose(fused(x, x, x, none)[0], plain(x, x, x, none)[0], atol=1e-3)
    plain, fused = _pair(MultiHeadedAttention)
    assert fused._fused() and not fused.train()._fused()
