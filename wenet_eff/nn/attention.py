"""Multi-head attention: plain (decoder) and relative-position (Conformer encoder).

Streaming cache layout (WeNet's): `cache (B, H, T_cache, 2 * d_k)`, keys then values on the
last axis. An empty cache is a tensor of shape (0, 0, 0, 0).

Stability options (`StabilityConfig`, Rybakov et al. 2024), all per position, so cached keys
and values stay valid chunk by chunk:
- `qk_norm`: LayerNorm over each head's queries and keys (`q_norm`, `k_norm`, size d_k);
- `qkv_norm`: LayerNorm on the outputs of `linear_q/k/v` (`linear_q_norm`, ...; the block
  drops its pre-norm);
- `softmax_cap`: logits -> cap * tanh(logits / cap) before the mask and softmax;
- `proj_norm`: LayerNorm after `linear_out` (`linear_out_norm`).
With `record_logits` set (by train.stability), `max_logit` keeps the largest logit of the last
forward, before capping.

Half precision (fp16, bf16): the queries are scaled by 1/sqrt(d_k) before the products, so
a logit overflows fp16 only where the scaled logit itself exceeds 65504 (WeNet divides the summed
products, whose fp16 sum overflows first); blocked keys get the dtype's lowest value, and the
softmax runs in fp32.

`fused_softmax` (off; the .pt2 export sets it) computes softmax(scores) @ values as one
`scaled_dot_product_attention` call, the relative-position term passed as its additive mask.
AOTInductor runs that as ATen's fused CPU kernel; the softmax it generates itself for the
Conformer's attention picked a layout with the heads innermost and a scalar exp loop (0.7 ms
per layer of mini_moe at 175 frames). Not used in training or when logits are capped or
recorded.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from torch.fx.experimental.symbolic_shapes import statically_known_true

from wenet_eff.nn.linear import linear

EMPTY_ATT_CACHE = torch.zeros(0, 0, 0, 0)


@dataclass
class StabilityConfig:
    """Options against attention-logit and linear-output growth at high learning rates
    (Rybakov et al. 2024, "Methods of improving LLM training stability"); all off by default.

    The `stability=...` config group sets them: qk_norm, qk_norm_cap, qkv_norm,
    qk_proj_fc2_norm, qk_proj_fc2_embed_norm (conf/stability/).
    """

    qk_norm: bool = False  # LayerNorm over each head's queries and keys (size d_k)
    softmax_cap: float = 0.0  # >0: attention logits become cap * tanh(logits / cap)
    qkv_norm: bool = False  # LayerNorm after the Q, K and V projections; no pre-norm before them
    proj_norm: bool = False  # LayerNorm after the attention output projection (Proj)
    fc2_norm: bool = False  # LayerNorm after the FFN's second linear (FC2; in every MoE expert)
    # LayerNorm after the convolutional front end's output linear (encoder.embed.out_norm),
    # before the positional encoding: in a Conformer that linear's output grows most at high lr
    embed_norm: bool = False
    encoder: bool = True  # apply to the encoder blocks
    decoder: bool = True  # apply to the decoder blocks


def _shared_keys(batch, groups) -> bool:
    """True when the keys are shared by groups of queries: query batch B, key batch G < B (B a
    multiple of G), each key sequence serving B/G consecutive queries (the rescoring n-best
    of one utterance). Decided without a shape guard under torch.export: a key batch of
    static size 1 always counts (a fold of one group is a no-op), symbolic batches never."""
    if statically_known_true(groups == 1):
        return True
    if not (isinstance(batch, int) and isinstance(groups, int)) or groups >= batch:
        return False
    if batch % groups:
        raise ValueError(f"query batch {batch} is not a multiple of the key batch {groups}")
    return True


def _softmax(scores: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Softmax over the last axis computed in fp32 (exact sums of half-precision
    probabilities), returned in `dtype` (the values' dtype, for the product with them)."""
    return torch.softmax(scores, dim=-1, dtype=torch.float32).to(dtype)


