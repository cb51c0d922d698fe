"""The one factory for weight matrices: the seam that `wenet_eff.compress` hooks into.

Every weight matrix that compression may touch (attention projections, FFN / expert
`w_1`/`w_2`, convolution pointwise layers, decoder output) is created here and tagged with a
`role`, so quantization or sparsity can be applied by role without renaming state-dict keys.
"""

from __future__ import annotations

import torch.nn as nn

ROLES = (
    "attn.qkv",  # attention query / key / value projections
    "attn.out",  # attention output projection
    "attn.pos",  # relative-position projection
    "ffn.w_1",
    "ffn.w_2",
    "moe.gate",  # MoE router (kept in float by default: tiny and routing-critical)
    "conv.pointwise",
    "conv.depthwise",  # the convolution module's depthwise Conv1d
    "subsampling.conv",  # the Conv2d layers of the subsampling front end
    "subsampling.out",
    "embedding",  # the decoders' token embedding (nn.Embedding)
    "output",  # CTC head and decoder output layer
)


def tag(module: nn.Module, role: str) -> nn.Module:
    """Tag a weight-bearing module that is not a Linear (Conv1d/Conv2d/Embedding) with `role`."""
    if role not in ROLES:
        raise ValueError(f"unknown role '{role}' (known: {', '.join(ROLES)})")
    module.role = role
    return module


def linear(in_features: int, out_features: int, bias: bool = True, role: str = "") -> nn.Linear:
    """A `nn.Linear` tagged with its `role` (one of ROLES)."""
    if role and role not in ROLES:
        raise ValueError(f"unknown linear role '{role}' (known: {', '.join(ROLES)})")
    layer = nn.Linear(in_features, out_features, bias=bias)
    layer.role = role
    return layer


def pointwise_conv(in_channels: int, out_channels: int, bias: bool = True) -> nn.Conv1d:
    """A kernel-size-1 `nn.Conv1d` (a linear map over channels) tagged `conv.pointwise`.

    Kept as Conv1d, not Linear, so WeNet checkpoints (weights shaped (out, in, 1)) load as-is.
    """
    return tag(nn.Conv1d(in_channels, out_channels, kernel_size=1, bias=bias), "conv.pointwise")


def weight_layers(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """All (qualified name, layer) pairs built by this factory, in module order."""
    return [(name, m) for name, m in module.named_modules() if getattr(m, "role", "")]
