"""MoE dispatch and expert usage, QAT fake quantization and packing, and torch.export +
AOTInductor of the encoder, on CUDA."""

from __future__ import annotations

import copy

import pytest
import torch

import wenet_eff
from tests.gpu.helpers import CUDA, MOE, STREAMING, batch, twins
from tests.tiny import TINY
from wenet_eff.compress.pack import save_packed
from wenet_eff.export.modules import EncoderFull, prepare_for_export
from wenet_eff.model import load_packed
from wenet_eff.nn.attention import MultiHeadedAttention
from wenet_eff.nn.moe import MoEFFNLayer, naive_moe

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("frames", [7, 1000, 16000])
@torch.no_grad()
def test_moe_dispatch_equals_the_per_expert_scan_and_counts_usage(frames):
    torch.manual_seed(0)
    layer = MoEFFNLayer(64, 128, 0.0, torch.nn.SiLU(), 8, 2).to(CUDA).eval()
    torch.nn.init.normal_(layer.gate.weight, std=0.5)
    x = torch.randn(1, frames, 64, device=CUDA)
    torch.testing.assert_close(layer(x), naive_moe(layer, x), atol=1e-5, rtol=1e-5)
    _, top_ids, _ = layer.route(x.reshape(-1, 64))
    counts = torch.bincount(top_ids.flatten(), minlength=8).float() / frames
    assert layer.usage.device.type == "cuda"
    torch.testing.assert_close(layer.usage, counts)
    assert layer.usage.sum().item() == pytest.approx(2.0)


def test_moe_model_reports_usage_on_cuda():
    _, model = twins(*MOE)
    feats, lens, _, _ = batch(CUDA)
    with torch.no_grad():
        model.encoder(feats, lens)
    usage = model.expert_usage()
    assert len(usage) == 4  # 2 encoder blocks x 2 FFNs (macaron)
    for fractions in usage.values():
        assert fractions.device.type == "cuda" and fractions.sum().item() == pytest.approx(2.0)


@pytest.mark.parametrize("scheme", ["qat_int4", "qat_int8", "binary"])
def test_qat_trains_on_cuda_and_its_packed_model_decodes_the_same_on_cpu(tmp_path, scheme):
    torch.manual_seed(0)
    cfg = wenet_eff.load_config("mini", [*TINY, *STREAMING, *MOE, f"compress={scheme}"])
    model = wenet_eff.build_model(cfg).to(CUDA).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(3):  # fake quantization forward and straight-through backward on CUDA
        loss = model(*batch(CUDA))["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        assert torch.isfinite(loss)
    model.eval()
    save_packed(model, cfg, tmp_path / "packed.pt")
    _, packed = load_packed(tmp_path / "packed.pt")
    feats, lens, _, _ = batch()
    with torch.inference_mode():
        expected, _ = model.encoder(feats.to(CUDA), lens.to(CUDA))
        got, _ = packed.encoder(feats, lens)
    torch.testing.assert_close(got, expected.cpu(), atol=1e-4, rtol=1e-4)


def test_encoder_exports_and_compiles_on_cuda(tmp_path):
    """torch.export of the runtime's full-context encoder graph on CUDA (MoE dispatch by
    nonzero, the fused attention kernel as in the .pt2 packages), run as exported and compiled
    by AOTInductor for CUDA: both equal the eager encoder + CTC head."""
    _, model = twins(*MOE)
    module = EncoderFull(prepare_for_export(copy.deepcopy(model))).eval()
    for layer in module.modules():
        if isinstance(layer, MultiHeadedAttention):
            layer.fused_softmax = True
    feats = torch.randn(2, 400, 80, device=CUDA)
    frames = torch.export.Dim.AUTO(min=16)
    ep = torch.export.export(module, (feats,), dynamic_shapes={"feats": {1: frames}}, strict=False)
    longer = torch.randn(2, 517, 80, device=CUDA)
    with torch.inference_mode():
        enc, _ = model.encoder(longer, torch.tensor([517, 517], device=CUDA))
        expected = model.ctc.log_softmax(enc)
        exported, _ = ep.module()(longer)
        path = torch._inductor.aoti_compile_and_package(ep, package_path=str(tmp_path / "e.pt2"))
        compiled, _ = torch._inductor.aoti_load_package(path)(longer)
    torch.testing.assert_close(exported, expected, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(compiled, expected, atol=1e-4, rtol=1e-4)
