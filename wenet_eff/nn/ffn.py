"""Position-wise feed-forward network: w_2(dropout(act(w_1(x)))), optionally LayerNorm-ed
after w_2 (FC2; `model.stability.fc2_norm`)."""

from __future__ import annotations

import torch
import torch.nn as nn

from wenet_eff.nn.linear import linear


class PositionwiseFeedForward(nn.Module):
    """FFN with WeNet's names `w_1`, `w_2`.

    Args:
        idim: model dimension.
        hidden_units: inner dimension.
        dropout_rate: dropout after the activation.
        activation: nonlinearity.
        fc2_norm: LayerNorm (`w_2_norm`) after w_2.
    """

    def __init__(
        self,
        idim: int,
        hidden_units: int,
        dropout_rate: float,
        activation: nn.Module,
        fc2_norm: bool = False,
    ):
        super().__init__()
        self.w_1 = linear(idim, hidden_units, role="ffn.w_1")
        self.activation = activation
        self.dropout = nn.Dropout(dropout_rate)
        self.w_2 = linear(hidden_units, idim, role="ffn.w_2")
        self.w_2_norm = nn.LayerNorm(idim) if fc2_norm else None

    def forward(self, xs: torch.Tensor) -> torch.Tensor:
        """(B, T, idim) -> (B, T, idim)."""
        y = self.w_2(self.dropout(self.activation(self.w_1(xs))))
        return y if self.w_2_norm is None else self.w_2_norm(y)


ACTIVATIONS = {"swish": nn.SiLU, "relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


def activation(name: str) -> nn.Module:
    """The activation module named `name` (WeNet's names: swish, relu, gelu, tanh)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation_type='{name}' unknown (choose from {', '.join(ACTIVATIONS)})")
    return ACTIVATIONS[name]()
