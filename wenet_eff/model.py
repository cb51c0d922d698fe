"""The U2++ ASR model: Conformer encoder, CTC head and bidirectional attention decoder.

One class serves training (`forward` -> losses), Python decoding (`decode`) and export.
`build_model(cfg)` builds it from a config; `load_model(config, checkpoint)` from an
experiment's `train.yaml` and a checkpoint (or a packed model), as decoding, export, packing
and the benchmarks do.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import torch
import torch.nn as nn
from omegaconf import DictConfig

from wenet_eff import compress
from wenet_eff.compress.masks import apply_masks, load_masks
from wenet_eff.compress.pack import is_packed, read_packed, unpack_into
from wenet_eff.config import (
    load_config,
    merge_checked,
    resolve_special_tokens,
    resolve_vocab_size,
    schema,
)
from wenet_eff.data.batching import IGNORE_ID
from wenet_eff.data.cmvn import load_cmvn
from wenet_eff.data.tokenizer import SpecialTokens
from wenet_eff.decode.search import decode_batch
from wenet_eff.nn.cmvn import GlobalCMVN
from wenet_eff.nn.ctc import CTC
from wenet_eff.nn.decoder import BiTransformerDecoder
from wenet_eff.nn.encoder import ConformerEncoder
from wenet_eff.nn.label_smoothing import LabelSmoothingLoss
from wenet_eff.nn.moe import moe_layers

DECODE_METHODS = ("ctc_greedy_search", "ctc_prefix_beam_search", "attention", "attention_rescoring")


def add_sos_eos(ys_pad: torch.Tensor, sos: int, eos: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoder input (sos + y, padded with eos) and target (y + eos, padded with -1).

    Args:
        ys_pad: (B, L) padded with IGNORE_ID.
    Returns:
        ys_in (B, L + 1), ys_out (B, L + 1).
    """
    valid = ys_pad != IGNORE_ID
    lens = valid.sum(1)
    batch = ys_pad.size(0)
    body = ys_pad.masked_fill(~valid, eos)
    ys_in = torch.cat([ys_pad.new_full((batch, 1), sos), body], dim=1)
    ys_out = torch.cat(
        [ys_pad.masked_fill(~valid, IGNORE_ID), ys_pad.new_full((batch, 1), IGNORE_ID)], 1
    )
    ys_out.scatter_(1, lens.unsqueeze(1), eos)
    return ys_in, ys_out


def reverse_pad_list(ys_pad: torch.Tensor, ys_lens: torch.Tensor) -> torch.Tensor:
    """Reverse each sequence within its length; padding stays IGNORE_ID. (B, L) -> (B, L)."""
    length = ys_pad.size(1)
    pos = torch.arange(length, device=ys_pad.device).unsqueeze(0)
    src = (ys_lens.unsqueeze(1) - 1 - pos).clamp(min=0)
    out = ys_pad.gather(1, src)
    return out.masked_fill(pos >= ys_lens.unsqueeze(1), IGNORE_ID)


