"""MoE FFN layers: routing against a per-frame reference, gradients, capacity, auxiliary
losses, usage statistics, parameter counts, configs, streaming and sparse upcycling."""

from __future__ import annotations

import pytest
import torch

import wenet_eff
from tests.tiny import TINY, tiny_model
from wenet_eff.nn.moe import MoEFFNLayer, moe_layers, naive_moe, upcycle_state_dict

MOE = ["model.encoder.mlp_type=moe", "model.decoder.mlp_type=moe"]


def _layer(n_expert=4, k=2, std=1.0, seed=0, **kw) -> MoEFFNLayer:
    torch.manual_seed(seed)
    layer = MoEFFNLayer(8, 16, 0.0, torch.nn.SiLU(), n_expert, k, **kw)
    torch.nn.init.normal_(layer.gate.weight, std=std)  # decisive, varied routing
    return layer


def _per_frame_reference(layer: MoEFFNLayer, x: torch.Tensor) -> torch.Tensor:
    """Every frame through its k best experts, weighted by the softmax of their logits."""
    out = torch.zeros_like(x)
    for i, frame in enumerate(x):
        logits = layer.gate(frame).float()
        top = torch.topk(logits, layer.k)
        weights = torch.softmax(top.values, -1)
        for w, e in zip(weights, top.indices, strict=True):
            out[i] += w * layer.experts[int(e)](frame[None])[0]
    return out


@pytest.mark.parametrize("n_expert,k", [(4, 1), (4, 2), (8, 2), (3, 3)])
def test_routing_equals_per_frame_reference(n_expert, k):
    layer = _layer(n_expert, k)
    x = torch.randn(2, 13, 8)
    expected = _per_frame_reference(layer, x.reshape(-1, 8)).reshape(2, 13, 8)
    torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(naive_moe(layer, x), expected, atol=1e-5, rtol=1e-5)


def test_usage_counts_k_experts_per_frame():
    layer = _layer(4, 2)
    x = torch.randn(3, 10, 8)
    layer(x)
    assert layer.usage.shape == (4,)
    assert float(layer.usage.sum()) == pytest.approx(2.0)
    _, top_ids, _ = layer.route(x.reshape(-1, 8))
    expected = torch.bincount(top_ids.reshape(-1), minlength=4).float() / 30
    torch.testing.assert_close(layer.usage, expected)


def test_gradients_reach_router_and_every_used_expert():
    layer = _layer(4, 2)
    x = torch.randn(2, 20, 8, requires_grad=True)
    layer(x).square().sum().backward()
    assert layer.gate.weight.grad.abs().sum() > 0  # through the softmax routing weights
    used = layer.usage > 0
    for e, expert in enumerate(layer.experts):
        grad = expert.w_1.weight.grad
        # experts without frames still join the graph (zero gradient), as DDP needs
        assert grad is not None
        assert (grad.abs().sum() > 0) == bool(used[e])
    assert x.grad.abs().sum() > 0


def test_capacity_caps_frames_per_expert_and_keeps_top1_first():
    layer = _layer(4, 2, capacity_factor=0.5).train()
    x = torch.randn(1, 40, 8)
    out = layer(x)
    capacity = 10  # ceil(0.5 * 40 * 2 / 4)
    assert float(layer.usage.max()) * 40 <= capacity
    # top-1 assignments come first: every expert that is anyone's top-1 choice is full or
    # holds all of its top-1 frames
    _, top_ids, _ = layer.route(x.reshape(-1, 8))
    top1 = torch.bincount(top_ids[:, 0], minlength=4)
    kept = (layer.usage * 40).round().long()
    assert torch.all(kept >= torch.clamp(top1, max=capacity))
    layer.eval()  # never capped in eval
    layer(x)
    assert float(layer.usage.sum()) == pytest.approx(2.0)
    assert out.shape == x.shape


def test_aux_losses_off_by_default_and_added_when_weighted():
    x = torch.randn(2, 120, 80)
    lens = torch.tensor([120, 90])
    text = torch.tensor([[1, 2, 3], [4, 5, -1]])
    tlens = torch.tensor([3, 2])
    model = tiny_model(*MOE).train()
    assert "loss_moe" not in model(x, lens, text, tlens)
    weighted = tiny_model(
        *MOE, "model.moe.load_balance_weight=0.01", "model.moe.z_loss_weight=0.001"
    )
    out = weighted.train()(x, lens, text, tlens)
    assert out["loss_moe"] > 0
    expected = 0.3 * out["loss_ctc"] + 0.7 * out["loss_att"] + out["loss_moe"]
    torch.testing.assert_close(out["loss"], expected)


def test_load_balance_loss_is_one_when_uniform():
    layer = _layer(4, 1, std=0.0)
    logits = torch.zeros(8, 4)
    counts = torch.tensor([2, 2, 2, 2])
    aux = layer._aux_losses(logits, counts, 8)
    assert float(aux["load_balance"]) == pytest.approx(1.0)
    assert float(aux["z_loss"]) == pytest.approx(float(torch.log(torch.tensor(4.0)) ** 2))


