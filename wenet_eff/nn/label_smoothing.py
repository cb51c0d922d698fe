"""Label-smoothed cross entropy (KL divergence to the smoothed target), WeNet's normalisation."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F


class LabelSmoothingLoss(nn.Module):
    """KL(q || p) with q = confidence on the target and smoothing / (V - 1) elsewhere.

    Computed in closed form (no (N, V) target tensor): for each kept position,
    sum_j q_j log q_j - s * sum_j log p_j - (c - s) * log p_target, with s = smoothing / (V-1).

    Args:
        size: vocabulary size V.
        padding_idx: target id to ignore (-1).
        smoothing: label-smoothing weight.
        normalize_length: divide by the number of tokens (True) or by the batch size.
    """

    def __init__(self, size: int, padding_idx: int, smoothing: float, normalize_length: bool):
        super().__init__()
        self.size = size
        self.padding_idx = padding_idx
        self.confidence = 1.0 - smoothing
        self.low = smoothing / (size - 1)
        self.normalize_length = normalize_length
        entropy = 0.0
        if self.confidence > 0:
            entropy += self.confidence * math.log(self.confidence)
        if self.low > 0:
            entropy += (size - 1) * self.low * math.log(self.low)
        self.neg_entropy = entropy

    def forward(self, x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Args: x (B, L, V) logits; target (B, L) ids padded with padding_idx. Returns: scalar."""
        batch_size = x.size(0)
        logp = F.log_softmax(x.reshape(-1, self.size).float(), dim=-1)
        target = target.reshape(-1)
        keep = target != self.padding_idx
        logp, target = logp[keep], target[keep]
        logp_target = logp.gather(1, target.unsqueeze(1)).squeeze(1)
        per_token = (
            self.neg_entropy - self.low * logp.sum(-1) - (self.confidence - self.low) * logp_target
        )
        denom = target.numel() if self.normalize_length else batch_size
        return per_token.sum() / max(denom, 1)