class ASRModel(nn.Module):
    """U2++: joint CTC / attention training; CTC prefix search + attention rescoring decoding.

    Args:
        vocab_size: V.
        encoder, decoder, ctc: the parts (the CTC head holds the blank id).
        special: the special-token ids (`sos` / `eos` start and end the decoder's sequences;
            `blank` must be the CTC head's).
        ctc_weight: loss = ctc_weight * ctc + (1 - ctc_weight) * att.
        reverse_weight: weight of the right-to-left decoder in the attention loss.
        lsm_weight: label smoothing.
        length_normalized_loss: normalise the attention loss by tokens instead of utterances.
    """

    def __init__(
        self,
        vocab_size: int,
        encoder: ConformerEncoder,
        decoder: BiTransformerDecoder,
        ctc: CTC,
        special: SpecialTokens,
        ctc_weight: float = 0.3,
        reverse_weight: float = 0.3,
        lsm_weight: float = 0.1,
        length_normalized_loss: bool = False,
        moe_load_balance_weight: float = 0.0,
        moe_z_loss_weight: float = 0.0,
    ):
        super().__init__()
        if not 0.0 <= ctc_weight <= 1.0:
            raise ValueError(f"model.ctc_weight={ctc_weight} must be in [0, 1]")
        if ctc.blank_id != special.blank:
            raise ValueError(f"the CTC head's blank {ctc.blank_id} is not <blank> {special}")
        self.vocab_size = vocab_size
        self.special = special
        self.sos, self.eos = special.sos, special.eos
        self.ignore_id = IGNORE_ID
        self.ctc_weight = ctc_weight
        self.reverse_weight = reverse_weight
        self.encoder = encoder
        self.decoder = decoder
        self.ctc = ctc
        self.criterion_att = LabelSmoothingLoss(
            vocab_size, IGNORE_ID, lsm_weight, length_normalized_loss
        )
        self.moe_load_balance_weight = moe_load_balance_weight
        self.moe_z_loss_weight = moe_z_loss_weight
        self.quant_norm_decay = False  # set by build_model when QAT adds a norm-decay loss

    def forward(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        text: torch.Tensor,
        text_lengths: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Training losses.

        Args:
            speech: (B, T, D) features; speech_lengths: (B,).
            text: (B, L) token ids padded with -1; text_lengths: (B,).
        Returns:
            {"loss", "loss_ctc", "loss_att"} scalars (per utterance, WeNet's normalisation);
            a weight of 0 leaves that part out (reported as None).
        """
        encoder_out, encoder_mask = self.encoder(speech, speech_lengths, decoding_chunk_size=0)
        loss_ctc = loss_att = None
        if self.ctc_weight > 0.0:
            hlens = encoder_mask.squeeze(1).sum(1)
            loss_ctc = self.ctc(encoder_out, hlens, text, text_lengths)
        if self.ctc_weight < 1.0:
            loss_att = self._att_loss(encoder_out, encoder_mask, text, text_lengths)
        if loss_ctc is None:
            loss = loss_att
        elif loss_att is None:
            loss = loss_ctc
        else:
            loss = self.ctc_weight * loss_ctc + (1 - self.ctc_weight) * loss_att
        out = {"loss": loss, "loss_ctc": loss_ctc, "loss_att": loss_att}
        if self.moe_load_balance_weight > 0 or self.moe_z_loss_weight > 0:
            aux = self.moe_aux_loss()
            out["loss_moe"] = aux
            out["loss"] = out["loss"] + aux
        if self.quant_norm_decay:
            reg = compress.regularization(self)
            if reg is not None:
                out["loss_quant"] = reg
                out["loss"] = out["loss"] + reg
        return out

    def moe_aux_loss(self) -> torch.Tensor:
        """Weighted MoE load-balancing + z losses of the last training forward, mean over layers."""
        layers = [m for _, m in moe_layers(self) if m.aux]
        if not layers:
            return self.ctc.ctc_lo.weight.new_zeros(())
        balance = torch.stack([m.aux["load_balance"] for m in layers]).mean()
        z_loss = torch.stack([m.aux["z_loss"] for m in layers]).mean()
        return self.moe_load_balance_weight * balance + self.moe_z_loss_weight * z_loss

    def expert_usage(self) -> dict[str, torch.Tensor]:
        """Fraction of frames routed to each expert in the last forward, per MoE layer (sum k)."""
        return {name: m.usage for name, m in moe_layers(self) if m.usage is not None}

    def _att_loss(self, encoder_out, encoder_mask, ys_pad, ys_lens) -> torch.Tensor:
        ys_in, ys_out = add_sos_eos(ys_pad, self.sos, self.eos)
        r_ys_in, r_ys_out = add_sos_eos(reverse_pad_list(ys_pad, ys_lens), self.sos, self.eos)
        left, right = self.decoder(
            encoder_out, encoder_mask, ys_in, ys_lens + 1, r_ys_in, self.reverse_weight
        )
        loss = self.criterion_att(left, ys_out)
        if right is not None:
            r_loss = self.criterion_att(right, r_ys_out)
            loss = (1 - self.reverse_weight) * loss + self.reverse_weight * r_loss
        return loss

    @torch.no_grad()
    def decode(
        self,
        methods: list[str],
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        beam_size: int = 10,
        decoding_chunk_size: int = -1,
        num_decoding_left_chunks: int = -1,
        ctc_weight: float = 0.0,
        reverse_weight: float = 0.0,
        lm=None,
        min_token_logp: float | None = None,
        context=None,
    ) -> dict[str, list]:
        """Decode a batch with one or more methods, sharing one encoder pass.

        Args:
            methods: any of DECODE_METHODS.
            speech: (B, T, D); speech_lengths: (B,).
            beam_size: beam for prefix / attention search (n-best size for rescoring).
            decoding_chunk_size / num_decoding_left_chunks: streaming-equivalent chunk mask
                (-1: full context).
            ctc_weight: weight of the CTC prefix score in attention rescoring.
            reverse_weight: weight of the right-to-left decoder in attention rescoring.
            lm: a word n-gram LM fused into prefix beam search and kept in rescoring
                (`wenet_eff.decode.lm.WordLmFusion`; None: no LM).
            min_token_logp: prefix beam search expands only tokens whose log posterior in a
                frame reaches this (the best always; None: all of the top beam_size).
            context: context biasing (hotwords) in prefix beam search, kept in rescoring
                (`wenet_eff.decode.context.ContextGraph`; None: none).
        Returns:
            {method: [Hypothesis per utterance]} (see wenet_eff.decode.search.Hypothesis).
        """
        unknown = [m for m in methods if m not in DECODE_METHODS]
        if unknown:
            raise ValueError(f"unknown decode mode(s) {unknown}; choose from {DECODE_METHODS}")
        encoder_out, encoder_mask = self.encoder(
            speech, speech_lengths, decoding_chunk_size, num_decoding_left_chunks
        )
        return decode_batch(
            self,
            methods,
            encoder_out,
            encoder_mask,
            beam_size,
            ctc_weight,
            reverse_weight,
            lm,
            min_token_logp,
            context,
        )

    def text_ids(self) -> torch.Tensor:
        """(N,) int64: the ids that can stand in a transcript (all but blank, sos and eos)."""
        special = {self.special.blank, self.sos, self.eos}
        return torch.tensor([t for t in range(self.vocab_size) if t not in special])

    def may_leave_parameters_unused(self) -> bool:
        """Whether a training forward can leave parameters without gradient (the CTC head or the
        decoders at a 0/1 ctc_weight, the right-to-left decoder at reverse_weight 0): DDP then
        has to search the graph for them every step."""
        unused_right = self.reverse_weight == 0.0 and self.decoder.right_decoder is not None
        return self.ctc_weight in (0.0, 1.0) or unused_right

    def num_params(self) -> dict[str, int]:
        """Parameter counts: `total`, and `active` (parameters used per frame: only k of the
        E experts of each MoE layer count; equal to total for a dense model)."""
        total = sum(p.numel() for p in self.parameters())
        inactive = 0
        for _, layer in moe_layers(self):
            per_expert = sum(p.numel() for p in layer.experts[0].parameters())
            inactive += (layer.n_expert - layer.k) * per_expert
        return {"total": total, "active": total - inactive}


def build_model(cfg: DictConfig) -> ASRModel:
    """Build the model of `cfg.model` (vocab size resolved from the tokenizer when 0; the
    special-token ids by `resolve_special_tokens`).

    Global CMVN statistics are read from `cfg.cmvn.file` when set; the buffers exist either way
    only when a file is given, as in WeNet.
    """
    vocab_size = resolve_vocab_size(cfg)
    special = resolve_special_tokens(cfg)
    mcfg = cfg.model
    global_cmvn = None
    if cfg.cmvn.file:
        mean, istd = load_cmvn(cfg.cmvn.file)
        if mean.numel() != mcfg.input_dim:
            raise ValueError(
                f"{cfg.cmvn.file}: CMVN has {mean.numel()} dims, model.input_dim={mcfg.input_dim}"
            )
        global_cmvn = GlobalCMVN(mean, istd)
    st = mcfg.get("stability")  # absent from configs saved before the option existed
    capacity = mcfg.moe.capacity_factor
    encoder = ConformerEncoder(
        mcfg.input_dim,
        mcfg.encoder,
        global_cmvn,
        st if st is not None and st.encoder else None,
        capacity,
    )
    d = encoder.output_size()
    decoder = BiTransformerDecoder(
        vocab_size, d, mcfg.decoder, st if st is not None and st.decoder else None, capacity
    )
    model = ASRModel(
        vocab_size,
        encoder,
        decoder,
        CTC(vocab_size, d, special.blank),
        special,
        mcfg.ctc_weight,
        mcfg.reverse_weight,
        mcfg.lsm_weight,
        mcfg.length_normalized_loss,
        mcfg.moe.load_balance_weight,
        mcfg.moe.z_loss_weight,
    )
    if "compress" in cfg:
        compress.apply(model, cfg)
        model.quant_norm_decay = cfg.compress.quant.enabled and cfg.compress.quant.norm_decay > 0
    return model


def load_model(
    config: str | os.PathLike,
    checkpoint: str | os.PathLike,
    overrides: Sequence[str] = (),
    masks: str = "",
) -> tuple[DictConfig, ASRModel]:
    """(cfg, model in eval mode) from a config and a state_dict checkpoint (strict), or from a
    packed model (`bin.pack` output: its own config; `config` is then not read).

    Args:
        config: a `train.yaml` (ours or WeNet's) or a packaged config name (`load_config`).
        checkpoint: `N.pt` / `final.pt` / `avg_K.pt`, or a packed file.
        overrides: `load_config` overrides (`compress=qat_int4` on a float checkpoint: PTQ).
        masks: a mask file multiplied into the checkpoint's weights (a shared base model plus
            one mask per domain, S3-Router).
    """
    if is_packed(checkpoint):
        if overrides or masks:
            raise ValueError(
                f"--override and --masks do not apply to a packed model ({checkpoint})"
            )
        return load_packed(checkpoint)
    cfg = load_config(config, list(overrides))
    model = build_model(cfg)
    if compress.load_weights(model, checkpoint, "--checkpoint"):
        logging.info(
            "%s: float weights, quantizer/sparsity state derived from them (post-training)",
            checkpoint,
        )
    if masks:
        apply_masks(model, load_masks(masks)[0], masks)
    return cfg, model.eval()


def load_packed(path: str | os.PathLike) -> tuple[DictConfig, ASRModel]:
    """(cfg, model in eval mode) serving the stored integers of a packed file (`bin.pack`)."""
    packed = read_packed(path)
    cfg = merge_checked(schema(), packed["config"], str(path))
    cfg.cmvn.file = ""  # the statistics are in the file
    model = build_model(cfg)
    unpack_into(model, packed, path)
    return cfg, model.eval()
