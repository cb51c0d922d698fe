"""The pieces of an ASR model that the C++ runtime runs, as export-ready modules.

- `EncoderChunkStep`: one streaming step with a fixed chunk size and a fixed number of left
  chunks. Every shape is static: the attention cache always holds `chunk * left_chunks`
  frames and a mask hides the slots not filled yet (the first chunks) and the padded tail of
  a short last chunk, so one compiled graph serves a whole stream. Returns the CTC log
  posteriors with the encoder output and the new caches.
- `EncoderChunkBatch`: the same step for a batch of streams, each at its own position (its
  own offset, cache fill and valid frames per row; the batch size is dynamic), so a server
  runs the chunks of all its live streams as one forward (MoE experts then see the frames of
  every stream at once). Each row equals `EncoderChunkStep` on that stream alone.
- `EncoderFull`: the full-context encoder over a whole utterance (dynamic length).
- `RescoringDecoder`: both attention decoders scoring a padded n-best list (dynamic n-best
  size and length); returns the left-to-right and right-to-left sequence scores that
  `decode.attention.attention_rescoring` combines.

They reuse the model's own layers; what differs from the eager forward is only bookkeeping:
the relative-position sinusoids are computed from the offset (no table, so no length limit
and no data-dependent slicing) and MoE layers dispatch through `export_moe_forward`.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from wenet_eff.decode.attention import _sequence_scores
from wenet_eff.nn.embedding import PositionalEncoding
from wenet_eff.nn.linear import weight_layers
from wenet_eff.nn.moe import MoEFFNLayer


def sinusoids(positions: torch.Tensor, div_term: torch.Tensor) -> torch.Tensor:
    """(T,) float positions -> (1, T, d) sinusoids, laid out as `PositionalEncoding.pe`;
    (B, T) positions (one row per stream) -> (B, T, d)."""
    angles = positions.unsqueeze(-1) * div_term  # (..., T, d/2)
    emb = torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(-2)
    return emb if positions.dim() == 2 else emb.unsqueeze(0)


def _div_term(d_model: int) -> torch.Tensor:
    return torch.exp(
        torch.arange(0, d_model, 2, dtype=torch.float32) * -(math.log(10000.0) / d_model)
    )


def export_moe_forward(layer: MoEFFNLayer, xs: torch.Tensor) -> torch.Tensor:
    """MoE forward for export: each expert runs on exactly the frames routed to it.

    The eager dispatch splits one sorted batch by Python-int counts, which a traced graph
    cannot hold; here each expert gathers its frames with a data-dependent `nonzero` (an
    unbacked size in torch.export, NonZero in ONNX), so only routed experts compute, as in the
    eager model. Same result as `layer(xs)` in eval.
    """
    shape = xs.shape
    x = xs.reshape(-1, shape[-1])
    _, top_ids, weights = layer.route(x)
    out = torch.zeros_like(x)
    for e, expert in enumerate(layer.experts):
        hit = (top_ids == e).to(weights.dtype)  # (N, k): at most one hit per frame
        frame = torch.nonzero(hit.sum(1) > 0).squeeze(1)
        w = (weights * hit).sum(1).index_select(0, frame)
        y = expert(x.index_select(0, frame)) * w.unsqueeze(1).to(x.dtype)
        out = out.index_add(0, frame, y)
    return out.reshape(shape)


class _ExportMoE(nn.Module):
    """Wraps an MoE layer so its forward is `export_moe_forward` (state-dict names kept)."""

    def __init__(self, layer: MoEFFNLayer):
        super().__init__()
        self.layer = layer

    def forward(self, xs: torch.Tensor) -> torch.Tensor:
        return export_moe_forward(self.layer, xs)


class _ExportPositions(nn.Module):
    """A decoder's `PositionalEncoding` with its rows computed from the positions
    (`sinusoids`) instead of read from its table (5000 rows of d), which the exported graphs
    then do not carry."""

    def __init__(self, layer: PositionalEncoding):
        super().__init__()
        self.xscale, self.dropout = layer.xscale, layer.dropout
        self.register_buffer("div_term", _div_term(layer.d_model), persistent=False)

    def forward(self, x: torch.Tensor, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        positions = torch.arange(x.size(1), device=x.device, dtype=torch.float32) + offset
        pos_emb = sinusoids(positions, self.div_term)
        return self.dropout(x * self.xscale + pos_emb), self.dropout(pos_emb)


@torch.no_grad()
def fold_compression(model: nn.Module) -> int:
    """Turn every compressed layer (compress.apply) back into its plain torch class holding the
    weight its forward uses (masked, fake-quantized), in place. Activation fake quantization
    of QAT models is dropped (the int8 export quantizes activations itself).

    Returns: the number of layers folded.
    """
    from wenet_eff.compress.layers import CompressedLayer

    folded = 0
    for _, layer in weight_layers(model):
        if not isinstance(layer, CompressedLayer):
            continue
        weight = layer.effective_weight().detach().clone()
        plain = next(c for c in type(layer).__bases__ if c is not CompressedLayer)
        for attr in ("weight_quantizer", "sparsifier"):
            if attr in layer._modules:
                del layer._modules[attr]
            layer.__dict__.pop(attr, None)
        layer.__class__ = plain
        layer.weight = nn.Parameter(weight, requires_grad=False)
        folded += 1
    return folded


def prepare_for_export(model: nn.Module) -> nn.Module:
    """Fold compression, swap every MoE FFN for its export dispatch and the decoders'
    positional tables for computed rows (in place), set eval."""
    fold_compression(model)
    for module in list(model.modules()):
        if isinstance(module, _ExportMoE):
            continue  # already prepared
        for child_name, child in list(module.named_children()):
            if isinstance(child, MoEFFNLayer):
                setattr(module, child_name, _ExportMoE(child))
            elif type(child) is PositionalEncoding:  # the encoder's relative one: subsample()
                setattr(module, child_name, _ExportPositions(child))
    return model.eval()


def _is_plain_single_channel_conv(conv: nn.Module) -> bool:
    # isinstance and the inherited forward, not `type(conv) is nn.Conv2d`: under torch.export
    # submodules can arrive as proxy subclasses of their own class (the module-stack tracer's
    # AttrProxy), and the identity test then silently kept the NCHW Conv in the graph
    return (
        isinstance(conv, nn.Conv2d)
        and type(conv).forward is nn.Conv2d.forward
        and conv.in_channels == 1
        and conv.groups == 1
        and conv.padding == (0, 0)
        and conv.dilation == (1, 1)
    )


def _single_channel_conv_nhwc(conv: nn.Conv2d, xs: torch.Tensor) -> torch.Tensor:
    """conv(xs.unsqueeze(1)) for the front end's first Conv2d (one input channel) as one GEMM
    over its kernel patches, returned as a (B, C, T', F') view of channels-last memory.

    The next convolution reads channels-last memory as it is. From conv's own NCHW output,
    AOTInductor converts the layout and the next weight on every call, a strided copy that took
    6 % of the u2pp_conformer encoder's time.
    """
    kh, kw = conv.kernel_size
    sh, sw = conv.stride
    t_out = (xs.size(1) - kh) // sh + 1
    f_out = (xs.size(2) - kw) // sw + 1
    taps = [
        xs[:, i : i + sh * (t_out - 1) + 1 : sh, j : j + sw * (f_out - 1) + 1 : sw]
        for i in range(kh)
        for j in range(kw)
    ]
    y = torch.stack(taps, dim=-1) @ conv.weight.reshape(conv.out_channels, kh * kw).t()
    if conv.bias is not None:
        y = y + conv.bias
    return y.permute(0, 3, 1, 2)


class _EncoderBody(nn.Module):
    """CMVN + subsampling + Conformer blocks + final norm + CTC log-softmax, with positions
    from `sinusoids`."""

    def __init__(self, model: nn.Module):
        super().__init__()
        enc = model.encoder
        # the first Conv2d as a GEMM into channels-last memory (`_single_channel_conv_nhwc`):
        # for AOTInductor; the ONNX export keeps the Conv op, which onnxruntime runs as it is
        self.channels_last_front_end = True
        self.global_cmvn = enc.global_cmvn
        self.embed = enc.embed
        self.encoders = enc.encoders
        self.after_norm = enc.after_norm if enc.normalize_before else None
        self.ctc = model.ctc
        self.register_buffer("div_term", _div_term(enc.output_size()), persistent=False)

    def subsample(self, feats: torch.Tensor) -> torch.Tensor:
        xs = feats if self.global_cmvn is None else self.global_cmvn(feats)
        # Conv2dSubsampling.forward without its table lookup (positions are ours)
        convs = self.embed.conv
        if self.channels_last_front_end and _is_plain_single_channel_conv(convs[0]):
            x = convs[1:](_single_channel_conv_nhwc(convs[0], xs))
        else:
            x = convs(xs.unsqueeze(1))
        b, c, t, f = x.size()
        x = self.embed.out(x.transpose(1, 2).reshape(b, t, c * f))
        if self.embed.out_norm is not None:  # model.stability.embed_norm
            x = self.embed.out_norm(x)
        return x * self.embed.pos_enc.xscale

    def head(self, xs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.after_norm is not None:
            xs = self.after_norm(xs)
        return F.log_softmax(self.ctc.ctc_lo(xs), dim=-1), xs


class EncoderFull(_EncoderBody):
    """Full-context encoder: feats (1, T, F) -> (CTC log posteriors (1, T', V), out (1, T', D)).

    A static-chunk model (`static_chunk_size > 0`, no dynamic chunks) keeps its chunk mask with
    all left chunks, as its PyTorch forward does; every other model attends to all frames.
    """

    def __init__(self, model: nn.Module):
        super().__init__(model)
        enc = model.encoder
        self.static_chunk = 0 if enc.use_dynamic_chunk else int(enc.static_chunk_size)

    def forward(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xs = self.subsample(feats)
        frames = torch.arange(xs.size(1), device=xs.device)
        pos_emb = sinusoids(frames.to(torch.float32), self.div_term)
        if self.static_chunk > 0:
            chunk = torch.div(frames, self.static_chunk, rounding_mode="floor")
            mask = (chunk.unsqueeze(0) <= chunk.unsqueeze(1)).unsqueeze(0)  # (1, T', T')
        else:
            mask = torch.ones(0, 0, 0, dtype=torch.bool, device=xs.device)
        for layer in self.encoders:
            xs, _, _, _ = layer(xs, mask, pos_emb)
        return self.head(xs)


class EncoderChunkStep(_EncoderBody):
    """One streaming step with static shapes (see the module docstring).

    Inputs:
        feats (1, W, F): W = (chunk - 1) * subsampling + right_context + 1 feature frames; a
            short last chunk is zero-padded to W.
        offset (1,) int64: encoder frames emitted before this chunk.
        num_valid (1,) int64: valid output frames of this chunk (`chunk` except at the end).
        att_cache (L, H, C, 2 d_k), C = chunk * left_chunks; zeros at the start.
        cnn_cache (L, 1, D, kernel - 1); zeros at the start.
    Outputs:
        CTC log posteriors (1, chunk, V), encoder output (1, chunk, D), new att_cache, new
        cnn_cache. Rows past num_valid are padding; after a short chunk the caches are stale
        (the stream has ended).
    """

    def __init__(self, model: nn.Module, chunk_size: int, num_left_chunks: int):
        super().__init__(model)
        if chunk_size <= 0 or num_left_chunks <= 0:
            raise ValueError(
                f"a streaming export needs chunk_size > 0 and num_left_chunks > 0, got "
                f"{chunk_size} and {num_left_chunks} (full context: EncoderFull)"
            )
        conv = model.encoder.encoders[0].conv_module if model.encoder.encoders else None
        if conv is not None and conv.lorder == 0:
            raise ValueError(
                "a streaming export needs a causal convolution module (model.encoder.causal=true;"
                " fine-tune with train=streaming_finetune), or export with chunk_size -1"
            )
        self.chunk_size = chunk_size
        self.cache_size = chunk_size * num_left_chunks

    def forward(
        self,
        feats: torch.Tensor,
        offset: torch.Tensor,
        num_valid: torch.Tensor,
        att_cache: torch.Tensor,
        cnn_cache: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        layers = range(len(self.encoders))
        logp, out, new_att, new_cnn = self.step(
            feats,
            offset,
            num_valid,
            [att_cache[i : i + 1] for i in layers],
            [cnn_cache[i] for i in layers],
        )
        return logp, out, torch.cat(new_att, dim=0), torch.stack(new_cnn, dim=0)

    def step(
        self,
        feats: torch.Tensor,
        offset: torch.Tensor,
        num_valid: torch.Tensor,
        att_caches: list[torch.Tensor],
        cnn_caches: list[torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        """The step for B streams, row b at its own position.

        Args: feats (B, W, F); offset, num_valid (B,) int64; per layer att (B, H, C, 2 d_k)
            and cnn (B, D, kernel - 1) caches.
        Returns: CTC log posteriors (B, chunk, V), encoder output (B, chunk, D), per layer
            the new att (B, H, C, 2 d_k) and cnn (B, D, kernel - 1) caches.
        """
        xs = self.subsample(feats)  # (B, chunk, D)
        c, s = self.cache_size, self.chunk_size
        slot = torch.arange(c + s, device=xs.device)
        filled = torch.clamp(offset, max=c).unsqueeze(1)  # cache slots holding real frames
        valid = num_valid.unsqueeze(1)
        keys_valid = ((slot >= c - filled) & (slot < c)) | ((slot >= c) & (slot - c < valid))
        mask = keys_valid.unsqueeze(1)  # (B, 1, C + chunk)
        mask_pad = keys_valid[:, c:].unsqueeze(1)  # (B, 1, chunk)
        positions = (slot + offset.unsqueeze(1) - c).to(torch.float32)  # (B, C + chunk)
        pos_emb = sinusoids(positions, self.div_term)
        new_att, new_cnn = [], []
        for layer, att, cnn in zip(self.encoders, att_caches, cnn_caches, strict=True):
            xs, _, layer_att, layer_cnn = layer(xs, mask, pos_emb, mask_pad, att, cnn)
            new_att.append(layer_att[:, :, s:, :])
            new_cnn.append(layer_cnn)
        logp, out = self.head(xs)
        return logp, out, new_att, new_cnn


class EncoderChunkBatch(EncoderChunkStep):
    """`EncoderChunkStep` for a batch of streams at different positions (dynamic batch B).

    Inputs:
        feats (B, W, F); offset (B,) and num_valid (B,) int64, per stream as in
            EncoderChunkStep.
        att_cache (B, L, H, C, 2 d_k): row b is stream b's (L, H, C, 2 d_k) cache.
        cnn_cache (B, L, D, kernel - 1): row b is stream b's (L, 1, D, kernel - 1) cache
            without its batch axis.
    Outputs:
        CTC log posteriors (B, chunk, V), encoder output (B, chunk, D), new att_cache and
        cnn_cache laid out as the inputs.
    """

    def forward(
        self,
        feats: torch.Tensor,
        offset: torch.Tensor,
        num_valid: torch.Tensor,
        att_cache: torch.Tensor,
        cnn_cache: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        layers = range(len(self.encoders))
        logp, out, new_att, new_cnn = self.step(
            feats,
            offset,
            num_valid,
            [att_cache[:, i] for i in layers],
            [cnn_cache[:, i] for i in layers],
        )
        return logp, out, torch.stack(new_att, dim=1), torch.stack(new_cnn, dim=1)


class RescoringDecoder(nn.Module):
    """Attention-rescoring scores of an n-best list.

    Inputs: encoder_out (1, T, D); hyps (N, L) int64 token ids padded with anything;
    hyps_lens (N,) int64 (L >= 1, lengths may be 0).
    Outputs: (N,) left-to-right and (N,) right-to-left scores, each the sum of token log
    probabilities including eos (zeros when the model has no right decoder).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.left = model.decoder.left_decoder
        self.right = model.decoder.right_decoder
        self.sos = model.sos
        self.eos = model.eos

    def forward(
        self, encoder_out: torch.Tensor, hyps: torch.Tensor, hyps_lens: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        n, width = hyps.shape
        # one memory for the whole n-best: cross-attention keys/values are computed once
        memory = encoder_out
        memory_mask = torch.ones(1, 1, encoder_out.size(1), dtype=torch.bool, device=hyps.device)
        col = torch.arange(width, device=hyps.device).unsqueeze(0)
        lens = hyps_lens.unsqueeze(1)
        pad = torch.where(col < lens, hyps, self.eos)
        sos = torch.full((n, 1), self.sos, dtype=hyps.dtype, device=hyps.device)
        left = self.left(memory, memory_mask, torch.cat([sos, pad], 1), hyps_lens + 1)
        l2r = _sequence_scores(left, pad, hyps_lens, self.eos)
        if self.right is None:
            return l2r, torch.zeros_like(l2r)
        src = lens - 1 - col
        rev = torch.where(src >= 0, pad.gather(1, src.clamp(min=0)), self.eos)
        right = self.right(memory, memory_mask, torch.cat([sos, rev], 1), hyps_lens + 1)
        return l2r, _sequence_scores(right, rev, hyps_lens, self.eos)


def chunk_window(model: nn.Module, chunk_size: int) -> int:
    """Feature frames one streaming step reads: (chunk - 1) * subsampling + right_context + 1."""
    embed = model.encoder.embed
    return (chunk_size - 1) * embed.subsampling_rate + embed.right_context + 1


def subsampled_frames(model: nn.Module, num_feats: int) -> int:
    """Encoder frames the subsampling makes of `num_feats` feature frames (0 if too few)."""
    t = num_feats
    for kernel, stride in model.encoder.embed.layout:
        t = (t - kernel) // stride + 1 if t >= kernel else 0
    return max(t, 0)
