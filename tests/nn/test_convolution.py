"""The Conformer convolution module's export form (`pointwise_gemm`, set by the .pt2 export):
the pointwise convolutions as GEMMs give the convolution's values, streaming cache included,
and a QAT layer keeps its fake quantization (its own forward runs, not a GEMM on its float
weight)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from tests.tiny import tiny_model
from wenet_eff.nn.convolution import ConvolutionModule


@pytest.mark.parametrize("causal, norm", [(True, "layer_norm"), (False, "batch_norm")])
@torch.no_grad()
def test_pointwise_gemm_equals_the_convolution(causal, norm):
    torch.manual_seed(0)
    module = ConvolutionModule(32, 7, nn.SiLU(), norm, causal).eval()
    x = torch.randn(2, 20, 32)
    mask = torch.ones(2, 1, 20, dtype=torch.bool)
    mask[1, :, 15:] = False
    cache = torch.randn(2, 32, 6) if causal else torch.zeros(0, 0, 0)
    expected = module(x, mask, cache)
    module.pointwise_gemm = True
    got = module(x, mask, cache)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@torch.no_grad()
def test_pointwise_gemm_keeps_a_qat_layers_fake_quantization():
    torch.manual_seed(0)
    model = tiny_model("compress=qat_int2")
    module = next(m for m in model.modules() if isinstance(m, ConvolutionModule))
    x = torch.randn(1, 12, module.pointwise_conv2.in_channels)
    expected, _ = module(x)
    module.pointwise_gemm = True
    got, _ = module(x)
    assert torch.equal(got, expected)
    # what the GEMM on the float weight would give instead: far from it at 2 bits
    module.pointwise_conv1.forward = lambda t: nn.Conv1d.forward(module.pointwise_conv1, t)
    module.pointwise_gemm = False
    unquantized, _ = module(x)
    assert not torch.allclose(unquantized, expected, atol=1e-3)
