"""Weight sparsity through the seam: N:M masks (SR-STE), gradual magnitude pruning, and
S3-Router masks learned over frozen weights.

A sparsifier is the first transform of a compressed layer (`compress.layers`): it maps the
float weight to `weight * mask` in the forward; `mask(weight)` is the boolean mask it applies.

- `NMSparsifier` (method `nm`): along the input dimension, of every M consecutive weights of an
  output row the N largest in magnitude are kept. The mask is recomputed from the weights at
  every forward, so it moves as training moves the weights. Gradient: SR-STE,
  grad W = grad W~ + decay * (1 - mask) * W (decay 0: plain straight-through). `active=False`
  passes the weight through unmasked (STEP's precondition phase, `train.optim.StepAdam`).
- `MagnitudePruner` (method `magnitude`): unstructured, per layer. `update(step)` raises the
  fraction of zeros along the cubic schedule s_t = s (1 - (1 - (t - t0) / (t1 - t0))^3) every
  `prune_interval` updates; pruned weights get no gradient and never come back.
- `ScoreRouter` (method `router`, S3-Router): one trained score per weight; the mask keeps the
  `keep_ratio` fraction of weights with the highest scores (exactly round(keep_ratio * numel));
  the weight itself is frozen. Gradient to the scores is straight-through: d loss / d score =
  d loss / d (w * mask) * w.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn

from wenet_eff.compress.quant import Groups

SCORE_INITS = ("kaiming", "magnitude", "rank", "magnitude_scaled")


@dataclass
class SparsityConfig:
    """Weight sparsity through the same seam (`compress.sparsity`; see the module docstring).

    Methods: `nm` (N:M masks by magnitude along the input dimension, recomputed every forward;
    SR-STE gradient with `decay`), `magnitude` (unstructured, by magnitude per layer, pruned
    gradually from `start_step` to `end_step` to `sparsity`), `router` (S3-Router: a learned
    binary mask over frozen weights keeping the top `keep_ratio` of trained scores).
    """

    enabled: bool = False
    method: str = "nm"  # nm | magnitude | router
    n: int = 2  # nm: keep N of every M consecutive input weights
    m: int = 4
    decay: float = 2.0e-4  # nm: SR-STE lambda, grad W += decay * (1 - mask) * W (0: plain STE)
    sparsity: float = 0.5  # magnitude: the final fraction of zeros per layer
    start_step: int = 0  # magnitude: first pruning update
    end_step: int = 100  # magnitude: the update where `sparsity` is reached (cubic schedule)
    prune_interval: int = 10  # magnitude: re-prune every N updates in [start_step, end_step]
    keep_ratio: float = 0.9  # router: fraction of weights kept per layer
    score_init: str = "magnitude"  # router: kaiming | magnitude | rank | magnitude_scaled
    score_scale: float = 1.0  # router: magnitude_scaled multiplies |w| by this
    train_other: bool = False  # router: also train the tensors outside the masked layers
    roles: list[str] = field(
        default_factory=lambda: ["attn.qkv", "attn.out", "ffn.w_1", "ffn.w_2", "conv.pointwise"]
    )


def nm_mask(weight: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Boolean mask keeping the N largest |w| of every M consecutive inputs of each row.

    The row is the flattened input side (a Conv1d (out, in, k) row is in*k long).
    """
    layout = Groups(weight.shape, "subchannel", m)
    mag = layout.split(weight.detach().abs())
    pad = layout.mask(weight.device)
    if pad is not None:
        mag = mag.masked_fill(~pad, -1.0)  # padding is never kept
    keep = torch.zeros_like(mag, dtype=torch.bool)
    keep.scatter_(-1, mag.topk(n, dim=-1).indices, True)
    return layout.merge(keep)


def is_nm(weight: torch.Tensor, n: int, m: int) -> bool:
    """Whether every group of M consecutive inputs of every row has at most N nonzeros."""
    layout = Groups(weight.shape, "subchannel", m)
    return bool(((layout.split(weight.detach()) != 0).sum(-1) <= n).all())


