"""Optimizers (`optim.name`) and learning-rate schedules (`optim.scheduler`).

Every schedule is a `LambdaLR` whose factor multiplies `optim.lr`. The factor is a function
of n, the 1-based index of the optimizer update about to happen, and is stepped once per
*successful* update (a step skipped for a non-finite loss does not advance it).

- warmuplr: WeNet's WarmupLR, lr * warmup^0.5 * min(n^-0.5, n * warmup^-1.5): linear warm-up
  to `lr` at n = warmup, then inverse square-root decay.
- noam: the Transformer paper's schedule, lr * d_model^-0.5 * min(n^-0.5, n * warmup^-1.5),
  where `lr` is the multiplier ("factor" in ESPnet) and d_model the encoder width.
- cosine: linear warm-up to `lr`, then half a cosine down to `min_lr` at `optim.total_steps`
  (or `train.max_steps` when that is 0); `min_lr` is held afterwards.
- constant: linear warm-up to `lr`, then constant.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from omegaconf import DictConfig
from torch.optim.lr_scheduler import LambdaLR

from wenet_eff.config import OptimConfig

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
SCHEDULERS = ("warmuplr", "noam", "cosine", "constant")


def build_optimizer(
    params: Iterable[torch.nn.Parameter], cfg: OptimConfig | DictConfig
) -> torch.optim.Optimizer:
    """Adam or AdamW over `params` with the `optim` config's lr, betas, eps and weight decay."""
    if cfg.name not in OPTIMIZERS:
        raise ValueError(f"optim.name: unknown optimizer '{cfg.name}' (choose from adam, adamw)")
    if len(cfg.betas) != 2:
        raise ValueError(f"optim.betas: expected two values, got {list(cfg.betas)}")
    return OPTIMIZERS[cfg.name](
        params,
        lr=cfg.lr,
        betas=(float(cfg.betas[0]), float(cfg.betas[1])),
        eps=cfg.eps,
        weight_decay=cfg.weight_decay,
    )


def lr_factor(
    cfg: OptimConfig | DictConfig, max_steps: int, model_dim: int
) -> Callable[[int], float]:
    """The schedule as a function of the 0-based update count (what `LambdaLR` passes).

    Args:
        cfg: the `optim` config node.
        max_steps: `train.max_steps`, the cosine horizon when `optim.total_steps` is 0.
        model_dim: encoder output size, used by `noam` only.
    """
    warmup = cfg.warmup_steps
    if warmup < 0:
        raise ValueError(f"optim.warmup_steps={warmup} must be >= 0")
    if cfg.scheduler not in SCHEDULERS:
        choices = ", ".join(SCHEDULERS)
        raise ValueError(f"optim.scheduler: unknown '{cfg.scheduler}' (choose from {choices})")

    def ramp(n: int) -> float:
        return min(1.0, n / warmup) if warmup > 0 else 1.0

    def noam_shape(n: int) -> float:
        return min(n**-0.5, n * warmup**-1.5) if warmup > 0 else n**-0.5

    if cfg.scheduler == "warmuplr":
        peak = warmup**0.5 if warmup > 0 else 1.0
        return lambda count: peak * noam_shape(count + 1)
    if cfg.scheduler == "noam":
        return lambda count: model_dim**-0.5 * noam_shape(count + 1)
    if cfg.scheduler == "constant":
        return lambda count: ramp(count + 1)
    total = cfg.total_steps or max_steps
    if total <= warmup:
        raise ValueError(
            f"optim.scheduler=cosine needs optim.total_steps (or train.max_steps) > "
            f"optim.warmup_steps={warmup}; got {total}"
        )
    floor = cfg.min_lr / cfg.lr if cfg.lr > 0 else 0.0

    def cosine(count: int) -> float:
        n = count + 1
        if n <= warmup:
            return ramp(n)
        progress = min(1.0, (n - warmup) / (total - warmup))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return cosine


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    cfg: OptimConfig | DictConfig,
    max_steps: int = 0,
    model_dim: int = 256,
) -> LambdaLR:
    """The `optim.scheduler` schedule on `optimizer` (see the module docstring)."""
    return LambdaLR(optimizer, lr_factor(cfg, max_steps, model_dim))
