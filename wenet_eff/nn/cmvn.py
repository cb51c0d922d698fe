"""Global CMVN applied inside the model, as WeNet does (`encoder.global_cmvn.{mean,istd}`)."""

from __future__ import annotations

import torch
import torch.nn as nn


class GlobalCMVN(nn.Module):
    """(x - mean) * istd with per-dimension statistics stored as buffers.

    Args:
        mean: (D,) feature means.
        istd: (D,) inverse standard deviations.
    """

    def __init__(self, mean: torch.Tensor, istd: torch.Tensor):
        super().__init__()
        if mean.shape != istd.shape:
            raise ValueError(f"CMVN mean {tuple(mean.shape)} and istd {tuple(istd.shape)} differ")
        self.register_buffer("mean", mean.float())
        self.register_buffer("istd", istd.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, T, D)."""
        return (x - self.mean) * self.istd
