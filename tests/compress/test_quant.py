"""Fake quantizers: levels and error bounds, gradients, layouts, clipping, noise, integer mode."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

import wenet_eff
from tests.tiny import TINY
from wenet_eff import compress
from wenet_eff.compress.quant import Groups, QuantConfig, WeightQuantizer, integer_linear, qrange


def qcfg(**kw):
    return OmegaConf.structured(QuantConfig(enabled=True, **kw))


def weight(rows=16, cols=100, seed=0):
    torch.manual_seed(seed)
    return torch.randn(rows, cols)


@pytest.mark.parametrize("bits", [8, 4, 2])
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("granularity", ["tensor", "channel", "subchannel"])
def test_round_trip_error_is_at_most_half_a_step(bits, symmetric, granularity):
    w = weight()
    q = WeightQuantizer(qcfg(bits=bits, symmetric=symmetric, granularity=granularity,
                             block_size=32), bits, w).eval()  # fmt: skip
    w_hat = q(w)
    stored = q.integers(w)
    qmin, qmax = qrange(bits, symmetric)
    assert stored["q"].min() >= qmin and stored["q"].max() <= qmax
    # without clipping: error <= step / 2 inside the range; an integer zero point can cut up
    # to half a step off one end of an asymmetric range, so there the bound is one step
    step = q.layout.merge(stored["scale"].float().expand_as(q.layout.split(w)))
    bound = step / 2 if symmetric else step
    assert ((w_hat - w).abs() <= bound + 1e-6).all()
    # the value is exactly what the stored integers give
    assert torch.equal(q.dequantize(stored), w_hat)
    levels = torch.unique(stored["q"]).numel()
    assert levels <= qmax - qmin + 1


def test_symmetric_two_bit_is_ternary_and_asymmetric_uses_four_levels():
    w = weight()
    sym = WeightQuantizer(qcfg(bits=2), 2, w).integers(w)["q"]
    asym = WeightQuantizer(qcfg(bits=2, symmetric=False), 2, w).integers(w)
    assert set(torch.unique(sym).tolist()) == {-1, 0, 1}
    assert set(torch.unique(asym["q"]).tolist()) == {0, 1, 2, 3}
    # the zero point is an integer level that represents 0.0 exactly
    z = asym["zero"].float()
    assert ((z >= 0) & (z <= 3)).all()


def test_asymmetric_zero_point_follows_a_shifted_distribution():
    w = weight().abs() + 0.5  # all positive: lo clamps to 0, zero point 0
    q = WeightQuantizer(qcfg(bits=4, symmetric=False), 4, w)
    assert (q.integers(w)["zero"] == 0).all()
    w = -weight().abs() - 0.5  # all negative: zero point at the top level
    assert (WeightQuantizer(qcfg(bits=4, symmetric=False), 4, w).integers(w)["zero"] == 15).all()


def test_subchannel_layout_pads_the_last_block_and_ignores_the_padding():
    w = weight(rows=3, cols=100)
    layout = Groups(w.shape, "subchannel", 32)
    assert (layout.rows, layout.groups, layout.block, layout.pad) == (3, 4, 32, 28)
    assert torch.equal(layout.merge(layout.split(w)), w)
    q = WeightQuantizer(qcfg(bits=4, granularity="subchannel", block_size=32), 4, w)
    assert q.integers(w)["scale"].shape == (3, 4, 1)
    # a conv weight (out, in, k) groups along in*k
    conv = torch.randn(8, 4, 15)
    assert Groups(conv.shape, "subchannel", 16).groups == 4
    # binary: the mean |w| of the padded block counts real weights only
    qb = WeightQuantizer(qcfg(bits=1, granularity="subchannel", block_size=32), 1, w)
    alpha = qb.integers(w)["scale"].float()[:, -1, 0]
    assert torch.allclose(alpha, w[:, 96:].abs().mean(1), rtol=1e-3)


def test_subchannel_beats_per_channel_at_two_bits():
    torch.manual_seed(1)
    w = torch.randn(64, 256) * torch.linspace(0.1, 3.0, 256)  # input-dependent ranges
    err = {}
    for gran in ("channel", "subchannel"):
        q = WeightQuantizer(qcfg(bits=2, symmetric=False, granularity=gran, block_size=32), 2, w)
        err[gran] = ((q.eval()(w) - w) ** 2).mean()
    assert err["subchannel"] < 0.8 * err["channel"]


def test_clipping_modes_shrink_the_range_and_search_lowers_the_error():
    torch.manual_seed(2)
    w = torch.randn(32, 128)
    w[:, 0] = 12.0  # one outlier per channel
    full = WeightQuantizer(qcfg(bits=2, symmetric=False), 2, w).eval()
    fixed = WeightQuantizer(qcfg(bits=2, symmetric=False, clip="fixed", clip_value=0.5), 2, w)
    pct = WeightQuantizer(qcfg(bits=2, symmetric=False, clip="percentile", clip_value=99.0), 2, w)
    search = WeightQuantizer(qcfg(bits=2, symmetric=False, clip="search"), 2, w).eval()
    scale = {n: q.integers(w)["scale"].float().mean() for n, q in
             [("full", full), ("fixed", fixed), ("pct", pct), ("search", search)]}  # fmt: skip
    assert scale["fixed"] < scale["full"] and scale["pct"] < scale["full"]
    assert (search.clip_coef <= 1.0).all() and (search.clip_coef < 1.0).any()

    def mse(q):
        return ((q(w) - w) ** 2).mean()

    assert mse(search) < mse(full)


def test_straight_through_gradient_passes_inside_the_range_only():
    w = weight(rows=4, cols=50).requires_grad_()
    q = WeightQuantizer(qcfg(bits=4, clip="fixed", clip_value=0.5), 4, w.detach())
    q(w).sum().backward()
    amax = w.detach().abs().amax(1, keepdim=True) * 0.5
    scale = (amax / 7).half().float()
    inside = (w.detach() / scale).round().abs() <= 7
    assert torch.equal(w.grad, inside.float())
    assert 0 < inside.float().mean() < 1  # some are clipped


def test_learnable_scale_and_scale_gradient_reach_their_tensors():
    w = weight(rows=4, cols=50).requires_grad_()
    q = WeightQuantizer(qcfg(bits=4, learnable_scale=True), 4, w.detach())
    (q(w) ** 2).sum().backward()
    assert q.scale.grad is not None and q.scale.grad.abs().sum() > 0
    # range-derived scale with gradient (RAND): the outliers receive the scale's gradient
    w2 = weight(rows=4, cols=50).requires_grad_()
    rand = WeightQuantizer(qcfg(bits=4, scale_grad=True, norm_decay=0.1), 4, w2.detach())
    rand.regularization(w2).backward()
    top = w2.detach().abs().argmax(1)
    assert (w2.grad[torch.arange(4), top] != 0).all()
    assert (w2.grad != 0).sum() == 4  # the decay term touches only the outliers


def test_noise_estimator_trains_with_noise_and_evaluates_with_rounding():
    w = weight()
    q = WeightQuantizer(qcfg(bits=4, estimator="noise"), 4, w)
    torch.manual_seed(0)
    a, b = q.train()(w), q(w)
    assert not torch.equal(a, b)  # noise differs per call
    step = q.integers(w)["scale"].float().amax()
    assert (a - w).abs().max() <= step / 2 + 1e-6
    q.eval()
    assert torch.equal(q(w), q.dequantize(q.integers(w)))


def test_binarization_is_sign_times_mean_magnitude():
    w = weight()
    q = WeightQuantizer(qcfg(bits=1), 1, w).eval()
    alpha = w.abs().mean(1, keepdim=True).half().float()
    assert torch.equal(q(w), torch.where(w >= 0, 1.0, -1.0) * alpha)
    w.requires_grad_()
    q(w).sum().backward()
    assert torch.allclose(w.grad, alpha.expand_as(w))


def test_integer_linear_equals_the_dequantized_product():
    torch.manual_seed(3)
    x, w = torch.randn(5, 7, 100), torch.randn(24, 100)
    for gran in ("channel", "subchannel"):
        q = WeightQuantizer(qcfg(bits=4, granularity=gran, block_size=32), 4, w)
        stored = q.integers(w)
        y = integer_linear(x, stored, q.layout, None, 8)
        x_scale = x.abs().amax() / 127
        x_hat = (x / x_scale).round().clamp(-127, 127) * x_scale
        torch.testing.assert_close(y, x_hat @ q.dequantize(stored).T, rtol=1e-5, atol=1e-5)


def test_apply_through_the_seam_keeps_float_keys_and_quantizes_moe_experts():
    overrides = [*TINY, "model/ffn=moe", "model.encoder.n_expert=4", "model.decoder.n_expert=4"]
    float_model = wenet_eff.build_model(wenet_eff.load_config("mini", overrides))
    cfg = wenet_eff.load_config("mini", [*overrides, "compress=mixed_4_8"])
    model = wenet_eff.build_model(cfg)
    assert model.state_dict().keys() == float_model.state_dict().keys()
    model.load_state_dict(float_model.state_dict())  # a float checkpoint loads strictly
    layers = dict(compress.quant_layers(model))
    expert = layers["encoder.encoders.0.feed_forward.experts.3.w_1"]
    assert expert.weight_quantizer.bits == 4
    assert layers["encoder.encoders.0.self_attn.linear_q"].weight_quantizer.bits == 8
    assert "encoder.encoders.0.feed_forward.gate" not in layers  # the router stays float
    assert {m.role for m in layers.values()} >= {"subsampling.conv", "conv.depthwise", "embedding"}
    x, lens = torch.randn(2, 60, 80), torch.tensor([60, 41])
    text, tlens = torch.randint(1, 10, (2, 4)), torch.tensor([4, 2])
    model.train()(x, lens, text, tlens)["loss"].backward()
    assert expert.weight.grad is not None


def test_config_errors_name_the_key():
    with pytest.raises(ValueError, match="bits_by_role entry 'ffn.w_1=4'"):
        wenet_eff.build_model(
            wenet_eff.load_config(
                "mini", [*TINY, "compress=qat_int8", "compress.quant.bits_by_role=['ffn.w_1=4']"]
            )
        )
    with pytest.raises(ValueError, match="unknown role"):
        wenet_eff.build_model(
            wenet_eff.load_config(
                "mini", [*TINY, "compress=qat_int8", "compress.quant.roles=[attn.qvk]"]
            )
        )
    with pytest.raises(ValueError, match="bits=3"):
        wenet_eff.build_model(wenet_eff.load_config("mini", [*TINY, "compress=qat_int8",
                                                             "compress.quant.bits=3"]))  # fmt: skip
    with pytest.raises(ValueError, match="granularity='row'"):
        WeightQuantizer(qcfg(granularity="row"), 8, weight())
    # a percentile of 1 would clip 99 % of the weights (the default clip_value suits fixed)
    with pytest.raises(ValueError, match=r"clip_value=1.0: with clip=percentile .* 99.9"):
        WeightQuantizer(qcfg(clip="percentile"), 2, weight())
    with pytest.raises(ValueError, match="clip_value=1.5: with clip=fixed"):
        WeightQuantizer(qcfg(clip="fixed", clip_value=1.5), 2, weight())


def test_quantized_streaming_model_decodes_chunk_by_chunk_exactly():
    cfg = wenet_eff.load_config(
        "mini", [*TINY, "compress=qat_int4", "model.encoder.use_dynamic_chunk=true"]
    )
    model = wenet_eff.build_model(cfg).eval()
    x = torch.randn(1, 150, 80)
    with torch.inference_mode():
        full, _ = model.encoder(x, torch.tensor([150]), 4, 2)
        stream, _ = model.encoder.forward_chunk_by_chunk(x, 4, 2)
    assert (full - stream).abs().max() <= 1e-5


def test_activation_quantization_rounds_inputs_and_passes_gradients():
    cfg = wenet_eff.load_config("mini", [*TINY, "compress=qat_int8", "compress.quant.act_bits=4"])
    model = wenet_eff.build_model(cfg)
    layer = dict(compress.quant_layers(model))["encoder.encoders.0.feed_forward.w_1"]
    assert layer.act_bits == 4
    x = torch.randn(2, 5, layer.in_features, requires_grad=True)
    y = layer(x)
    scale = x.detach().abs().amax() / 7
    x_hat = (x.detach() / scale).round().clamp(-7, 7) * scale
    torch.testing.assert_close(y, torch.nn.functional.linear(x_hat, layer.effective_weight(),
                                                             layer.bias))  # fmt: skip
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    # embeddings and convolutions over 2-D inputs keep float activations
    assert dict(compress.quant_layers(model))["decoder.left_decoder.embed.0"].act_bits == 0
