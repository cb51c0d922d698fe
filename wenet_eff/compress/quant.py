"""Weight fake-quantizers (the layers that apply them are in `compress.layers`).

A `WeightQuantizer` maps a float weight to its quantized value `(q - z) * s` in the forward and
passes gradients back with a straight-through estimator (or adds pseudo-quantization noise in
training). Layouts: the weight is viewed as (rows, groups, block) with rows = output channels
(one row for `tensor`), one group per row for `channel`, and blocks of `block_size` along the
input dimension for `subchannel` (the last block is zero-padded; padding never counts in a
group's statistics).

Levels: symmetric b-bit uses -(2^(b-1)-1)..2^(b-1)-1 with zero point 0 (2-bit symmetric is
ternary); asymmetric uses 0..2^b-1 with an integer zero point per group; 1 bit is binarization,
sign(w) x mean|w| per group. Scales are float16 values (what packing stores), so what is trained
is exactly what is served (`dequantize(integers(w)) == forward(w)` bit for bit in eval).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

MIN_SCALE = 2.0**-14  # smallest normal float16: scales are stored as float16


@dataclass
class QuantConfig:
    """Weight fake-quantization for QAT (`compress.quant`; see the module docstring)."""

    enabled: bool = False
    bits: int = 8  # 8 | 4 | 2 | 1 (1: binarization, sign x mean|w| per group)
    symmetric: bool = True  # symmetric: levels -(2^(b-1)-1)..2^(b-1)-1; asymmetric: 0..2^b-1
    granularity: str = "channel"  # tensor | channel | subchannel (blocks along the input)
    block_size: int = 64  # subchannel block length along the input dimension
    clip: str = "none"  # none | fixed | percentile | search
    clip_value: float = 1.0  # fixed: fraction of the range; percentile: percentile of |w|
    search_interval: int = 100  # clip=search: re-search the per-group clip every N steps
    estimator: str = "ste"  # ste (straight-through) | noise (pseudo-quantization noise)
    learnable_scale: bool = False  # the scale is a trained parameter (init from the weights)
    scale_grad: bool = False  # the range-derived scale passes gradient to the outliers
    norm_decay: float = 0.0  # RAND: weight of the decay term on the groups' max |w|
    native_int: bool = False  # Linear layers compute on integers (act_bits-bit activations)
    act_bits: int = 0  # >0: quantize Linear inputs (dynamic per-tensor); 0 with native_int: 8
    roles: list[str] = field(
        default_factory=lambda: [
            "attn.qkv", "attn.out", "attn.pos", "ffn.w_1", "ffn.w_2", "conv.pointwise",
            "conv.depthwise", "subsampling.conv", "subsampling.out", "embedding", "output",
        ]
    )  # fmt: skip
    # mixed precision: "role:bits" entries, e.g. ["ffn.w_1:4", "ffn.w_2:4", "output:8"]
    bits_by_role: list[str] = field(default_factory=list)


def qrange(bits: int, symmetric: bool) -> tuple[int, int]:
    """Integer levels [qmin, qmax] of a `bits` quantizer."""
    if bits == 1:
        return -1, 1
    if symmetric:
        m = 2 ** (bits - 1) - 1
        return -m, m
    return 0, 2**bits - 1


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """round(x) in value, identity in gradient (the value is exactly round(x))."""
    return torch.round(x) + (x - x.detach())


def fp16_ste(x: torch.Tensor) -> torch.Tensor:
    """x rounded to float16 (exactly) in value, identity in gradient."""
    return x.half().float() + (x - x.detach())


class Groups:
    """The (rows, groups, block) view of a weight for a granularity (see the module docstring)."""

    def __init__(self, shape: torch.Size, granularity: str, block_size: int):
        if granularity not in ("tensor", "channel", "subchannel"):
            raise ValueError(
                f"compress.quant.granularity='{granularity}': use tensor, channel or subchannel"
            )
        self.shape = tuple(shape)
        out, row = shape[0], math.prod(shape[1:])
        if granularity == "tensor":
            self.rows, self.block, self.groups = 1, out * row, 1
        elif granularity == "channel":
            self.rows, self.block, self.groups = out, row, 1
        else:
            if block_size <= 0:
                raise ValueError(f"compress.quant.block_size={block_size} must be > 0")
            self.rows, self.block = out, min(block_size, row)
            self.groups = -(-row // self.block)
        self.row = out * row // self.rows
        self.pad = self.groups * self.block - self.row

    def split(self, w: torch.Tensor) -> torch.Tensor:
        w2 = w.reshape(self.rows, self.row)
        if self.pad:
            w2 = F.pad(w2, (0, self.pad))
        return w2.reshape(self.rows, self.groups, self.block)

    def merge(self, w3: torch.Tensor) -> torch.Tensor:
        w2 = w3.reshape(self.rows, self.groups * self.block)
        if self.pad:
            w2 = w2[:, : self.row]
        return w2.reshape(self.shape)

    def mask(self, device: torch.device) -> torch.Tensor | None:
        """(1, groups, block) True at real (not padding) elements, None without padding."""
        if not self.pad:
            return None
        real = torch.arange(self.groups * self.block, device=device) < self.row
        return real.reshape(1, self.groups, self.block)

    def counts(self, device: torch.device) -> torch.Tensor:
        """(1, groups, 1) real elements per group."""
        mask = self.mask(device)
        if mask is None:
            return torch.full((1, self.groups, 1), float(self.block), device=device)
        return mask.sum(-1, keepdim=True).float()


class WeightQuantizer(nn.Module):
    """Fake-quantizes one weight (see the module docstring and `QuantConfig`).

    State (only when the options need it, so plain QAT keeps the float state-dict keys):
    `scale` (a parameter, learnable_scale) and `clip_coef` (a buffer, clip=search).
    """

    def __init__(self, cfg, bits: int, weight: torch.Tensor):
        super().__init__()
        if bits not in (1, 2, 4, 8):
            raise ValueError(f"compress.quant bits={bits}: choose 8, 4, 2 or 1")
        if cfg.clip not in ("none", "fixed", "percentile", "search"):
            raise ValueError(
                f"compress.quant.clip='{cfg.clip}': use none, fixed, percentile or search"
            )
        if cfg.clip == "percentile" and not 50 < cfg.clip_value <= 100:
            raise ValueError(
                f"compress.quant.clip_value={cfg.clip_value}: with clip=percentile it is the "
                "percentile of |w| kept in range, in (50, 100], e.g. 99.9"
            )
        if cfg.clip == "fixed" and not 0 < cfg.clip_value <= 1:
            raise ValueError(
                f"compress.quant.clip_value={cfg.clip_value}: with clip=fixed it is the fraction "
                "of the range kept, in (0, 1]"
            )
        if cfg.estimator not in ("ste", "noise"):
            raise ValueError(f"compress.quant.estimator='{cfg.estimator}': use ste or noise")
        self.bits = bits
        self.symmetric = cfg.symmetric or bits == 1
        if cfg.learnable_scale and not self.symmetric:
            raise ValueError("compress.quant.learnable_scale needs symmetric=true")
        self.layout = Groups(weight.shape, cfg.granularity, cfg.block_size)
        self.qmin, self.qmax = qrange(bits, self.symmetric)
        self.clip, self.clip_value = cfg.clip, cfg.clip_value
        self.search_interval = cfg.search_interval
        self.estimator = cfg.estimator
        self.scale_grad = cfg.scale_grad
        self.norm_decay = cfg.norm_decay
        self._steps = 0
        self.learnable = cfg.learnable_scale and bits > 1
        if self.clip == "search":
            shape = (self.layout.rows, self.layout.groups, 1)
            self.register_buffer("clip_coef", torch.ones(shape))
            self.search(weight)
        if self.learnable:
            with torch.no_grad():
                init = self._range(self.layout.split(weight.detach()))[1] / self.qmax
            self.scale = nn.Parameter(init.clamp_min(MIN_SCALE))

    def extra_repr(self) -> str:
        kind = "binary" if self.bits == 1 else ("sym" if self.symmetric else "asym")
        layout = self.layout
        return f"bits={self.bits}, {kind}, groups={layout.rows}x{layout.groups}x{layout.block}"

    # ------------------------------------------------------------------ ranges and scales

    def _range(self, w3: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(lo, hi) per group (rows, groups, 1), clipped; symmetric: (-amax, amax)."""
        mask = self.layout.mask(w3.device)
        if self.symmetric:
            mag = w3.abs()
            if self.clip == "percentile":
                hi = self._quantile(mag, mask, self.clip_value / 100)
            else:
                hi = mag.amax(-1, keepdim=True)
            lo = -hi
        else:
            if self.clip == "percentile":
                lo = self._quantile(w3, mask, 1 - self.clip_value / 100)
                hi = self._quantile(w3, mask, self.clip_value / 100)
            else:
                big = torch.finfo(w3.dtype).max
                lo = (w3 if mask is None else w3.masked_fill(~mask, big)).amin(-1, keepdim=True)
                hi = (w3 if mask is None else w3.masked_fill(~mask, -big)).amax(-1, keepdim=True)
            lo, hi = lo.clamp(max=0.0), hi.clamp(min=0.0)  # zero is always representable
        if self.clip == "fixed":
            lo, hi = lo * self.clip_value, hi * self.clip_value
        elif self.clip == "search":
            lo, hi = lo * self.clip_coef, hi * self.clip_coef
        return lo, hi

    @staticmethod
    def _quantile(x: torch.Tensor, mask: torch.Tensor | None, q: float) -> torch.Tensor:
        if mask is not None:  # padding out of the statistics
            x = x.masked_fill(~mask, float("nan"))
            return torch.nanquantile(x, q, dim=-1, keepdim=True)
        return torch.quantile(x, q, dim=-1, keepdim=True)

    def scale_zero(self, w3: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Scale (rows, groups, 1) as float16 values and the integer zero point (asymmetric)."""
        if self.learnable:
            return fp16_ste(self.scale.abs().clamp_min(MIN_SCALE)), None
        lo, hi = self._range(w3)
        if not self.scale_grad:
            lo, hi = lo.detach(), hi.detach()
        if self.symmetric:
            return fp16_ste((hi / self.qmax).clamp_min(MIN_SCALE)), None
        scale = fp16_ste(((hi - lo) / self.qmax).clamp_min(MIN_SCALE))
        zero = torch.round(-lo.detach() / scale.detach()).clamp(0, self.qmax)
        return scale, zero

    @torch.no_grad()
    def search(self, weight: torch.Tensor, grid: int = 20) -> None:
        """clip=search: per group, the clip coefficient in [0.5, 1] with the least squared error."""
        self.clip_coef.fill_(1.0)
        w3 = self.layout.split(weight.detach().float())
        best_err = best_coef = None
        for coef in torch.linspace(0.5, 1.0, grid).tolist():
            self.clip_coef.fill_(coef)
            err = ((self._quantize(w3, noise=False) - w3) ** 2).sum(-1, keepdim=True)
            if best_err is None:
                best_err, best_coef = err, torch.full_like(err, coef)
            else:
                better = err < best_err
                best_err = torch.where(better, err, best_err)
                best_coef = torch.where(better, torch.full_like(err, coef), best_coef)
        self.clip_coef.copy_(best_coef)

    # ------------------------------------------------------------------ forward

    def _binary_scale(self, w3: torch.Tensor) -> torch.Tensor:
        counts = self.layout.counts(w3.device)
        alpha = w3.abs().sum(-1, keepdim=True) / counts  # padding is zero: not in the sum
        if not self.scale_grad:
            alpha = alpha.detach()
        return fp16_ste(alpha.clamp_min(MIN_SCALE))

    def _quantize(self, w3: torch.Tensor, noise: bool) -> torch.Tensor:
        if self.bits == 1:
            sign = torch.where(w3 >= 0, 1.0, -1.0) + (w3 - w3.detach())  # exact sign, STE
            return sign * self._binary_scale(w3)
        scale, zero = self.scale_zero(w3)
        z = 0.0 if zero is None else zero
        if noise:
            lo, hi = (self.qmin - z) * scale, (self.qmax - z) * scale
            noisy = w3 + (torch.rand_like(w3) - 0.5) * scale
            return torch.maximum(torch.minimum(noisy, hi), lo)
        q = torch.clamp(round_ste(w3 / scale) + z, self.qmin, self.qmax)
        return (q - z) * scale

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if self.training and self.clip == "search":
            if self._steps % max(self.search_interval, 1) == 0:
                self.search(weight)
            self._steps += 1
        noise = self.training and self.estimator == "noise"
        return self.layout.merge(self._quantize(self.layout.split(weight), noise))

    def regularization(self, weight: torch.Tensor) -> torch.Tensor:
        """RAND norm decay: norm_decay x mean over groups of (max |w|)^2 (gradient to the
        outliers that set the scale)."""
        w3 = self.layout.split(weight)
        return self.norm_decay * (w3.abs().amax(-1) ** 2).mean()

    # ------------------------------------------------------------------ integers

    @torch.no_grad()
    def integers(self, weight: torch.Tensor) -> dict:
        """The stored form: `q` (rows, groups, block) int8 levels (padding included), `scale`
        (rows, groups, 1) float16, `zero` (rows, groups, 1) uint8 or None."""
        w3 = self.layout.split(weight.detach().float())
        if self.bits == 1:
            q = torch.where(w3 >= 0, 1, -1)
            scale, zero = self._binary_scale(w3), None
        else:
            scale, zero = self.scale_zero(w3)
            z = 0.0 if zero is None else zero
            q = torch.clamp(torch.round(w3 / scale) + z, self.qmin, self.qmax)
        return {
            "q": q.to(torch.int16 if self.qmax > 127 else torch.int8),
            "scale": scale.half(),
            "zero": None if zero is None else zero.to(torch.uint8),
        }

    def dequantize(self, stored: dict) -> torch.Tensor:
        """The float weight of `integers` output: the same value the forward computes in eval."""
        return self.layout.merge(dequantize_groups(stored))


def dequantize_groups(stored: dict) -> torch.Tensor:
    """(q - z) * s over the (rows, groups, block) layout, in float32."""
    q = stored["q"].float()
    z = 0.0 if stored["zero"] is None else stored["zero"].float()
    return (q - z) * stored["scale"].float()


def quantize_activation(x: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Dynamic per-tensor symmetric quantization of an activation: (levels with STE, scale)."""
    qmax = 2 ** (bits - 1) - 1
    scale = (x.detach().abs().amax() / qmax).clamp_min(1e-8)
    return torch.clamp(round_ste(x / scale), -qmax, qmax), scale


def integer_linear(
    x: torch.Tensor, stored: dict, layout: Groups, bias: torch.Tensor | None, act_bits: int
) -> torch.Tensor:
    """y = x W^T + b computed on integers: x quantized per tensor to `act_bits`, W as stored;
    products accumulate exactly (float64 holds every int8 x int8 sum of these sizes), each
    group's sum is scaled by its weight scale, then by the activation scale."""
    lead = x.shape[:-1]
    xq, x_scale = quantize_activation(x.reshape(-1, x.size(-1)).float().detach(), act_bits)
    if layout.pad:
        xq = F.pad(xq, (0, layout.pad))
    xq = xq.reshape(xq.size(0), layout.groups, layout.block).double()
    w = stored["q"].double()
    if stored["zero"] is not None:
        w = w - stored["zero"].double()
    partial = torch.einsum("ngb,ogb->nog", xq, w)  # exact integer sums
    y = (partial * stored["scale"].double().squeeze(-1)).sum(-1) * x_scale.double()
    y = y.float()
    if bias is not None:
        y = y + bias
    return y.reshape(*lead, y.size(-1))