def test_parameter_counts_total_and_active():
    dense = tiny_model()
    moe = tiny_model(*MOE)
    layers = moe_layers(moe)
    # 2 encoder blocks x (macaron + FFN) + 1 + 1 decoder blocks
    assert len(layers) == 6
    expert = sum(p.numel() for p in layers[0][1].experts[0].parameters())
    gates = sum(m.gate.weight.numel() for _, m in layers)
    dn, mn = dense.num_params(), moe.num_params()
    assert dn["total"] == dn["active"]
    assert mn["total"] == dn["total"] + 6 * 7 * expert + gates  # 8 experts replace 1 FFN
    assert mn["active"] == dn["total"] + 6 * 1 * expert + gates  # 2 of 8 run per frame


def test_state_dict_names_follow_wenet():
    keys = tiny_model(*MOE).state_dict().keys()
    assert "encoder.encoders.0.feed_forward.gate.weight" in keys
    assert "encoder.encoders.0.feed_forward_macaron.experts.7.w_1.weight" in keys
    assert "encoder.encoders.1.feed_forward.experts.0.w_2.bias" in keys
    assert "decoder.left_decoder.decoders.0.feed_forward.experts.3.w_1.weight" in keys
    assert not any(k.endswith("gate.bias") for k in keys)


def test_ffn_config_group_selects_moe_anywhere():
    cfg = wenet_eff.load_config("mini", ["model/ffn=moe"])
    assert cfg.model.encoder.mlp_type == cfg.model.decoder.mlp_type == "moe"
    cfg = wenet_eff.load_config("mini", ["model/ffn=moe_encoder"])
    assert (cfg.model.encoder.mlp_type, cfg.model.decoder.mlp_type) == (
        "moe",
        "position_wise_feed_forward",
    )
    cfg = wenet_eff.load_config("paper_moe_1b", ["model/ffn=dense"])
    assert cfg.model.encoder.mlp_type == "position_wise_feed_forward"
    with pytest.raises(ValueError, match="mlp_type"):
        wenet_eff.build_model(wenet_eff.load_config("mini", [*TINY, "model.encoder.mlp_type=moo"]))


def test_capacity_factor_reaches_every_moe_layer_of_encoder_and_decoders():
    model = tiny_model(*MOE, "model.moe.capacity_factor=1.25")
    factors = [layer.capacity_factor for _, layer in moe_layers(model)]
    # 2 encoder blocks x (macaron FFN + FFN), the FFN of the left and of the right decoder block
    assert len(factors) == 6 and set(factors) == {1.25}
    assert {layer.capacity_factor for _, layer in moe_layers(tiny_model(*MOE))} == {0.0}


@pytest.mark.parametrize("left", [-1, 2])
@pytest.mark.parametrize("chunk", [1, 4, 8, 16])
def test_moe_chunk_by_chunk_equals_masked_full_forward(chunk, left):
    model = tiny_model(*MOE, "model.encoder.causal=true", "model.encoder.use_dynamic_chunk=true")
    for _, layer in moe_layers(model):
        torch.nn.init.normal_(layer.gate.weight, std=1.0)
    x = torch.randn(1, 263, 80)
    with torch.inference_mode():
        stream, _ = model.encoder.forward_chunk_by_chunk(x, chunk, left)
        full, _ = model.encoder(x, torch.tensor([263]), chunk, left)
    assert stream.shape == full.shape
    assert (stream - full).abs().max() <= 1e-5


def test_upcycled_model_equals_dense_at_step_zero():
    dense = tiny_model()
    moe = tiny_model(*MOE, "model.encoder.n_expert=4", "model.decoder.n_expert=4")
    moe.load_state_dict(upcycle_state_dict(dense.state_dict(), moe, router_init_std=0.5))
    x = torch.randn(2, 100, 80)
    lens = torch.tensor([100, 70])
    with torch.inference_mode():
        torch.testing.assert_close(
            moe.encoder(x, lens)[0], dense.encoder(x, lens)[0], atol=1e-5, rtol=1e-5
        )
        hyp_dense = dense.decode(["attention_rescoring"], x, lens, beam_size=3)
        hyp_moe = moe.decode(["attention_rescoring"], x, lens, beam_size=3)
    assert [h.tokens for h in hyp_moe["attention_rescoring"]] == [
        h.tokens for h in hyp_dense["attention_rescoring"]
    ]
    # the routers are not all-equal: the experts will specialise once training starts
    gate = moe.encoder.encoders[0].feed_forward.gate.weight
    assert gate.std() > 0


def test_upcycling_refuses_a_different_model():
    dense = tiny_model()
    other = tiny_model(*MOE, "model.encoder.linear_units=64")
    with pytest.raises(ValueError, match="shape"):
        upcycle_state_dict(dense.state_dict(), other)


def test_aux_losses_belong_to_training_forwards_only():
    layer = _layer(4, 2).train()
    x = torch.randn(1, 10, 8)
    layer(x)
    assert set(layer.aux) == {"load_balance", "z_loss"}
    layer.eval()
    layer(x)
    assert layer.aux == {}  # a validation forward does not carry the last step's losses
