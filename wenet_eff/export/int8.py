"""int8 kernels for export: integer matrix products with dynamic per-frame activation scales.

`quantize_int8(model)` replaces the seam's weight layers (wenet_eff.nn.linear) by modules that
multiply int8 weights, one scale per output channel, with each input row quantized to int8 by
its own absmax scale, through `torch._int_mm` (int8 x int8 -> int32, a real integer GEMM on
CPU), and rescale:

    y = (q(x) @ W_q) * s_x * s_w + b

The int8 weights come from the layer they replace (`int8_weight`): a packed QAT layer
(export.packed) gives the integer codes and scales QAT learned (levels minus zero points; any
per-channel scheme of 8 bits or fewer: w8a8, w4a8, w2a8, binary), a float layer its absmax
quantization per output channel. In an exported graph that conversion depends on the weights
alone, so AOTInductor folds it when the runtime loads them (export.packed).

Linear layers, the convolution module's pointwise Conv1d and the subsampling Conv2d layers
after the first (as a sum of int8 GEMMs over the kernel taps: the 3x3 stride-2 convolution
is the largest product of a small model's streaming step) are converted; the MoE router, the
first Conv2d (one input channel), the depthwise convolution, the token embeddings and layers
quantized in sub-channel groups (several scales per row) stay in float.

Speed depends on the CPU: `torch._int_mm` is an oneDNN integer GEMM on CPUs with int8 dot
products (AVX-512 VNNI, AVX-VNNI, AMX), measured 1.6-1.9x faster than the fp32 graphs end to
end; without them (AVX2 only) it is a plain loop, about 50x slower than fp32 GEMM. The C++
runtime therefore chooses the kernel path per CPU when it loads a model (runtime/src/
cpu_features.h); `fast_int8_matmul()` tells the same here.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from wenet_eff.nn.linear import weight_layers

# roles converted to int8 (the rest of wenet_eff.nn.linear.ROLES stay float)
INT8_ROLES = frozenset(
    {
        "attn.qkv",
        "attn.out",
        "attn.pos",
        "ffn.w_1",
        "ffn.w_2",
        "conv.pointwise",
        "subsampling.conv",
        "subsampling.out",
        "output",
    }
)


def int8_weight(layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K) int8 codes and (N,) float32 scales of `layer`'s weight (N output channels, K the
    rest): a packed per-channel layer's QAT codes, else symmetric absmax per channel."""
    packed = getattr(layer, "packed_weight", None)
    if packed is not None and packed.int8_ready:
        return packed.int8_codes()
    w = layer.weight
    w = w.reshape(w.size(0), -1).float()
    scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127.0
    q = torch.round(w / scale.unsqueeze(1)).clamp(-127, 127).to(torch.int8)
    return q, scale


def int8_matmul(x: torch.Tensor, w_q: torch.Tensor, w_scale: torch.Tensor) -> torch.Tensor:
    """(M, K) float x int8 (K, N) -> (M, N) float, each row of x quantized with its absmax."""
    s = x.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127.0
    x_q = torch.round(x / s).clamp(-127, 127).to(torch.int8)
    return torch._int_mm(x_q, w_q).to(x.dtype) * (s * w_scale.to(x.dtype))


class Int8Linear(nn.Module):
    """A Linear (or a kernel-1 Conv1d over channels, `channels_first`) on int8 weights
    (`int8_weight` of the wrapped `layer`, which also gives the bias)."""

    def __init__(self, layer: nn.Module, channels_first: bool):
        super().__init__()
        self.layer = layer
        self.channels_first = channels_first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_first:  # (B, C, T) -> (B, T, C)
            x = x.transpose(1, 2)
        codes, w_scale = int8_weight(self.layer)
        shape = x.shape
        y = int8_matmul(x.reshape(-1, shape[-1]), codes.t().contiguous(), w_scale)
        if self.layer.bias is not None:
            y = y + self.layer.bias
        y = y.reshape(*shape[:-1], codes.size(0))
        return y.transpose(1, 2) if self.channels_first else y


