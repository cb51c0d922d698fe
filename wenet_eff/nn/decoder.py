"""Transformer attention decoders: left-to-right, and the U2++ bidirectional pair."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from wenet_eff.nn.attention import MultiHeadedAttention, StabilityConfig
from wenet_eff.nn.embedding import PositionalEncoding
from wenet_eff.nn.ffn import activation
from wenet_eff.nn.linear import linear, tag
from wenet_eff.nn.mask import make_pad_mask, subsequent_mask
from wenet_eff.nn.moe import build_ffn


@dataclass
class DecoderConfig:
    """Bidirectional Transformer decoder (left-to-right + right-to-left)."""

    attention_heads: int = 4
    linear_units: int = 2048
    num_blocks: int = 3
    r_num_blocks: int = 3
    dropout_rate: float = 0.1
    positional_dropout_rate: float = 0.1
    self_attention_dropout_rate: float = 0.1
    src_attention_dropout_rate: float = 0.1
    normalize_before: bool = True
    max_pos_len: int = 5000
    mlp_type: str = "position_wise_feed_forward"  # | moe
    n_expert: int = 8
    n_expert_activated: int = 2


class DecoderLayer(nn.Module):
    """Self-attention -> source attention -> FFN, each a residual block (`norm1..3`).

    `attn_pre_norm=False` (`model.stability.qkv_norm`: the attentions LayerNorm their Q/K/V
    outputs instead) makes `norm1` and `norm2` identities in a pre-norm layer.
    """

    def __init__(
        self,
        size: int,
        self_attn: MultiHeadedAttention,
        src_attn: MultiHeadedAttention,
        feed_forward: nn.Module,
        dropout_rate: float,
        normalize_before: bool = True,
        attn_pre_norm: bool = True,
    ):
        super().__init__()
        self.self_attn = self_attn
        self.src_attn = src_attn
        self.feed_forward = feed_forward
        no_norm = normalize_before and not attn_pre_norm
        self.norm1 = nn.Identity() if no_norm else nn.LayerNorm(size)
        self.norm2 = nn.Identity() if no_norm else nn.LayerNorm(size)
        self.norm3 = nn.LayerNorm(size)
        self.dropout = nn.Dropout(dropout_rate)
        self.normalize_before = normalize_before

    def _post_norm(self, x: torch.Tensor, i: int) -> torch.Tensor:
        return x if self.normalize_before else getattr(self, f"norm{i}")(x)

    def _residual(self, x: torch.Tensor, i: int, fn) -> torch.Tensor:
        """x + dropout(fn(norm_i(x))) with pre-norm, norm_i(x + dropout(fn(x))) with post-norm."""
        norm = getattr(self, f"norm{i}")
        y = x + self.dropout(fn(norm(x) if self.normalize_before else x))
        return self._post_norm(y, i)

    def forward(
        self,
        tgt: torch.Tensor,
        tgt_mask: torch.Tensor,
        memory: torch.Tensor,
        memory_mask: torch.Tensor,
        cache: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Args:
            tgt: (B, L, D) inputs; tgt_mask: (B, L, L).
            memory: (B, T, D) encoder output, or (G, T, D) with G dividing B, each serving
                B/G consecutive sequences (an utterance's n-best or beam; G = 1: one memory
                for all); memory_mask: (B or G, 1, T).
            cache: (B, L-1, D) this layer's outputs for the first L-1 positions; when given,
                only the last position is computed and appended.
        Returns:
            (B, L, D).
        """
        x = self.norm1(tgt) if self.normalize_before else tgt
        if cache is None:
            query, query_mask, residual = x, tgt_mask, tgt
        else:  # only the newest position is computed
            query, query_mask, residual = x[:, -1:], tgt_mask[:, -1:], tgt[:, -1:]
        y = self._post_norm(residual + self.dropout(self.self_attn(query, x, x, query_mask)[0]), 1)
        y = self._residual(y, 2, lambda z: self.src_attn(z, memory, memory, memory_mask)[0])
        y = self._residual(y, 3, self.feed_forward)
        return y if cache is None else torch.cat([cache, y], dim=1)


