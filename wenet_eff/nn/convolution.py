"""The Conformer convolution module: pointwise -> GLU -> depthwise -> norm -> act -> pointwise.

Streaming cache (causal only): `cache (B, C, kernel - 1)`, the last inputs of the depthwise
convolution; an empty cache is shape (0, 0, 0).

`pointwise_gemm` (off; the .pt2 export sets it) computes a plain pointwise Conv1d as one GEMM
over the channels-last input (`F.linear` on its weight viewed (out, in)): the same values, and
in an AOTInductor graph a GEMM where the convolution fell to ATen's `_slow_conv2d` (2-core
EPYC, 1 thread: the conv modules of 12 u2pp-width blocks alone take 0.87x the time at 700
frames, 0.83x at 16; the whole u2pp-width encoder 0.97x at full context and per chunk).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from wenet_eff.nn.linear import pointwise_conv, tag

EMPTY_CNN_CACHE = torch.zeros(0, 0, 0)


class ConvolutionModule(nn.Module):
    """Depthwise convolution block of the Conformer.

    Args:
        channels: model dimension C.
        kernel_size: depthwise kernel (odd when not causal).
        activation: applied after the norm.
        norm: "batch_norm" or "layer_norm".
        causal: left-only padding (streaming-exact), else symmetric.
    """

    def __init__(
        self,
        channels: int,
        kernel_size: int,
        activation: nn.Module,
        norm: str = "batch_norm",
        causal: bool = False,
    ):
        super().__init__()
        if norm not in ("batch_norm", "layer_norm"):
            raise ValueError(
                f"model.encoder.cnn_module_norm='{norm}': use batch_norm or layer_norm"
            )
        if not causal and kernel_size % 2 == 0:
            raise ValueError(f"model.encoder.cnn_module_kernel={kernel_size} must be odd")
        self.pointwise_conv1 = pointwise_conv(channels, 2 * channels)
        self.lorder = kernel_size - 1 if causal else 0
        padding = 0 if causal else (kernel_size - 1) // 2
        self.depthwise_conv = tag(
            nn.Conv1d(channels, channels, kernel_size, padding=padding, groups=channels),
            "conv.depthwise",
        )
        self.use_layer_norm = norm == "layer_norm"
        self.norm = nn.LayerNorm(channels) if self.use_layer_norm else nn.BatchNorm1d(channels)
        self.pointwise_conv2 = pointwise_conv(channels, channels)
        self.activation = activation
        self.pointwise_gemm = False

    def _pointwise(self, conv: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """conv(x) for x (B, C, T); a GEMM when `pointwise_gemm` and `conv` is a kernel-1
        Conv1d computed by Conv1d's own forward from its `weight` (a plain or packed one; not
        a QAT layer, whose forward fake-quantizes, nor the export's kernel-path wrappers, e.g.
        int8 GEMMs, which take the channels-first input as is). isinstance and the inherited
        forward, not `type(conv) is nn.Conv1d`: under torch.export submodules can arrive as
        proxy subclasses of their class (export.modules._is_plain_single_channel_conv)."""
        plain = (
            isinstance(conv, nn.Conv1d)
            and type(conv).forward is nn.Conv1d.forward
            and conv.kernel_size == (1,)
            and conv.groups == 1
        )
        if not (self.pointwise_gemm and plain):
            return conv(x)
        w = conv.weight
        return F.linear(x.transpose(1, 2), w.reshape(w.size(0), -1), conv.bias).transpose(1, 2)

    def forward(
        self,
        x: torch.Tensor,
        mask_pad: torch.Tensor = EMPTY_CNN_CACHE,
        cache: torch.Tensor = EMPTY_CNN_CACHE,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Args: x (B, T, C); mask_pad (B, 1, T) True = valid, or empty; cache (B, C, k-1).

        Returns: (B, T, C), new cache (B, C, k-1) (empty when not causal).
        """
        x = x.transpose(1, 2)
        has_mask = mask_pad.size(2) > 0
        if has_mask:
            x = x.masked_fill(~mask_pad, 0.0)
        new_cache = EMPTY_CNN_CACHE
        if self.lorder > 0:
            x = F.pad(x, (self.lorder, 0)) if cache.size(2) == 0 else torch.cat([cache, x], dim=2)
            new_cache = x[:, :, -self.lorder :]
        x = F.glu(self._pointwise(self.pointwise_conv1, x), dim=1)
        x = self.depthwise_conv(x)
        if self.use_layer_norm:
            x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        else:
            x = self.norm(x)
        x = self._pointwise(self.pointwise_conv2, self.activation(x))
        if has_mask:
            x = x.masked_fill(~mask_pad, 0.0)
        return x.transpose(1, 2), new_cache