class _SRSTE(torch.autograd.Function):
    """w * mask forward; backward grad + decay * (1 - mask) * w to every weight."""

    @staticmethod
    def forward(ctx, weight, mask, decay):
        ctx.save_for_backward(weight, mask)
        ctx.decay = decay
        return weight * mask

    @staticmethod
    def backward(ctx, grad):
        weight, mask = ctx.saved_tensors
        if ctx.decay:
            grad = grad + ctx.decay * (1.0 - mask) * weight
        return grad, None, None


class _TopKSTE(torch.autograd.Function):
    """Scores -> float mask of the top `k`; gradient passes to the scores unchanged."""

    @staticmethod
    def forward(ctx, scores, k):
        mask = torch.zeros(scores.numel(), dtype=scores.dtype, device=scores.device)
        mask[scores.detach().reshape(-1).topk(k, sorted=False).indices] = 1.0
        return mask.reshape(scores.shape)

    @staticmethod
    def backward(ctx, grad):
        return grad, None


class NMSparsifier(nn.Module):
    """N:M masks by magnitude with the SR-STE gradient (see the module docstring)."""

    def __init__(self, n: int, m: int, decay: float, weight: torch.Tensor, name: str = ""):
        super().__init__()
        if not 0 < n < m:
            raise ValueError(f"compress.sparsity: N:M needs 0 < n < m, got {n}:{m}")
        row = math.prod(weight.shape[1:])
        if row % m:
            raise ValueError(
                f"compress.sparsity: {name or 'a layer'} has {row} inputs per row, not a "
                f"multiple of m={m} (leave its role out of compress.sparsity.roles)"
            )
        self.n, self.m, self.decay = n, m, decay
        self.active = True
        self._cached: tuple | None = None  # eval: (weight identity and version, mask)

    def extra_repr(self) -> str:
        return f"{self.n}:{self.m}, decay={self.decay}, active={self.active}"

    def mask(self, weight: torch.Tensor) -> torch.Tensor:
        if not self.active:
            return torch.ones_like(weight, dtype=torch.bool)
        return nm_mask(weight, self.n, self.m)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        if not self.active:
            return weight
        if self.training:
            mask = nm_mask(weight, self.n, self.m).to(weight.dtype)
            return _SRSTE.apply(weight, mask, self.decay) if weight.requires_grad else weight * mask
        # eval (decoding step after step): the mask is recomputed only when the weight changed
        key = (weight.data_ptr(), weight._version)
        if self._cached is None or self._cached[0] != key:
            self._cached = (key, nm_mask(weight, self.n, self.m).to(weight.dtype))
        return weight * self._cached[1]


class MagnitudePruner(nn.Module):
    """Unstructured magnitude pruning on a cubic schedule (see the module docstring).

    State: `keep` (bool buffer, the mask) and `level` (the fraction of zeros it holds), both in
    checkpoints, so a resumed run prunes on from where it stopped.
    """

    def __init__(self, cfg, weight: torch.Tensor):
        super().__init__()
        if not 0.0 <= cfg.sparsity < 1.0:
            raise ValueError(f"compress.sparsity.sparsity={cfg.sparsity} must be in [0, 1)")
        if cfg.end_step < cfg.start_step or cfg.prune_interval < 1:
            raise ValueError(
                "compress.sparsity: need end_step >= start_step and prune_interval >= 1 "
                f"(got {cfg.start_step}, {cfg.end_step}, {cfg.prune_interval})"
            )
        self.target, self.interval = cfg.sparsity, cfg.prune_interval
        self.start, self.end = cfg.start_step, cfg.end_step
        self.register_buffer("keep", torch.ones_like(weight, dtype=torch.bool))
        self.register_buffer("level", torch.zeros(()))

    def extra_repr(self) -> str:
        return f"sparsity={float(self.level):.3f} -> {self.target}, steps {self.start}..{self.end}"

    def scheduled(self, step: int) -> float:
        """The fraction of zeros due after `step` updates (held between pruning updates)."""
        if step < self.start:
            return 0.0
        if step >= self.end:
            return self.target
        t = self.start + (step - self.start) // self.interval * self.interval
        frac = (t - self.start) / (self.end - self.start)
        return self.target * (1.0 - (1.0 - frac) ** 3)

    @torch.no_grad()
    def update(self, weight: torch.Tensor, step: int) -> None:
        level = self.scheduled(step)
        if level <= float(self.level):
            return
        drop = round(level * weight.numel())
        mag = (weight.detach() * self.keep).abs().reshape(-1)  # pruned weights stay pruned
        keep = torch.zeros_like(mag, dtype=torch.bool)
        keep[mag.topk(weight.numel() - drop, sorted=False).indices] = True
        self.keep.copy_(keep.reshape(weight.shape))
        self.level.fill_(level)

    def mask(self, weight: torch.Tensor) -> torch.Tensor:
        return self.keep.clone()

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.keep


