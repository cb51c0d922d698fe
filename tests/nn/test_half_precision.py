"""Half precision (bf16 and fp16, autocast or a model cast with .half()) stays close to fp32 and
finite: relative-position attention, masks and the softmax cap (WeNet users meet fp16
overflow in the relative-position logits).

Stated tolerances, about three times what the tiny model shows on CPU (fp16 keeps 11 bits of
mantissa, bf16 8): encoder outputs (values up to ~4 after the final LayerNorm) within 0.02 (fp16)
and 0.1 (bf16) at every valid frame; CTC log posteriors likewise; the loss within 1 % (fp16)
and 3 % (bf16).
"""

from __future__ import annotations

import pytest
import torch

from tests.tiny import tiny_model
from wenet_eff.nn.attention import (
    MultiHeadedAttention,
    RelPositionMultiHeadedAttention,
    StabilityConfig,
)

# name -> (dtype, cast the model with .to(dtype) instead of autocast, output tolerance)
MODES = {
    "bf16-autocast": (torch.bfloat16, False, 0.1),
    "fp16-autocast": (torch.float16, False, 0.02),
    "fp16-half": (torch.float16, True, 0.02),
}


def _run_in(mode: str, model: torch.nn.Module, fn):
    """fn(model, dtype) under `mode`: autocast around the fp32 model, or a cast copy."""
    dtype, cast, _ = MODES[mode]
    if cast:
        twin = tiny_model("model.encoder.use_dynamic_chunk=true")
        twin.load_state_dict(model.state_dict())
        return fn(twin.to(dtype), dtype)
    with torch.autocast("cpu", dtype=dtype):
        return fn(model, torch.float32)


def _valid(lens: torch.Tensor, frames: int) -> torch.Tensor:
    """(B, frames) True at encoder frames inside each utterance (conv2d subsampling by 4)."""
    return torch.arange(frames).unsqueeze(0) < (((lens - 1) // 2 - 1) // 2).unsqueeze(1)


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("chunk", [-1, 4])  # full context; chunks of 4 with 2 left chunks
@torch.no_grad()
def test_half_precision_encoder_stays_close_to_fp32(mode, chunk):
    model = tiny_model("model.encoder.use_dynamic_chunk=true")
    feats = torch.randn(3, 400, 80)
    lens = torch.tensor([400, 230, 90])

    def encode(m, dtype):
        out, _ = m.encoder(feats.to(dtype), lens, chunk, 2)
        return out, m.ctc.log_softmax(out)

    ref, ref_lp = encode(model, torch.float32)
    out, lp = _run_in(mode, model, encode)
    tol = MODES[mode][2]
    valid = _valid(lens, ref.size(1))
    assert out.dtype == MODES[mode][0]
    assert torch.isfinite(out).all() and torch.isfinite(lp).all()
    assert (out.float() - ref).abs()[valid].max() < tol
    assert (lp.float() - ref_lp).abs()[valid].max() < tol


@pytest.mark.parametrize("mode", ["bf16-autocast", "fp16-autocast"])
@torch.no_grad()
def test_half_precision_loss_stays_close_to_fp32(mode):
    """CTC + both attention decoders (padded targets, causal masks) under autocast."""
    model = tiny_model("model.encoder.use_dynamic_chunk=true")
    feats, lens = torch.randn(2, 300, 80), torch.tensor([300, 170])
    text, text_lens = torch.tensor([[3, 4, 5, 6], [7, 8, 0, 0]]), torch.tensor([4, 2])
    ref = model(feats, lens, text, text_lens)
    got = _run_in(mode, model, lambda m, _: m(feats, lens, text, text_lens))
    rel = 0.03 if mode.startswith("bf16") else 0.01
    for key in ("loss", "loss_ctc", "loss_att"):
        assert torch.isfinite(got[key])
        torch.testing.assert_close(got[key].float(), ref[key], rtol=rel, atol=0.0)


@torch.no_grad()
def test_long_padded_input_stays_finite_in_fp16():
    """30 s of frames beside a 2 s utterance padded to it, full context and chunked: every
    output frame (padding included) finite in a fp16 model."""
    model = tiny_model("model.encoder.use_dynamic_chunk=true").half()
    feats = torch.randn(2, 3000, 80, dtype=torch.float16)
    lens = torch.tensor([3000, 200])
    for chunk in (-1, 16):
        out, mask = model.encoder(feats, lens, chunk, -1)
        assert torch.isfinite(out).all(), f"chunk {chunk}"
        assert mask.sum() == _valid(lens, out.size(1)).sum()


def _large_logit_layer(cls, stability: StabilityConfig | None = None):
    """A layer whose unscaled q.k products exceed fp16's 65504 (its scaled logits do not)."""
    torch.manual_seed(0)
    layer = cls(2, 32, 0.0, stability).eval()
    with torch.no_grad():
        for lin in (layer.linear_q, layer.linear_k):
            lin.weight.copy_(torch.eye(32) * 40)
            lin.bias.zero_()
    return layer


@pytest.mark.parametrize("cls", [MultiHeadedAttention, RelPositionMultiHeadedAttention])
@torch.no_grad()
def test_large_logits_do_not_overflow_fp16(cls):
    layer = _large_logit_layer(cls)
    x = torch.ones(1, 6, 32) * 2 + torch.randn(1, 6, 32) * 0.1  # q.k ~ 16 x 80^2 > 65504
    pos = torch.randn(1, 6, 32)
    mask = torch.ones(1, 1, 6, dtype=torch.bool)
    mask[..., 4:] = False
    ref, _ = layer(x, x, x, mask, pos)
    half = _large_logit_layer(cls).half()
    got, _ = half(x.half(), x.half(), x.half(), mask, pos.half())
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got.float(), ref, atol=0.05, rtol=0.01)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@torch.no_grad()
def test_softmax_cap_in_half_precision(dtype):
    """The cap binds (logits in the thousands, capped to +-5) and gives fp32's output."""
    st = StabilityConfig(softmax_cap=5.0)
    layer = _large_logit_layer(RelPositionMultiHeadedAttention, st)
    x = torch.randn(2, 8, 32)
    pos = torch.randn(1, 8, 32)
    none = torch.ones(0, 0, 0, dtype=torch.bool)
    ref, _ = layer(x, x, x, none, pos)
    uncapped = _large_logit_layer(RelPositionMultiHeadedAttention)
    assert not torch.allclose(uncapped(x, x, x, none, pos)[0], ref, atol=0.1)
    half = _large_logit_layer(RelPositionMultiHeadedAttention, st).to(dtype)
    got, _ = half(x.to(dtype), x.to(dtype), x.to(dtype), none, pos.to(dtype))
    assert torch.isfinite(got).all()
    atol = 0.1 if dtype == torch.bfloat16 else 0.02
    torch.testing.assert_close(got.float(), ref, atol=atol, rtol=0.02)
