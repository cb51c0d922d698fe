"""CTC head: linear projection to the vocabulary and the CTC loss (blank = 0)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from wenet_eff.nn.linear import linear


class CTC(nn.Module):
    """`ctc_lo` projects encoder frames to vocabulary logits (WeNet's name)."""

    def __init__(self, odim: int, encoder_output_size: int, blank_id: int = 0):
        super().__init__()
        self.ctc_lo = linear(encoder_output_size, odim, role="output")
        self.blank_id = blank_id

    def forward(
        self,
        hs_pad: torch.Tensor,
        hlens: torch.Tensor,
        ys_pad: torch.Tensor,
        ys_lens: torch.Tensor,
    ) -> torch.Tensor:
        """CTC loss summed over the batch and divided by the batch size.

        Args:
            hs_pad: (B, T, D) encoder output; hlens: (B,) valid frames.
            ys_pad: (B, L) targets padded with -1; ys_lens: (B,).
        Returns:
            scalar loss.
        """
        log_probs = self.log_softmax(hs_pad).transpose(0, 1).float()
        loss = F.ctc_loss(
            log_probs,
            ys_pad,
            hlens,
            ys_lens,
            blank=self.blank_id,
            reduction="sum",
            zero_infinity=True,
        )
        return loss / hs_pad.size(0)

    def log_softmax(self, hs_pad: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, T, V) log posteriors."""
        return F.log_softmax(self.ctc_lo(hs_pad), dim=-1)