class MultiHeadedAttention(nn.Module):
    """Scaled dot-product attention over `n_head` heads of size d_k = n_feat / n_head.

    Args:
        n_head, n_feat, dropout_rate: heads, model dimension, attention dropout.
        stability: the options in the module docstring (None: all off).
    """

    def __init__(
        self,
        n_head: int,
        n_feat: int,
        dropout_rate: float,
        stability: StabilityConfig | None = None,
    ):
        super().__init__()
        if n_feat % n_head:
            raise ValueError(f"attention size {n_feat} is not divisible by {n_head} heads")
        st = stability or StabilityConfig()
        if st.softmax_cap < 0:
            raise ValueError(f"model.stability.softmax_cap={st.softmax_cap} must be >= 0")
        self.d_k = n_feat // n_head
        self.h = n_head
        self.linear_q = linear(n_feat, n_feat, role="attn.qkv")
        self.linear_k = linear(n_feat, n_feat, role="attn.qkv")
        self.linear_v = linear(n_feat, n_feat, role="attn.qkv")
        self.linear_out = linear(n_feat, n_feat, role="attn.out")
        self.dropout = nn.Dropout(p=dropout_rate)
        self.q_norm = nn.LayerNorm(self.d_k) if st.qk_norm else None
        self.k_norm = nn.LayerNorm(self.d_k) if st.qk_norm else None
        self.linear_q_norm = nn.LayerNorm(n_feat) if st.qkv_norm else None
        self.linear_k_norm = nn.LayerNorm(n_feat) if st.qkv_norm else None
        self.linear_v_norm = nn.LayerNorm(n_feat) if st.qkv_norm else None
        self.linear_out_norm = nn.LayerNorm(n_feat) if st.proj_norm else None
        self.softmax_cap = float(st.softmax_cap)
        self.fused_softmax = False
        self.record_logits = False
        self.max_logit: torch.Tensor | None = None

    def _heads(
        self,
        layer: nn.Module,
        x: torch.Tensor,
        out_norm: nn.Module | None = None,
        head_norm: nn.Module | None = None,
    ) -> torch.Tensor:
        """(B, T, n_feat) -> (B, H, T, d_k), with the optional norms after the projection and
        per head."""
        y = layer(x)
        if out_norm is not None:
            y = out_norm(y)
        y = y.view(x.size(0), -1, self.h, self.d_k).transpose(1, 2)
        return y if head_norm is None else head_norm(y)

    def forward_qkv(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return (
            self._heads(self.linear_q, query, self.linear_q_norm, self.q_norm),
            self._heads(self.linear_k, key, self.linear_k_norm, self.k_norm),
            self._heads(self.linear_v, value, self.linear_v_norm),
        )

    def _logits(self, scores: torch.Tensor) -> torch.Tensor:
        """Record the largest logit when asked, then soft-cap when configured."""
        if self.record_logits:
            self.max_logit = scores.detach().amax()
        if self.softmax_cap > 0:
            scores = self.softmax_cap * torch.tanh(scores / self.softmax_cap)
        return scores

    def forward_attention(
        self, value: torch.Tensor, scores: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Softmax over keys, masked.

        Args:
            value: (B, H, T2, d_k).
            scores: (B, H, T1, T2).
            mask: (B, 1, T2) or (B, T1, T2) bool, True = attend; size(2) == 0 means no mask.
        Returns:
            (B, T1, n_feat) after the output projection.
        """
        if mask.size(2) > 0:
            blocked = ~mask.unsqueeze(1)[:, :, :, : scores.size(-1)]
            scores = scores.masked_fill(blocked, torch.finfo(scores.dtype).min)
            attn = _softmax(scores, value.dtype).masked_fill(blocked, 0.0)
        else:
            attn = _softmax(scores, value.dtype)
        return self._output(torch.matmul(self.dropout(attn), value))

    def _output(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, T1, d_k) heads -> (B, T1, n_feat) after the output projection."""
        x = x.transpose(1, 2).reshape(x.size(0), -1, self.h * self.d_k)
        x = self.linear_out(x)
        return x if self.linear_out_norm is None else self.linear_out_norm(x)

    def _fused(self) -> bool:
        # eval only: the fused call has no attention dropout
        return (
            self.fused_softmax
            and not self.training
            and self.softmax_cap == 0
            and not self.record_logits
        )

    def _fused_attention(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        mask: torch.Tensor,
        bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """forward_attention(v, q k^T + bias, mask) as one fused call (eval only); q comes
        scaled by 1/sqrt(d_k).

        A blocked key gets the lowest float, as in forward_attention; a query with every key
        blocked would average the values instead of giving zeros (the exported graphs always
        leave a query at least one key: the chunk's own first frame, or sos)."""
        if mask.size(2) > 0:
            blocked = ~mask.unsqueeze(1)[:, :, :, : k.size(2)]
            if bias is None:
                bias = torch.zeros(blocked.shape, dtype=q.dtype, device=q.device)
            bias = bias.masked_fill(blocked, torch.finfo(q.dtype).min)
        x = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias, scale=1.0)
        return self._output(x)

    @staticmethod
    def _with_cache(
        k: torch.Tensor, v: torch.Tensor, cache: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Keys and values after the cached ones, and the new cache (keys then values on the
        last axis). The cache is copied once, as whole rows; k and v are views of the result
        (concatenating keys and values separately first would copy it twice, strided)."""
        kv = torch.cat((k, v), dim=-1)
        if cache.size(0) > 0:
            kv = torch.cat((cache, kv), dim=2)
            k, v = kv.split(k.size(-1), dim=-1)
        return k, v, kv

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        mask: torch.Tensor,
        pos_emb: torch.Tensor | None = None,
        cache: torch.Tensor = EMPTY_ATT_CACHE,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Args: query (B, T1, n_feat), key/value (B, T2, n_feat) or (G, T2, n_feat) with G
        dividing B, each shared by B/G consecutive queries (an utterance's rescoring n-best),
        mask as in forward_attention (batch G when shared).

        Returns: output (B, T1, n_feat), new cache (B, H, T_cache + T2, 2 * d_k).
        """
        q, k, v = self.forward_qkv(query, key, value)
        k, v, new_cache = self._with_cache(k, v, cache)
        q = q * self.d_k**-0.5
        batch, groups = q.size(0), k.size(0)
        if _shared_keys(batch, groups):
            # (B, H, T1, d_k) -> (G, H, B/G * T1, d_k): one product per key sequence, so the
            # keys and values are never copied B/G times (matmul's broadcast would)
            q = q.reshape(groups, -1, self.h, q.size(2), self.d_k).transpose(1, 2)
            q = q.reshape(groups, self.h, -1, self.d_k)
        if self._fused():
            out = self._fused_attention(q, k, v, mask)
        else:
            scores = self._logits(torch.matmul(q, k.transpose(-2, -1)))
            out = self.forward_attention(v, scores, mask)
        return out.reshape(batch, -1, out.size(-1)), new_cache


class RelPositionMultiHeadedAttention(MultiHeadedAttention):
    """Transformer-XL style attention with learned biases u (content) and v (position).

    scores = ((q + u) k^T + (q + v) p^T) / sqrt(d_k), p = linear_pos(pos_emb). As in WeNet,
    no relative shift: pos_emb holds the sinusoids of the key positions themselves, which keeps
    the computation identical between full-context and chunk-by-chunk streaming.
    """

    def __init__(
        self,
        n_head: int,
        n_feat: int,
        dropout_rate: float,
        stability: StabilityConfig | None = None,
    ):
        super().__init__(n_head, n_feat, dropout_rate, stability)
        self.linear_pos = linear(n_feat, n_feat, bias=False, role="attn.pos")
        self.pos_bias_u = nn.Parameter(torch.empty(self.h, self.d_k))
        self.pos_bias_v = nn.Parameter(torch.empty(self.h, self.d_k))
        nn.init.xavier_uniform_(self.pos_bias_u)
        nn.init.xavier_uniform_(self.pos_bias_v)

    def forward(
        self,
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        mask: torch.Tensor,
        pos_emb: torch.Tensor | None = None,
        cache: torch.Tensor = EMPTY_ATT_CACHE,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Args as MultiHeadedAttention, plus pos_emb (1, T_cache + T2, n_feat)."""
        q, k, v = self.forward_qkv(query, key, value)
        k, v, new_cache = self._with_cache(k, v, cache)
        p = self._heads(self.linear_pos, pos_emb)  # (1, H, T2, d_k)
        # bias (H, d_k) broadcast over (B, H, T1, d_k); scaled before the products (half
        # precision: see the module docstring)
        scale = self.d_k**-0.5
        q_u = (q + self.pos_bias_u.unsqueeze(1)) * scale
        q_v = (q + self.pos_bias_v.unsqueeze(1)) * scale
        matrix_bd = torch.matmul(q_v, p.transpose(-2, -1))
        if self._fused():
            return self._fused_attention(q_u, k, v, mask, matrix_bd), new_cache
        matrix_ac = torch.matmul(q_u, k.transpose(-2, -1))
        scores = self._logits(matrix_ac + matrix_bd)
        return self.forward_attention(v, scores, mask), new_cache
