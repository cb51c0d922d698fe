"""Stability options (QK-LayerNorm, softmax capping, LayerNorm after QKV / Proj / FC2): each one
changes the forward as specified, and they compose with streaming, the decoder cache and MoE."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from tests.tiny import tiny_model
from wenet_eff.nn.attention import MultiHeadedAttention, StabilityConfig
from wenet_eff.nn.ffn import PositionwiseFeedForward

ALL = [
    "model.stability.qk_norm=true",
    "model.stability.softmax_cap=3.0",
    "model.stability.qkv_norm=true",
    "model.stability.proj_norm=true",
    "model.stability.fc2_norm=true",
    "model.stability.embed_norm=true",
]


def reference_attention(m: MultiHeadedAttention, x: torch.Tensor, st: StabilityConfig):
    """The specification, written out: (B, T, D) self-attention without mask."""
    b, t, d = x.shape

    def project(layer, norm):
        y = F.linear(x, layer.weight, layer.bias)
        if st.qkv_norm:
            y = F.layer_norm(y, (d,), norm.weight, norm.bias)
        return y.view(b, t, m.h, m.d_k).transpose(1, 2)

    q = project(m.linear_q, m.linear_q_norm)
    k = project(m.linear_k, m.linear_k_norm)
    v = project(m.linear_v, m.linear_v_norm)
    if st.qk_norm:
        q = F.layer_norm(q, (m.d_k,), m.q_norm.weight, m.q_norm.bias)
        k = F.layer_norm(k, (m.d_k,), m.k_norm.weight, m.k_norm.bias)
    logits = q @ k.transpose(-2, -1) / math.sqrt(m.d_k)
    raw_max = logits.max()
    if st.softmax_cap > 0:
        logits = st.softmax_cap * torch.tanh(logits / st.softmax_cap)
    out = (logits.softmax(-1) @ v).transpose(1, 2).reshape(b, t, d)
    out = F.linear(out, m.linear_out.weight, m.linear_out.bias)
    if st.proj_norm:
        out = F.layer_norm(out, (d,), m.linear_out_norm.weight, m.linear_out_norm.bias)
    return out, logits, raw_max


def randomise(module: torch.nn.Module, scale: float) -> None:
    """Random weights (norm gains and biases too), scaled so logits get large."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * (scale if p.dim() > 1 else 0.5) + (p.dim() == 1))


@pytest.mark.parametrize(
    "st",
    [
        StabilityConfig(),
        StabilityConfig(qk_norm=True),
        StabilityConfig(softmax_cap=2.0),
        StabilityConfig(qk_norm=True, softmax_cap=2.0),
        StabilityConfig(qkv_norm=True),
        StabilityConfig(proj_norm=True),
        StabilityConfig(qk_norm=True, softmax_cap=2.0, qkv_norm=True, proj_norm=True),
    ],
    ids=["none", "qk_norm", "cap", "qk_norm_cap", "qkv_norm", "proj_norm", "all"],
)
def test_attention_options_compute_what_they_specify(st):
    m = MultiHeadedAttention(4, 32, 0.0, st).eval()
    randomise(m, 1.0)
    x = torch.randn(2, 7, 32)
    m.record_logits = True
    out, _ = m(x, x, x, torch.ones(0, 0, 0, dtype=torch.bool))
    expected, logits, raw_max = reference_attention(m, x, st)
    # atol 3e-5: the layer scales q by 1/sqrt(d_k) before the product (for half precision),
    # the specification after it; with these large logits the roundings differ by ~1.6e-5
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=3e-5)
    torch.testing.assert_close(m.max_logit, raw_max)  # recorded before capping
    if st.softmax_cap:
        assert raw_max > st.softmax_cap  # the weights make the cap bind...
        assert logits.abs().max() <= st.softmax_cap  # ...and it bounds what softmax sees
    if st.proj_norm:  # before its affine, the output is normalised per position
        z = (out - m.linear_out_norm.bias) / m.linear_out_norm.weight
        torch.testing.assert_close(z.mean(-1), torch.zeros(2, 7), atol=1e-4, rtol=0)
        torch.testing.assert_close(z.var(-1, unbiased=False), torch.ones(2, 7), atol=1e-3, rtol=0)


def test_qk_norm_makes_logits_independent_of_the_projection_scale():
    m = MultiHeadedAttention(2, 16, 0.0, StabilityConfig(qk_norm=True)).eval()
    x = torch.randn(1, 5, 16)
    m.record_logits = True
    m(x, x, x, torch.ones(0, 0, 0, dtype=torch.bool))
    small = m.max_logit
    with torch.no_grad():
        m.linear_q.weight.mul_(100.0)
        m.linear_q.bias.mul_(100.0)
    m(x, x, x, torch.ones(0, 0, 0, dtype=torch.bool))
    torch.testing.assert_close(m.max_logit, small, rtol=1e-3, atol=1e-3)
    assert small <= math.sqrt(m.d_k) + 1e-4  # unit-gain LayerNorm: |q.k| / sqrt(d) <= sqrt(d)


def test_fc2_norm_normalises_every_ffn_output_and_every_expert():
    ffn = PositionwiseFeedForward(16, 32, 0.0, torch.nn.ReLU(), fc2_norm=True)
    y = ffn(torch.randn(3, 16) * 50)
    torch.testing.assert_close(y.mean(-1), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.var(-1, unbiased=False), torch.ones(3), atol=1e-3, rtol=0)
    moe = tiny_model("model/ffn=moe", "model.stability.fc2_norm=true")
    layer = moe.encoder.encoders[0].feed_forward
    assert all(e.w_2_norm is not None for e in layer.experts)
    assert "encoder.encoders.0.feed_forward.experts.3.w_2_norm.weight" in moe.state_dict()
    out = layer(torch.randn(2, 5, 32))  # a convex mix of normalised outputs has mean 0
    torch.testing.assert_close(out.mean(-1), torch.zeros(2, 5), atol=1e-5, rtol=0)