class TransformerDecoder(nn.Module):
    """Embedding + positional encoding + N decoder layers + output projection.

    Args:
        vocab_size: output vocabulary V (sos/eos is V - 1).
        d_model: encoder output dimension.
        cfg: a `DecoderConfig`; `num_blocks` layers.
        stability: attention / FFN stability options (None: off).
        capacity_factor: of every MoE layer (`MoEConfig.capacity_factor`; 0: no cap).
    """

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        cfg: DecoderConfig,
        num_blocks: int,
        stability: StabilityConfig | None = None,
        capacity_factor: float = 0.0,
    ):
        super().__init__()
        st = stability or StabilityConfig()
        self.embed = nn.Sequential(
            tag(nn.Embedding(vocab_size, d_model), "embedding"),
            PositionalEncoding(d_model, cfg.positional_dropout_rate, cfg.max_pos_len),
        )
        self.normalize_before = cfg.normalize_before
        self.after_norm = nn.LayerNorm(d_model)
        self.output_layer = linear(d_model, vocab_size, role="output")
        self.decoders = nn.ModuleList(
            DecoderLayer(
                d_model,
                MultiHeadedAttention(
                    cfg.attention_heads, d_model, cfg.self_attention_dropout_rate, st
                ),
                MultiHeadedAttention(
                    cfg.attention_heads, d_model, cfg.src_attention_dropout_rate, st
                ),
                build_ffn(
                    d_model,
                    cfg.linear_units,
                    cfg.dropout_rate,
                    activation("relu"),
                    cfg.mlp_type,
                    cfg.n_expert,
                    cfg.n_expert_activated,
                    capacity_factor,
                    fc2_norm=st.fc2_norm,
                ),
                cfg.dropout_rate,
                cfg.normalize_before,
                attn_pre_norm=not st.qkv_norm,
            )
            for _ in range(num_blocks)
        )

    def _embed(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.embed[1](self.embed[0](tokens))[0]

    def forward(
        self,
        memory: torch.Tensor,
        memory_mask: torch.Tensor,
        ys_in_pad: torch.Tensor,
        ys_in_lens: torch.Tensor,
    ) -> torch.Tensor:
        """Teacher-forced decoding.

        Args:
            memory: (B, T, D); memory_mask: (B, 1, T).
            ys_in_pad: (B, L) input tokens (sos-prefixed); ys_in_lens: (B,).
        Returns:
            logits (B, L, V).
        """
        length = ys_in_pad.size(1)
        tgt_mask = ~make_pad_mask(ys_in_lens, length).unsqueeze(1)
        tgt_mask = tgt_mask & subsequent_mask(length, ys_in_pad.device).unsqueeze(0)
        x = self._embed(ys_in_pad)
        for layer in self.decoders:
            x = layer(x, tgt_mask, memory, memory_mask)
        if self.normalize_before:
            x = self.after_norm(x)
        return self.output_layer(x)

    def forward_one_step(
        self,
        memory: torch.Tensor,
        memory_mask: torch.Tensor,
        tgt: torch.Tensor,
        cache: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Next-token log probabilities for incremental (beam) search.

        Args:
            memory: (N, T, D); memory_mask: (N, 1, T).
            tgt: (N, L) the prefixes (all of length L).
            cache: per layer (N, L-1, D) outputs of the previous step, or None.
        Returns:
            log probs (N, V) for position L, new cache (per layer (N, L, D)).
        """
        tgt_mask = subsequent_mask(tgt.size(1), tgt.device).unsqueeze(0)
        x = self._embed(tgt)
        new_cache = []
        for i, layer in enumerate(self.decoders):
            x = layer(x, tgt_mask, memory, memory_mask, None if cache is None else cache[i])
            new_cache.append(x)
        y = x[:, -1]
        if self.normalize_before:
            y = self.after_norm(y)
        return F.log_softmax(self.output_layer(y), dim=-1), new_cache


class BiTransformerDecoder(nn.Module):
    """U2++ decoder pair: `left_decoder` reads left-to-right, `right_decoder` right-to-left
    (`r_num_blocks` layers; none when 0). Arguments as TransformerDecoder's."""

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        cfg: DecoderConfig,
        stability: StabilityConfig | None = None,
        capacity_factor: float = 0.0,
    ):
        super().__init__()
        args = (stability, capacity_factor)
        self.left_decoder = TransformerDecoder(vocab_size, d_model, cfg, cfg.num_blocks, *args)
        self.right_decoder = (
            TransformerDecoder(vocab_size, d_model, cfg, cfg.r_num_blocks, *args)
            if cfg.r_num_blocks > 0
            else None
        )

    def forward(
        self,
        memory: torch.Tensor,
        memory_mask: torch.Tensor,
        ys_in_pad: torch.Tensor,
        ys_in_lens: torch.Tensor,
        r_ys_in_pad: torch.Tensor,
        reverse_weight: float = 0.0,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Returns: l2r logits (B, L, V), r2l logits (B, L, V) or None when unused."""
        left = self.left_decoder(memory, memory_mask, ys_in_pad, ys_in_lens)
        right = None
        if reverse_weight > 0.0 and self.right_decoder is not None:
            right = self.right_decoder(memory, memory_mask, r_ys_in_pad, ys_in_lens)
        return left, right

    def forward_one_step(
        self,
        memory: torch.Tensor,
        memory_mask: torch.Tensor,
        tgt: torch.Tensor,
        cache: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Left-to-right incremental step (see TransformerDecoder.forward_one_step)."""
        return self.left_decoder.forward_one_step(memory, memory_mask, tgt, cache)
