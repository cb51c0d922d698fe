"""int8 weights for export: integer matrix products with dynamic per-frame activation scales.

`quantize_int8(model)` replaces the seam's weight layers (wenet_eff.nn.linear) by modules that
store int8 weights with one scale per output channel (symmetric, absmax) and, at run time,
quantize each input row to int8 with its own absmax scale, multiply with `torch._int_mm`
(int8 x int8 -> int32, a real integer GEMM on CPU) and rescale:

    y = (q(x) @ W_q) * s_x * s_w + b

Linear layers, the convolution module's pointwise Conv1d and the subsampling Conv2d layers
after the first (as a sum of int8 GEMMs over the kernel taps: the 3x3 stride-2 convolution
is the largest product of a small model's streaming step) are converted; the MoE router, the
first Conv2d (one input channel), the depthwise convolution and the token embeddings stay in
float (small, and routing / per-channel filters are precision-critical).
A QAT model exports its effective (fake-quantized) weights: with 8-bit absmax per-channel
training the integers are the trained ones.

Speed depends on the CPU: `torch._int_mm` is an oneDNN integer GEMM on CPUs with int8 dot
products (AVX-512 VNNI, AVX-VNNI, AMX), measured 1.6-1.9x faster than the fp32 graphs end to
end; without them (AVX2 only) it is a plain loop, about 50x slower than fp32 GEMM.
`fast_int8_matmul()` tells which; the recipes skip int8 runtime models where it is False.
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


def _quantize_weight(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, K) float -> int8 (K, N) (the layout `_int_mm` reads) and (N,) scales."""
    scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127.0
    q = torch.round(w / scale.unsqueeze(1)).clamp(-127, 127).to(torch.int8)
    return q.t().contiguous(), scale.float()


def int8_matmul(x: torch.Tensor, w_q: torch.Tensor, w_scale: torch.Tensor) -> torch.Tensor:
    """(M, K) float x int8 (K, N) -> (M, N) float, each row of x quantized with its absmax."""
    s = x.abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / 127.0
    x_q = torch.round(x / s).clamp(-127, 127).to(torch.int8)
    return torch._int_mm(x_q, w_q).to(x.dtype) * (s * w_scale.to(x.dtype))


class Int8Linear(nn.Module):
    """A Linear (or a kernel-1 Conv1d over channels, `channels_first`) with int8 weights."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, channels_first: bool):
        super().__init__()
        w_q, w_scale = _quantize_weight(weight.detach().reshape(weight.size(0), -1).float())
        self.register_buffer("w_q", w_q)
        self.register_buffer("w_scale", w_scale)
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())
        self.channels_first = channels_first
        self.out_features = w_q.size(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_first:  # (B, C, T) -> (B, T, C)
            x = x.transpose(1, 2)
        shape = x.shape
        y = int8_matmul(x.reshape(-1, shape[-1]), self.w_q, self.w_scale)
        if self.bias is not None:
            y = y + self.bias
        y = y.reshape(*shape[:-1], self.out_features)
        return y.transpose(1, 2) if self.channels_first else y


class Int8Conv2d(nn.Module):
    """A Conv2d (groups 1, no padding or dilation) with int8 weights.

    The input is quantized once per position (absmax over channels, channels last); the
    convolution is then a sum over the kernel taps of int8 GEMMs, each between the strided
    slice of positions that tap reads and that tap's (C_in, C_out) weights. No im2col copy of
    the input per tap in float (unfold), which compiles poorly with a dynamic length.
    """

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        if conv.groups != 1 or conv.padding != (0, 0) or conv.dilation != (1, 1):
            raise ValueError("Int8Conv2d supports plain Conv2d layers (groups 1, no padding)")
        w = conv.weight.detach().float()  # (O, C, kh, kw)
        scale = w.abs().amax(dim=(1, 2, 3)).clamp(min=1e-12) / 127.0
        q = torch.round(w / scale.view(-1, 1, 1, 1)).clamp(-127, 127).to(torch.int8)
        # per tap (kh * kw, C, O), the layout _int_mm reads
        self.register_buffer(
            "w_q", q.permute(2, 3, 1, 0).reshape(-1, w.size(1), w.size(0)).contiguous()
        )
        self.register_buffer("w_scale", scale)
        bias = conv.bias
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())
        self.kernel_size = conv.kernel_size
        self.stride = conv.stride
        self.out_channels = conv.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
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
                part = torch._int_mm(x_q[rows].reshape(-1, c), self.w_q[i * kw + j]).to(x.dtype)
                part = part * s[rows].reshape(-1, 1)
                y = part if y is None else y + part
        y = y * self.w_scale
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(b, oh, ow, self.out_channels).permute(0, 3, 1, 2)


def _effective_weight(layer: nn.Module) -> torch.Tensor:
    fn = getattr(layer, "effective_weight", None)
    return fn() if fn is not None else layer.weight


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


def quantize_int8(model: nn.Module) -> dict[str, int]:
    """Convert the seam's layers with a role in INT8_ROLES to int8 in place.

    Returns: {"int8": converted layers, "float": tagged layers kept in float}.
    """
    counts = {"int8": 0, "float": 0}
    parents = dict(model.named_modules())
    with torch.no_grad():
        for name, layer in weight_layers(model):
            role = getattr(layer, "role", "")
            new: nn.Module | None = None
            if role in INT8_ROLES:
                weight = _effective_weight(layer)
                if isinstance(layer, nn.Linear):
                    new = Int8Linear(weight, layer.bias, channels_first=False)
                elif isinstance(layer, nn.Conv1d) and layer.kernel_size == (1,):
                    new = Int8Linear(weight, layer.bias, channels_first=True)
                elif isinstance(layer, nn.Conv2d) and layer.groups == 1 and layer.in_channels >= 8:
                    plain = nn.Conv2d(
                        layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride
                    )
                    plain.weight.copy_(weight)
                    plain.bias = layer.bias
                    new = Int8Conv2d(plain)
            if new is None:
                counts["float"] += 1
                continue
            parent_name, _, child = name.rpartition(".")
            setattr(parents[parent_name] if parent_name else model, child, new)
            counts["int8"] += 1
    return counts
