"""Conformer encoder with full-context, chunk-masked and chunk-by-chunk (cached) forwards."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

from wenet_eff.nn.attention import EMPTY_ATT_CACHE, RelPositionMultiHeadedAttention, StabilityConfig
from wenet_eff.nn.cmvn import GlobalCMVN
from wenet_eff.nn.convolution import EMPTY_CNN_CACHE, ConvolutionModule
from wenet_eff.nn.embedding import RelPositionalEncoding
from wenet_eff.nn.encoder_layer import ConformerEncoderLayer
from wenet_eff.nn.ffn import activation
from wenet_eff.nn.mask import add_optional_chunk_mask, make_pad_mask
from wenet_eff.nn.moe import build_ffn
from wenet_eff.nn.subsampling import Conv2dSubsampling

# forward_chunk's cnn_cache before a stream's first chunk: the per-layer convolution caches
# stacked, (elayers, batch, hidden, kernel - 1), none yet (WeNet's torch.zeros(0, 0, 0, 0))
EMPTY_CNN_CACHES = torch.zeros(0, 0, 0, 0)


@dataclass
class EncoderConfig:
    """Conformer encoder. Names follow WeNet's `encoder_conf`."""

    output_size: int = 256
    attention_heads: int = 4
    linear_units: int = 2048
    num_blocks: int = 12
    dropout_rate: float = 0.1
    positional_dropout_rate: float = 0.1
    attention_dropout_rate: float = 0.1
    input_layer: str = "conv2d"  # conv2d (4x) | conv2d6 (6x) | conv2d8 (8x)
    normalize_before: bool = True
    macaron_style: bool = True
    use_cnn_module: bool = True
    cnn_module_kernel: int = 15
    cnn_module_norm: str = "layer_norm"  # layer_norm | batch_norm
    causal: bool = False
    activation_type: str = "swish"
    static_chunk_size: int = 0
    use_dynamic_chunk: bool = False
    use_dynamic_left_chunk: bool = False
    max_pos_len: int = 5000
    mlp_type: str = "position_wise_feed_forward"  # | moe (every FFN, macaron included)
    n_expert: int = 8
    n_expert_activated: int = 2