def test_embed_norm_normalises_the_front_end_output_before_the_positional_encoding():
    model = tiny_model("model.stability.embed_norm=true").eval()
    embed = model.encoder.embed
    assert "encoder.embed.out_norm.weight" in model.state_dict()
    assert "embed.out_norm" not in str(tiny_model().state_dict().keys())
    embed.out[0].weight.data.mul_(1000.0)  # a grown front end
    x, mask = torch.randn(2, 40, 80), torch.ones(2, 1, 40, dtype=torch.bool)
    y, _, _ = embed(x, mask)
    scale = embed.pos_enc.xscale  # RelPositionalEncoding: x * sqrt(d), then dropout (eval: none)
    torch.testing.assert_close((y / scale).mean(-1), torch.zeros(y.shape[:2]), atol=1e-4, rtol=0)
    torch.testing.assert_close(
        (y / scale).var(-1, unbiased=False), torch.ones(y.shape[:2]), atol=1e-3, rtol=0
    )


def test_qkv_norm_replaces_the_pre_norms_of_attention_blocks():
    model = tiny_model("stability=qkv_norm")
    state = model.state_dict()
    assert "encoder.encoders.0.norm_mha.weight" not in state
    assert "encoder.encoders.0.self_attn.linear_k_norm.weight" in state
    assert "decoder.left_decoder.decoders.0.norm1.weight" not in state
    assert "decoder.left_decoder.decoders.0.norm2.weight" not in state
    assert "decoder.left_decoder.decoders.0.norm3.weight" in state  # the FFN keeps its pre-norm
    assert "decoder.left_decoder.decoders.0.src_attn.linear_q_norm.weight" in state
    baseline = tiny_model()
    assert "encoder.encoders.0.norm_mha.weight" in baseline.state_dict()
    assert not any("_norm." in k and "self_attn" in k for k in baseline.state_dict())


def test_scope_keeps_the_decoder_plain():
    model = tiny_model("stability=qk_norm_cap", "model.stability.decoder=false")
    assert model.encoder.encoders[0].self_attn.softmax_cap == 20.0
    assert model.encoder.encoders[0].self_attn.q_norm is not None
    decoder_attn = model.decoder.left_decoder.decoders[0].self_attn
    assert decoder_attn.softmax_cap == 0.0 and decoder_attn.q_norm is None


@pytest.mark.parametrize("chunk,left", [(4, -1), (8, 1)])
def test_all_options_keep_chunk_by_chunk_equal_to_the_masked_forward(chunk, left):
    model = tiny_model("model.encoder.causal=true", "model.encoder.use_dynamic_chunk=true", *ALL)
    randomise(model.encoder.encoders, 0.3)  # so the norms and the cap matter
    xs = torch.randn(1, 150, 80)
    with torch.inference_mode():
        full, _ = model.encoder(xs, torch.tensor([150]), chunk, left)
        streamed, _ = model.encoder.forward_chunk_by_chunk(xs, chunk, left)
    assert (streamed - full).abs().max() <= 1e-4


def test_all_options_keep_the_incremental_decoder_equal_to_the_full_one():
    model = tiny_model(*ALL)
    decoder = model.decoder.left_decoder
    memory, memory_mask = torch.randn(2, 9, 32), torch.ones(2, 1, 9, dtype=torch.bool)
    tokens = torch.randint(1, 11, (2, 5))
    with torch.inference_mode():
        logits = decoder(memory, memory_mask, tokens, torch.tensor([5, 5]))
        cache = None
        for i in range(1, 6):
            logp, cache = decoder.forward_one_step(memory, memory_mask, tokens[:, :i], cache)
            torch.testing.assert_close(logp, logits[:, i - 1].log_softmax(-1), atol=1e-5, rtol=0)


VARIANT_NORMS = {
    "qk_norm": ("q_norm", "k_norm"),
    "qk_norm_cap": ("q_norm", "k_norm"),
    "qkv_norm": ("linear_q_norm", "linear_k_norm", "linear_v_norm"),
    "qk_proj_fc2_norm": ("q_norm", "k_norm", "linear_out_norm", "w_2_norm"),
    "qk_proj_fc2_embed_norm": ("q_norm", "k_norm", "linear_out_norm", "w_2_norm", "out_norm"),
}


@pytest.mark.parametrize("variant", sorted(VARIANT_NORMS))
def test_packaged_variants_train_with_moe(variant):
    model = tiny_model("model/ffn=moe", f"stability={variant}").train()
    xs, lens = torch.randn(2, 60, 80), torch.tensor([60, 45])
    text, text_lens = torch.randint(1, 11, (2, 4)), torch.tensor([4, 3])
    out = model(xs, lens, text, text_lens)
    out["loss"].backward()
    assert torch.isfinite(out["loss"])
    for suffix in VARIANT_NORMS[variant]:  # the variant's own norms exist and get gradients
        norms = [m for n, m in model.named_modules() if n.endswith(f".{suffix}")]
        assert norms and all(m.weight.grad is not None for m in norms), suffix
    # the norms are in every expert, encoder and decoders (w_2_norm: 8 experts x 2 FFNs x 2
    # encoder blocks + 8 x 1 per decoder layer x 2 decoders)
    if variant == "qk_proj_fc2_norm":
        assert sum(n.endswith(".w_2_norm") for n, _ in model.named_modules()) == 8 * 4 + 8 * 2
