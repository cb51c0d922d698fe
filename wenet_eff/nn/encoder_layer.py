"""One Conformer block: (macaron FFN) -> self-attention -> convolution -> FFN -> final norm."""

from __future__ import annotations

import torch
import torch.nn as nn

from wenet_eff.nn.attention import EMPTY_ATT_CACHE, RelPositionMultiHeadedAttention
from wenet_eff.nn.convolution import EMPTY_CNN_CACHE, ConvolutionModule


class ConformerEncoderLayer(nn.Module):
    """Conformer block with WeNet's sub-module names (`norm_ff_macaron`, `norm_mha`, ...).

    Half-step FFNs (scale 0.5) when a macaron FFN is present. `attn_pre_norm=False` (the
    attention LayerNorms its Q/K/V outputs instead, `model.stability.qkv_norm`) makes
    `norm_mha` an identity in a pre-norm block.
    """

    def __init__(
        self,
        size: int,
        self_attn: RelPositionMultiHeadedAttention,
        feed_forward: nn.Module,
        feed_forward_macaron: nn.Module | None,
        conv_module: ConvolutionModule | None,
        dropout_rate: float,
        normalize_before: bool = True,
        attn_pre_norm: bool = True,
    ):
        super().__init__()
        self.self_attn = self_attn
        self.feed_forward = feed_forward
        self.feed_forward_macaron = feed_forward_macaron
        self.conv_module = conv_module
        self.norm_ff = nn.LayerNorm(size)
        no_norm = normalize_before and not attn_pre_norm
        self.norm_mha = nn.Identity() if no_norm else nn.LayerNorm(size)
        if feed_forward_macaron is not None:
            self.norm_ff_macaron = nn.LayerNorm(size)
            self.ff_scale = 0.5
        else:
            self.ff_scale = 1.0
        if conv_module is not None:
            self.norm_conv = nn.LayerNorm(size)
            self.norm_final = nn.LayerNorm(size)
        self.dropout = nn.Dropout(dropout_rate)
        self.normalize_before = normalize_before

    def _residual(self, x: torch.Tensor, norm: nn.Module, fn, scale: float = 1.0):
        """Pre- or post-norm residual around fn; fn returns (y, extra). x + scale * y in one
        pass (add's alpha: no scaled copy of y, none at all at scale 1, the attention's and
        the convolution's)."""
        y, extra = fn(norm(x) if self.normalize_before else x)
        x = torch.add(x, self.dropout(y), alpha=scale)
        return (x if self.normalize_before else norm(x)), extra

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor,
        pos_emb: torch.Tensor,
        mask_pad: torch.Tensor = EMPTY_CNN_CACHE,
        att_cache: torch.Tensor = EMPTY_ATT_CACHE,
        cnn_cache: torch.Tensor = EMPTY_CNN_CACHE,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Args:
            x: (B, T, D).
            mask: (B, T, T) or (B, 1, T) attention mask; (0, 0, 0) for none (streaming).
            pos_emb: (1, T_cache + T, D).
            mask_pad: (B, 1, T) padding mask for the convolution, or empty.
            att_cache: (B, H, T_cache, 2 * d_k); cnn_cache: (B, D, kernel - 1).

        Returns:
            x (B, T, D), mask, new att_cache (B, H, T_cache + T, 2 * d_k), new cnn_cache.
        """
        if self.feed_forward_macaron is not None:
            x, _ = self._residual(
                x,
                self.norm_ff_macaron,
                lambda y: (self.feed_forward_macaron(y), None),
                self.ff_scale,
            )
        x, new_att_cache = self._residual(
            x, self.norm_mha, lambda y: self.self_attn(y, y, y, mask, pos_emb, att_cache)
        )
        new_cnn_cache = EMPTY_CNN_CACHE
        if self.conv_module is not None:
            x, new_cnn_cache = self._residual(
                x, self.norm_conv, lambda y: self.conv_module(y, mask_pad, cnn_cache)
            )
        x, _ = self._residual(
            x, self.norm_ff, lambda y: (self.feed_forward(y), None), self.ff_scale
        )
        if self.conv_module is not None:
            x = self.norm_final(x)
        return x, mask, new_att_cache, new_cnn_cache