class Int8Conv2d(nn.Module):
    """A Conv2d (groups 1, no padding or dilation) on int8 weights (`int8_weight` of `conv`).

    The input is quantized once per position (absmax over channels, channels last); the
    convolution is then a sum over the kernel taps of int8 GEMMs, each between the strided
    slice of positions that tap reads and that tap's (C_in, C_out) weights. No im2col copy of
    the input per tap in float (unfold), which compiles poorly with a dynamic length.
    """

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        if conv.groups != 1 or conv.padding != (0, 0) or conv.dilation != (1, 1):
            raise ValueError("Int8Conv2d supports plain Conv2d layers (groups 1, no padding)")
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.conv
        codes, w_scale = int8_weight(conv)  # (O, C kh kw)
        b, c, h, w = x.shape
        (kh, kw), (sh, sw) = conv.kernel_size, conv.stride
        # per tap (kh * kw, C, O), the layout _int_mm reads
        taps = codes.reshape(-1, c, kh, kw).permute(2, 3, 1, 0).reshape(kh * kw, c, -1)
        taps = taps.contiguous()
        oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
        x = x.permute(0, 2, 3, 1)  # (B, H, W, C)
        absmax = x.abs().amax(dim=3, keepdim=True).clamp(min=1e-12)
        x_q = torch.round(x * (127.0 / absmax)).clamp(-127, 127).to(torch.int8)
        s = absmax / 127.0
        y = None
        for i in range(kh):
            for j in range(kw):
                rows = (
                    slice(None),
                    slice(i, i + sh * (oh - 1) + 1, sh),
                    slice(j, j + sw * (ow - 1) + 1, sw),
                )
                part = torch._int_mm(x_q[rows].reshape(-1, c), taps[i * kw + j]).to(x.dtype)
                part = part * s[rows].reshape(-1, 1)
                y = part if y is None else y + part
        y = y * w_scale
        if conv.bias is not None:
            y = y + conv.bias
        return y.reshape(b, oh, ow, conv.out_channels).permute(0, 3, 1, 2)


# /proc/cpuinfo flags of the int8 dot-product instructions oneDNN's integer GEMM needs
INT8_DOT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def cpu_info() -> dict:
    """CPU model and the vector extensions that decide the GEMM speeds (from /proc/cpuinfo;
    empty where there is none)."""
    info = {"model": "", "avx2": False, "avx512f": False, "int8_dot": []}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    for line in text.splitlines():
        if line.startswith("model name") and not info["model"]:
            info["model"] = line.split(":", 1)[1].strip()
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            info["avx2"] = "avx2" in flags
            info["avx512f"] = "avx512f" in flags
            info["int8_dot"] = [f for f in INT8_DOT_FLAGS if f in flags]
            break
    return info


def fast_int8_matmul() -> bool:
    """True when this CPU has int8 dot-product instructions (see the module docstring)."""
    return bool(cpu_info()["int8_dot"])


def int8_module(layer: nn.Module) -> nn.Module | None:
    """The int8 module replacing `layer`, or None where it stays float."""
    if getattr(layer, "role", "") not in INT8_ROLES:
        return None
    packed = getattr(layer, "packed_weight", None)
    if packed is not None and packed.quantized and not packed.int8_ready:
        return None  # sub-channel groups: several scales per row
    if isinstance(layer, nn.Linear):
        return Int8Linear(layer, channels_first=False)
    if isinstance(layer, nn.Conv1d) and layer.kernel_size == (1,):
        return Int8Linear(layer, channels_first=True)
    if (
        isinstance(layer, nn.Conv2d)
        and layer.groups == 1
        and layer.in_channels >= 8
        and layer.padding == (0, 0)
        and layer.dilation == (1, 1)
    ):
        return Int8Conv2d(layer)
    return None


def quantize_int8(model: nn.Module) -> dict[str, str]:
    """Run the seam's layers with a role in INT8_ROLES on int8 weights, in place (see the
    module docstring). Returns {layer name: "int8" or "fp32"} for every seam layer."""
    paths = {}
    parents = dict(model.named_modules())
    for name, layer in weight_layers(model):
        new = int8_module(layer)
        paths[name] = "fp32" if new is None else "int8"
        if new is not None:
            parent_name, _, child = name.rpartition(".")
            setattr(parents[parent_name] if parent_name else model, child, new)
    return paths