class ScoreRouter(nn.Module):
    """S3-Router: a learned top-`keep_ratio` mask over a frozen weight (module docstring)."""

    def __init__(self, cfg, weight: torch.Tensor):
        super().__init__()
        if not 0.0 < cfg.keep_ratio <= 1.0:
            raise ValueError(f"compress.sparsity.keep_ratio={cfg.keep_ratio} must be in (0, 1]")
        if cfg.score_init not in SCORE_INITS:
            raise ValueError(
                f"compress.sparsity.score_init='{cfg.score_init}': use {', '.join(SCORE_INITS)}"
            )
        self.keep_ratio = cfg.keep_ratio
        self.k = max(1, round(cfg.keep_ratio * weight.numel()))
        self.score_init, self.score_scale = cfg.score_init, cfg.score_scale
        self.scores = nn.Parameter(self.initial_scores(weight))

    def initial_scores(self, weight: torch.Tensor) -> torch.Tensor:
        return init_scores(weight.detach(), self.score_init, self.score_scale)

    def extra_repr(self) -> str:
        return f"keep_ratio={self.keep_ratio}, k={self.k}"

    def mask(self, weight: torch.Tensor | None = None) -> torch.Tensor:
        return _TopKSTE.apply(self.scores.detach(), self.k).bool()

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * _TopKSTE.apply(self.scores, self.k)


def init_scores(weight: torch.Tensor, how: str, scale: float = 1.0) -> torch.Tensor:
    """Initial router scores: kaiming-uniform noise, |w|, the rank of |w| in [0, 1), or
    scale * |w|."""
    weight = weight.float()
    if how == "kaiming":
        scores = torch.empty_like(weight)
        nn.init.kaiming_uniform_(scores, a=math.sqrt(5))
        return scores
    if how == "rank":
        flat = weight.abs().reshape(-1)
        ranks = torch.empty_like(flat)
        ranks[flat.argsort()] = torch.arange(flat.numel(), dtype=flat.dtype, device=flat.device)
        return (ranks / flat.numel()).reshape(weight.shape)
    mag = weight.abs().clone()
    return mag * scale if how == "magnitude_scaled" else mag


SPARSIFIERS = ("nm", "magnitude", "router")


def build_sparsifier(cfg, weight: torch.Tensor, name: str) -> nn.Module:
    """The sparsifier of `cfg.method` for one layer's weight."""
    if cfg.method == "nm":
        return NMSparsifier(cfg.n, cfg.m, cfg.decay, weight, name)
    if cfg.method == "magnitude":
        return MagnitudePruner(cfg, weight)
    if cfg.method == "router":
        return ScoreRouter(cfg, weight)
    raise ValueError(f"compress.sparsity.method='{cfg.method}': use {', '.join(SPARSIFIERS)}")
