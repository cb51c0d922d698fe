"""Training on CUDA: fp32, bf16 autocast and fp16 autocast with a gradient scaler, dense and
MoE; every module makes its tensors on its input's device."""

from __future__ import annotations

import pytest
import torch

from tests.gpu.helpers import CUDA, MOE, CpuResults, batch, twins

pytestmark = pytest.mark.gpu
# relative distance of the eval loss to the CPU's fp32 loss (the tolerances of tests/nn/
# test_half_precision.py)
LOSS_RTOL = {"fp32": 1e-5, "bf16": 0.03, "fp16": 0.01}


@pytest.mark.parametrize("ffn", ["dense", "moe"])
@pytest.mark.parametrize("dtype", ["fp32", "bf16", "fp16"])
def test_training_steps_fit_one_batch(dtype, ffn):
    cpu, model = twins(*(MOE if ffn == "moe" else ()))
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(dtype)
    autocast = torch.autocast("cuda", dtype=amp or torch.float32, enabled=amp is not None)
    with torch.no_grad(), autocast:  # eval: no dropout, whose masks differ between devices
        first = model(*batch(CUDA))["loss"].item()
        ref = cpu(*batch())["loss"].item()
    assert abs(first - ref) <= LOSS_RTOL[dtype] * ref, (first, ref)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == "fp16")
    losses = []
    for _ in range(30):
        with autocast:
            loss = model(*batch(CUDA))["loss"]
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses))), losses
    assert sum(losses[-5:]) / 5 < 0.7 * losses[0], losses


@pytest.mark.parametrize("ffn", ["dense", "moe"])
def test_no_module_makes_cpu_tensors_on_cuda(ffn):
    _, model = twins(*(MOE if ffn == "moe" else ()))
    feats, lens, text, text_lens = batch(CUDA)
    recorder = CpuResults()
    with recorder:
        model.train()(feats, lens, text, text_lens)
        model.eval()
        with torch.no_grad():
            model.encoder(feats, lens)
            model.encoder(feats, lens, 4, 2)
            model.encoder.forward_chunk_by_chunk(feats[:1], 4, 2)
            model.moe_aux_loss()
    assert not recorder.ops, f"operations with CPU results: {sorted(set(recorder.ops))}"
