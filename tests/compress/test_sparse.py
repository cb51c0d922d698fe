"""Sparsity through the seam: exact N:M masks, the SR-STE gradient, the magnitude schedule,
S3-Router (exact keep ratio, frozen weights, gradients to the scores), STEP's switch and
frozen variance, folding, mask files, and composition with QAT and MoE."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

import wenet_eff
from tests.tiny import TINY
from wenet_eff import compress
from wenet_eff.compress.masks import (
    apply_masks,
    folded_state_dict,
    load_masks,
    mask_iou,
    model_masks,
    save_masks,
    sparsity_report,
)  # fmt: skip
from wenet_eff.compress.sparse import MagnitudePruner, ScoreRouter, SparsityConfig, is_nm, nm_mask
from wenet_eff.train.optim import StepAdam


def scfg(**kw):
    return OmegaConf.structured(SparsityConfig(enabled=True, **kw))


def build(*overrides: str):
    return wenet_eff.build_model(wenet_eff.load_config("mini", [*TINY, *overrides]))


def batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    x, lens = torch.randn(2, 60, 80, generator=g), torch.tensor([60, 41])
    text, tlens = torch.randint(1, 10, (2, 4), generator=g), torch.tensor([4, 2])
    return x, lens, text, tlens


@pytest.mark.parametrize("n,m", [(2, 4), (1, 4), (4, 8), (3, 8)])
@pytest.mark.parametrize("shape", [(16, 64), (8, 24, 1)])
def test_nm_mask_keeps_exactly_the_n_largest_of_every_m(n, m, shape):
    w = torch.randn(*shape)
    mask = nm_mask(w, n, m)
    groups = mask.reshape(shape[0], -1, m)
    assert (groups.sum(-1) == n).all()
    mags = w.abs().reshape(shape[0], -1, m)
    kept_min = mags.masked_fill(~groups, float("inf")).amin(-1)
    dropped_max = mags.masked_fill(groups, -1.0).amax(-1)
    assert (kept_min >= dropped_max).all()
    assert is_nm(w * mask, n, m) and not is_nm(w, n, m)


def test_srste_gradient_is_dense_gradient_plus_decay_on_pruned_weights():
    model = build("compress=sparse_2_4", "compress.sparsity.decay=0.01").train()
    layer = model.encoder.encoders[0].feed_forward.w_1
    upstream = torch.randn_like(layer.weight)
    (layer.effective_weight() * upstream).sum().backward()
    mask = nm_mask(layer.weight, 2, 4).float()
    expected = upstream + 0.01 * (1 - mask) * layer.weight.detach()
    torch.testing.assert_close(layer.weight.grad, expected)
    assert torch.equal(layer.effective_weight().detach(), layer.weight.detach() * mask)


def test_nm_needs_the_input_dimension_to_divide_by_m():
    with pytest.raises(ValueError, match="encoder.encoders.0.self_attn.linear_q has 32 inputs"):
        build("compress=sparse_2_4", "compress.sparsity.m=3", "compress.sparsity.n=1")
    with pytest.raises(ValueError, match="method='lottery'"):
        build("compress=sparse_2_4", "compress.sparsity.method=lottery")
    with pytest.raises(ValueError, match="binarization has no zero level"):
        build("compress=int4_sparse_2_4", "compress.quant.bits=1")


def test_magnitude_pruning_follows_the_cubic_schedule_and_never_regrows():
    cfg = scfg(method="magnitude", sparsity=0.8, start_step=10, end_step=40, prune_interval=10)
    w = torch.randn(32, 40)
    pruner = MagnitudePruner(cfg, w)
    assert [round(pruner.scheduled(t), 4) for t in (0, 10, 19, 20, 30, 40, 99)] == [
        0.0, 0.0, 0.0, round(0.8 * (1 - (2 / 3) ** 3), 4), round(0.8 * (1 - (1 / 3) ** 3), 4),
        0.8, 0.8,
    ]  # fmt: skip
    pruner.update(w, 20)
    first = pruner.keep.clone()
    assert int((~first).sum()) == round(pruner.scheduled(20) * w.numel())
    w2 = w + 10.0 * (~first)  # pruned weights grow large: they still stay pruned
    pruner.update(w2, 40)
    assert not (pruner.keep & ~first).any()
    assert int((~pruner.keep).sum()) == round(0.8 * w.numel())
    assert torch.equal(pruner(w), w * pruner.keep)


def test_magnitude_pruning_runs_from_the_trainer_update_hook():
    model = build("compress=sparse_magnitude_50", "compress.sparsity.end_step=2",
                  "compress.sparsity.prune_interval=1")  # fmt: skip
    layer = model.encoder.encoders[0].self_attn.linear_q
    compress.on_update(model, 1)
    assert float(layer.sparsifier.level) == pytest.approx(0.5 * (1 - 0.5**3))
    compress.on_update(model, 2)
    assert (layer.effective_weight() == 0).float().mean() == pytest.approx(0.5, abs=1e-3)


@pytest.mark.parametrize("init", ["kaiming", "magnitude", "rank", "magnitude_scaled"])
def test_router_keeps_exactly_the_ratio_freezes_weights_and_trains_scores(init):
    overrides = ["compress=s3_router", f"compress.sparsity.score_init={init}"]
    model = build(*overrides).train()
    weights = {k: v.clone() for k, v in model.state_dict().items() if ".sparsifier." not in k}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.endswith(".sparsifier.scores") for n in trainable)
    layer = model.encoder.encoders[0].feed_forward.w_2
    router = layer.sparsifier
    assert int(router.mask().sum()) == round(0.9 * layer.weight.numel())
    before = router.mask().clone()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=0.05)
    for step in range(3):
        model(*batch(step))["loss"].backward()
        assert router.scores.grad is not None and router.scores.grad.abs().sum() > 0
        opt.step()
        opt.zero_grad()
    after = {k: v for k, v in model.state_dict().items() if ".sparsifier." not in k}
    assert all(torch.equal(weights[k], after[k]) for k in weights)  # bit-identical weights
    assert not torch.equal(router.mask(), before)  # connections moved
    assert int(router.mask().sum()) == round(0.9 * layer.weight.numel())


def test_router_score_gradient_is_the_weight_times_the_output_gradient():
    w = torch.randn(6, 8)
    router = ScoreRouter(scfg(method="router", keep_ratio=0.5), w)
    upstream = torch.randn_like(w)
    (router(w) * upstream).sum().backward()
    torch.testing.assert_close(router.scores.grad, upstream * w)


def test_router_scores_start_from_the_loaded_float_weights():
    float_model = build()
    model = build("compress=s3_router")
    missing = compress.compression_keys(model)
    assert missing and all(k.endswith(".sparsifier.scores") for k in missing)
    model.load_state_dict(float_model.state_dict(), strict=False)
    compress.refresh(model)
    layer = model.encoder.encoders[0].self_attn.linear_k
    torch.testing.assert_close(layer.sparsifier.scores, layer.weight.abs())
    dropped = layer.weight[~layer.sparsifier.mask()].abs()
    assert dropped.max() <= layer.weight[layer.sparsifier.mask()].abs().min()


def test_step_switches_once_then_keeps_the_variance_frozen():
    torch.manual_seed(0)
    p = torch.nn.Parameter(torch.randn(64))
    opt = StepAdam([p], lr=1e-3, betas=(0.9, 0.9), eps=1e-8, weight_decay=0.0,
                   window=5, threshold=0.05, min_steps=10, max_steps=500)  # fmt: skip
    switched = []
    opt.on_switch = switched.append
    for _ in range(200):
        p.grad = torch.randn(64)
        opt.step()
        if opt.masking:
            break
    assert (
        switched and 10 <= switched[0] < 200 and opt.param_groups[0]["switch_step"] == switched[0]
    )
    v = opt.state[p]["exp_avg_sq"].clone()
    p.grad = torch.randn(64)
    opt.step()  # the first mask-phase update freezes the preconditioner
    precond = opt.state[p]["precond"].clone()
    m_before, x_before = opt.state[p]["exp_avg"].clone(), p.detach().clone()
    p.grad = 100 * torch.randn(64)
    opt.step()
    assert torch.equal(opt.state[p]["exp_avg_sq"], v)  # variance no longer updated
    assert torch.equal(opt.state[p]["precond"], precond)
    m = opt.state[p]["exp_avg"]
    assert not torch.equal(m, m_before)  # the first moment still moves
    n = opt.state[p]["step"]
    torch.testing.assert_close(p.detach(), x_before - 1e-3 / (1 - 0.9**n) * m / precond)
    # the phase survives a state_dict round trip (resume)
    again = StepAdam([p], lr=1e-3, betas=(0.9, 0.9), eps=1e-8, weight_decay=0.0)
    again.load_state_dict(opt.state_dict())
    assert again.masking and again.param_groups[0]["switch_step"] == switched[0]
    assert len(switched) == 1


def test_step_switches_at_max_steps_when_the_variance_never_settles():
    p = torch.nn.Parameter(torch.zeros(4))
    opt = StepAdam([p], lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                   window=50, threshold=0.05, min_steps=0, max_steps=7)  # fmt: skip
    for t in range(1, 8):
        p.grad = torch.full((4,), float(t))
        opt.step()
        assert opt.masking == (t == 7)


def test_masked_model_equals_its_folded_export_and_mask_files_round_trip(tmp_path):
    model = build("compress=sparse_2_4").train()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    for step in range(2):
        model(*batch(step))["loss"].backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    folded = build()  # the same config without sparsity
    folded.load_state_dict(folded_state_dict(model), strict=True)
    x, lens, _, _ = batch(5)
    with torch.inference_mode():
        a, _ = model.encoder(x, lens)
        b, _ = folded.eval().encoder(x, lens)
    assert torch.equal(a, b)
    names = [n for n, _ in compress.sparse_layers(model)]
    report = sparsity_report(folded.state_dict(), names, (2, 4))
    assert report["total"]["nm_ok"] and report["total"]["sparsity"] == pytest.approx(0.5)
    assert not sparsity_report(build().state_dict(), names, (2, 4))["total"]["nm_ok"]
    # mask file: save, load, fold onto the float model = the same folded weights
    masks = model_masks(model)
    save_masks(masks, tmp_path / "m.pt", base="base.pt", meta={"method": "nm"})
    loaded, info = load_masks(tmp_path / "m.pt")
    assert info["base"] == "base.pt" and all(torch.equal(masks[k], loaded[k]) for k in masks)
    plain = build()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if ".sparsifier." not in k})
    apply_masks(plain, loaded)
    assert all(torch.equal(plain.state_dict()[k], v) for k, v in folded.state_dict().items())
    with pytest.raises(ValueError, match="not a mask file"):
        torch.save({"x": 1}, tmp_path / "bad.pt")
        load_masks(tmp_path / "bad.pt")


def test_mask_file_is_small_next_to_the_checkpoint(tmp_path):
    model = wenet_eff.build_model(
        wenet_eff.load_config("mini", ["model.vocab_size=500", "compress=s3_router"])
    )
    size = save_masks(model_masks(model), tmp_path / "m.pt")
    torch.save(folded_state_dict(model), tmp_path / "full.pt")
    assert (tmp_path / "full.pt").stat().st_size / size >= 25


def test_mask_iou_of_kept_and_removed_weights():
    a = {"l": torch.tensor([1, 1, 1, 0, 0, 1, 1, 1], dtype=torch.bool)}
    b = {"l": torch.tensor([1, 1, 1, 1, 1, 0, 0, 1], dtype=torch.bool)}
    result = mask_iou(a, b)["layers"]["l"]
    assert result["kept_iou"] == pytest.approx(4 / 8) and result["removed_iou"] == 0.0
    assert mask_iou(a, a)["total"] == {"kept_iou": 1.0, "removed_iou": 1.0}


@pytest.mark.parametrize("symmetric", [True, False])
def test_int4_on_2_4_keeps_zeros_and_packs_exactly(tmp_path, symmetric):
    from wenet_eff.compress.pack import save_packed
    from wenet_eff.model import load_packed

    cfg = wenet_eff.load_config(
        "mini", [*TINY, "compress=int4_sparse_2_4", f"compress.quant.symmetric={symmetric}"]
    )
    model = wenet_eff.build_model(cfg).eval()
    layer = model.encoder.encoders[1].feed_forward.w_1
    w_hat = layer.effective_weight()
    assert is_nm(w_hat, 2, 4) and torch.equal(
        w_hat == 0, ~nm_mask(layer.weight, 2, 4) | (w_hat == 0)
    )
    report = save_packed(model, cfg, tmp_path / "packed.pt")
    _, packed = load_packed(tmp_path / "packed.pt")
    # N:M storage: 2 of 4 levels at 4 bits + their 2-bit positions = 3 bits per weight
    row = report["roles"]["ffn.w_1 (4-bit, 2:4)"]
    outs = [m.weight.size(0) for m in model.modules() if getattr(m, "role", "") == "ffn.w_1"]
    scales = 2 * sum(outs) + (0 if symmetric else sum((o + 1) // 2 for o in outs))
    assert row["packed_bytes"] == row["params"] * 3 // 8 + scales  # + fp16 scales, zero points
    x, lens, _, _ = batch(3)
    with torch.inference_mode():
        a, _ = model.encoder(x, lens)
        b, _ = packed.encoder(x, lens)
    assert torch.equal(a, b)


def test_sparsity_composes_with_moe_experts_and_streaming():
    model = build("model/ffn=moe", "model.encoder.n_expert=4", "model.decoder.n_expert=4",
                  "compress=sparse_2_4", "model.encoder.use_dynamic_chunk=true")  # fmt: skip
    layers = dict(compress.sparse_layers(model))
    assert "encoder.encoders.0.feed_forward.experts.3.w_1" in layers
    assert "encoder.encoders.0.feed_forward.gate" not in layers
    model.train()(*batch())["loss"].backward()
    assert layers["encoder.encoders.0.feed_forward.experts.3.w_1"].weight.grad is not None
    model.eval()
    x = torch.randn(1, 150, 80)
    with torch.inference_mode():
        full, _ = model.encoder(x, torch.tensor([150]), 4, 2)
        stream, _ = model.encoder.forward_chunk_by_chunk(x, 4, 2)
    assert (full - stream).abs().max() <= 1e-5


def test_masks_command_line_save_apply_fold_compare(tmp_path, capsys):
    from omegaconf import OmegaConf as OC

    from wenet_eff.bin import masks as masks_cli

    base_cfg = wenet_eff.load_config("mini", TINY)
    base = wenet_eff.build_model(base_cfg)
    torch.save(base.state_dict(), tmp_path / "base.pt")
    OC.save(base_cfg, tmp_path / "base.yaml")
    paths = []
    for seed, init in ((0, "magnitude"), (1, "kaiming")):
        cfg = wenet_eff.load_config("mini", [*TINY, "compress=s3_router",
                                             f"compress.sparsity.score_init={init}"])  # fmt: skip
        torch.manual_seed(seed)
        model = wenet_eff.build_model(cfg)
        model.load_state_dict(base.state_dict(), strict=False)
        compress.refresh(model)
        torch.save(model.state_dict(), tmp_path / f"router{seed}.pt")
        OC.save(cfg, tmp_path / f"router{seed}.yaml")
        out = tmp_path / f"masks{seed}.pt"
        info = masks_cli.main(["save", "--config", str(tmp_path / f"router{seed}.yaml"),
                               "--checkpoint", str(tmp_path / f"router{seed}.pt"),
                               "--base", "base.pt", "--out", str(out)])  # fmt: skip
        assert info["kept"] == pytest.approx(0.9, abs=1e-3) and info["ratio"] > 25
        paths.append(out)
    # base + mask file = the router model's forward
    report = masks_cli.main(["apply", "--config", str(tmp_path / "base.yaml"), "--base",
                             str(tmp_path / "base.pt"), "--masks", str(paths[0]),
                             "--out", str(tmp_path / "folded.pt")])  # fmt: skip
    assert report["total"]["sparsity"] == pytest.approx(0.1, abs=1e-3)
    # magnitude-initialised scores keep the largest weights: the folded weights say so
    folded = torch.load(tmp_path / "folded.pt")
    w = base.state_dict()["encoder.encoders.0.feed_forward.w_1.weight"]
    kept = folded["encoder.encoders.0.feed_forward.w_1.weight"] != 0
    assert w[~kept].abs().max() <= w[kept].abs().min()
    result = masks_cli.main(["compare", str(paths[0]), str(paths[0])])
    assert result["total"] == {"kept_iou": 1.0, "removed_iou": 1.0}
    png = tmp_path / "iou.png"
    result = masks_cli.main(["compare", str(paths[0]), str(paths[1]), "--plot", str(png)])
    assert png.stat().st_size > 0 and result["removed_fraction"][0] == pytest.approx(0.1, abs=1e-3)
    assert result["total"]["removed_iou"] < 0.2  # magnitude vs random removal: little overlap
    assert "all layers" in capsys.readouterr().out
    # fold of a sparse run writes a float checkpoint + its config (sparsity off)
    out = str(tmp_path / "exp" / "f.pt")
    masks_cli.main(["fold", "--config", str(tmp_path / "router0.yaml"), "--checkpoint",
                    str(tmp_path / "router0.pt"), "--out", out])  # fmt: skip
    cfg = wenet_eff.load_config(str(tmp_path / "exp" / "f.yaml"))
    assert not cfg.compress.sparsity.enabled
    wenet_eff.build_model(cfg).load_state_dict(torch.load(tmp_path / "exp" / "f.pt"), strict=True)
    with pytest.raises(SystemExit, match="no sparsity configured"):
        masks_cli.main(["save", "--config", str(tmp_path / "base.yaml"), "--checkpoint",
                        str(tmp_path / "base.pt"), "--out", str(tmp_path / "x.pt")])  # fmt: skip


def test_eval_mask_follows_weight_changes():
    model = build("compress=sparse_2_4").eval()
    layer = model.encoder.encoders[0].feed_forward.w_1
    first = layer.effective_weight()
    with torch.no_grad():
        layer.weight.mul_(-1).add_(torch.randn_like(layer.weight))  # a new weight, in place
    assert torch.equal(layer.effective_weight(), layer.weight * nm_mask(layer.weight, 2, 4))
    assert not torch.equal(layer.effective_weight(), first)