class ConformerEncoder(nn.Module):
    """Subsampling + N Conformer blocks + final LayerNorm (WeNet names: `embed`, `encoders`,
    `after_norm`, `global_cmvn`).

    Args:
        input_size: feature dimension (80).
        cfg: an `EncoderConfig` (above).
        global_cmvn: optional CMVN module applied first.
        stability: attention / FFN stability options (None: off).
        capacity_factor: of every MoE layer (`MoEConfig.capacity_factor`; 0: no cap).
    """

    def __init__(
        self,
        input_size: int,
        cfg: EncoderConfig,
        global_cmvn: GlobalCMVN | None = None,
        stability: StabilityConfig | None = None,
        capacity_factor: float = 0.0,
    ):
        super().__init__()
        st = stability or StabilityConfig()
        d = cfg.output_size
        self._output_size = d
        self.global_cmvn = global_cmvn
        self.embed = Conv2dSubsampling(
            input_size,
            d,
            RelPositionalEncoding(d, cfg.positional_dropout_rate, cfg.max_pos_len),
            cfg.input_layer,
            out_norm=st.embed_norm,
        )
        self.normalize_before = cfg.normalize_before
        self.after_norm = nn.LayerNorm(d)
        self.static_chunk_size = cfg.static_chunk_size
        self.use_dynamic_chunk = cfg.use_dynamic_chunk
        self.use_dynamic_left_chunk = cfg.use_dynamic_left_chunk

        def ffn() -> nn.Module:
            return build_ffn(
                d,
                cfg.linear_units,
                cfg.dropout_rate,
                activation(cfg.activation_type),
                cfg.mlp_type,
                cfg.n_expert,
                cfg.n_expert_activated,
                capacity_factor,
                fc2_norm=st.fc2_norm,
            )

        self.encoders = nn.ModuleList(
            ConformerEncoderLayer(
                d,
                RelPositionMultiHeadedAttention(
                    cfg.attention_heads, d, cfg.attention_dropout_rate, st
                ),
                ffn(),
                ffn() if cfg.macaron_style else None,
                ConvolutionModule(
                    d,
                    cfg.cnn_module_kernel,
                    activation(cfg.activation_type),
                    cfg.cnn_module_norm,
                    cfg.causal,
                )
                if cfg.use_cnn_module
                else None,
                cfg.dropout_rate,
                cfg.normalize_before,
                attn_pre_norm=not st.qkv_norm,
            )
            for _ in range(cfg.num_blocks)
        )

    def output_size(self) -> int:
        """The model dimension D of the encoder output."""
        return self._output_size

    def forward(
        self,
        xs: torch.Tensor,
        xs_lens: torch.Tensor,
        decoding_chunk_size: int = -1,
        num_decoding_left_chunks: int = -1,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode a padded batch.

        Args:
            xs: (B, T, input_size) features.
            xs_lens: (B,) valid frames.
            decoding_chunk_size: for a dynamic-chunk model, >0 chunk size in encoder frames,
                <0 full context, 0 the training behaviour (see add_optional_chunk_mask); a
                static-chunk model always uses its chunk, other models full context.
            num_decoding_left_chunks: left chunks visible (<0: all).
        Returns:
            out (B, T', D), mask (B, 1, T') True at valid frames.
        """
        masks = ~make_pad_mask(xs_lens, xs.size(1)).unsqueeze(1)
        if self.global_cmvn is not None:
            xs = self.global_cmvn(xs)
        xs, pos_emb, masks = self.embed(xs, masks)
        chunk_masks = add_optional_chunk_mask(
            xs,
            masks,
            self.use_dynamic_chunk,
            self.use_dynamic_left_chunk,
            decoding_chunk_size,
            self.static_chunk_size,
            num_decoding_left_chunks,
            self.training,
            max_chunk_size=100 // self.embed.subsampling_rate,
        )
        for layer in self.encoders:
            xs, chunk_masks, _, _ = layer(xs, chunk_masks, pos_emb, masks)
        if self.normalize_before:
            xs = self.after_norm(xs)
        return xs, masks

    def forward_chunk(
        self,
        xs: torch.Tensor,
        offset: int,
        required_cache_size: int,
        att_cache: torch.Tensor = EMPTY_ATT_CACHE,
        cnn_cache: torch.Tensor = EMPTY_CNN_CACHES,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode one chunk of a stream (batch 1), reusing the caches of earlier chunks.

        Args:
            xs: (1, T_in, input_size) features of this chunk, T_in = (chunk - 1) * subsampling
                + right_context + 1.
            offset: encoder frames emitted so far (position of this chunk's first output).
            required_cache_size: encoder frames of attention cache to keep for the next chunk
                (chunk * num_left_chunks); <0 keeps everything.
            att_cache: (elayers, head, cache_t, d_k * 2); empty (0, 0, 0, 0) at the start.
            cnn_cache: (elayers, 1, D, kernel - 1); empty (0, 0, 0, 0) at the start.
        Returns:
            out (1, T_chunk, D), new att_cache, new cnn_cache (same layouts).
        """
        if xs.size(0) != 1:
            raise ValueError(f"forward_chunk decodes one stream at a time, got batch {xs.size(0)}")
        no_mask = torch.ones(0, 0, 0, dtype=torch.bool, device=xs.device)
        if self.global_cmvn is not None:
            xs = self.global_cmvn(xs)
        valid = torch.ones(1, 1, xs.size(1), dtype=torch.bool, device=xs.device)
        xs, _, _ = self.embed(xs, valid, offset)
        cache_t = att_cache.size(2)
        key_size = cache_t + xs.size(1)
        pos_emb = self.embed.position_encoding(offset - cache_t, key_size)
        if required_cache_size < 0:
            next_cache_start = 0
        elif required_cache_size == 0:
            next_cache_start = key_size
        else:
            next_cache_start = max(key_size - required_cache_size, 0)
        new_att, new_cnn = [], []
        for i, layer in enumerate(self.encoders):
            xs, _, layer_att, layer_cnn = layer(
                xs,
                no_mask,
                pos_emb,
                att_cache=att_cache[i : i + 1] if att_cache.size(0) > 0 else att_cache,
                cnn_cache=cnn_cache[i] if cnn_cache.size(0) > 0 else EMPTY_CNN_CACHE,
            )
            new_att.append(layer_att[:, :, next_cache_start:, :])
            new_cnn.append(layer_cnn.unsqueeze(0))
        if self.normalize_before:
            xs = self.after_norm(xs)
        return xs, torch.cat(new_att, dim=0), torch.cat(new_cnn, dim=0)

    def forward_chunk_by_chunk(
        self, xs: torch.Tensor, decoding_chunk_size: int, num_decoding_left_chunks: int = -1
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Simulate streaming: feed `xs` (1, T, input_size) chunk by chunk through forward_chunk.

        Returns:
            out (1, T', D), mask (1, 1, T') all True.
        """
        if decoding_chunk_size <= 0:
            raise ValueError(f"decoding_chunk_size must be > 0, got {decoding_chunk_size}")
        sub = self.embed.subsampling_rate
        context = self.embed.right_context + 1
        stride = sub * decoding_chunk_size
        window = (decoding_chunk_size - 1) * sub + context
        required_cache_size = decoding_chunk_size * num_decoding_left_chunks
        att_cache = torch.zeros(0, 0, 0, 0, device=xs.device)
        cnn_cache = torch.zeros(0, 0, 0, 0, device=xs.device)
        outputs, offset = [], 0
        for start in range(0, xs.size(1) - context + 1, stride):
            chunk = xs[:, start : min(start + window, xs.size(1))]
            y, att_cache, cnn_cache = self.forward_chunk(
                chunk, offset, required_cache_size, att_cache, cnn_cache
            )
            outputs.append(y)
            offset += y.size(1)
        ys = torch.cat(outputs, dim=1)
        return ys, torch.ones(1, 1, ys.size(1), dtype=torch.bool, device=xs.device)
