"""Sinusoidal positional encodings (absolute for the decoder, relative for the encoder)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn


class PositionalEncoding(nn.Module):
    """x * sqrt(d) + sinusoid table, then dropout.

    The table `pe` (1, max_len, d) is a persistent buffer, as in WeNet's checkpoints.
    """

    def __init__(self, d_model: int, dropout_rate: float, max_len: int = 5000):
        super().__init__()
        self.d_model = d_model
        self.xscale = math.sqrt(d_model)
        self.dropout = nn.Dropout(p=dropout_rate)
        self.max_len = max_len
        position = torch.arange(max_len, dtype=torch.float32).unsqueeze(1)
        div_term = torch.exp(
            torch.arange(0, d_model, 2, dtype=torch.float32) * -(math.log(10000.0) / d_model)
        )
        pe = torch.zeros(max_len, d_model)
        pe[:, 0::2] = torch.sin(position * div_term)
        pe[:, 1::2] = torch.cos(position * div_term)
        self.register_buffer("pe", pe.unsqueeze(0))

    def position_encoding(self, offset: int, size: int) -> torch.Tensor:
        """Rows offset..offset+size of the table: (1, size, d)."""
        if offset + size > self.max_len:
            raise ValueError(
                f"sequence of {offset + size} positions exceeds max_pos_len={self.max_len}: "
                "split the input or raise model.*.max_pos_len"
            )
        return self.pe[:, offset : offset + size]

    def forward(self, x: torch.Tensor, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Args: x (B, T, d). Returns: (x scaled + pe, pos_emb (1, T, d))."""
        pos_emb = self.position_encoding(offset, x.size(1))
        return self.dropout(x * self.xscale + pos_emb), self.dropout(pos_emb)


class RelPositionalEncoding(PositionalEncoding):
    """x * sqrt(d) and, separately, the sinusoid rows for relative-position attention."""

    def forward(self, x: torch.Tensor, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Args: x (B, T, d). Returns: (x scaled, pos_emb (1, T, d))."""
        pos_emb = self.position_encoding(offset, x.size(1))
        return self.dropout(x * self.xscale), self.dropout(pos_emb)
