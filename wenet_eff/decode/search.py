"""One entry point that runs the requested decoding methods on an encoded batch."""

from __future__ import annotations

import torch

from wenet_eff.decode.attention import attention_beam_search, attention_rescoring
from wenet_eff.decode.ctc import Hypothesis, ctc_greedy_search, ctc_prefix_beam_search

__all__ = ["Hypothesis", "decode_batch"]


def decode_batch(
    model,
    methods: list[str],
    encoder_out: torch.Tensor,
    encoder_mask: torch.Tensor,
    beam_size: int,
    ctc_weight: float,
    reverse_weight: float,
    lm=None,
    min_token_logp: float | None = None,
    context=None,
) -> dict[str, list[Hypothesis]]:
    """Run `methods` on encoder output (B, T, D) with mask (B, 1, T), sharing work between
    them (the CTC posteriors and the prefix-beam n-best feed both CTC search and rescoring).
    `lm` (a `WordLmFusion`) and `context` (a `ContextGraph`, hotwords) are fused into the
    prefix beam search and kept in rescoring; `min_token_logp` is the prefix search's
    per-frame token floor (see CtcPrefixBeam)."""
    lengths = encoder_mask.squeeze(1).sum(1)
    blank = model.special.blank
    results: dict[str, list[Hypothesis]] = {}
    ctc_log_probs = model.ctc.log_softmax(encoder_out)
    nbest = None
    if {"ctc_prefix_beam_search", "attention_rescoring"} & set(methods):
        nbest = [
            ctc_prefix_beam_search(
                ctc_log_probs[b, : int(lengths[b])],
                beam_size,
                blank,
                lm=lm,
                min_token_logp=min_token_logp,
                context=context,
            )
            for b in range(encoder_out.size(0))
        ]
    for method in methods:
        if method == "ctc_greedy_search":
            results[method] = ctc_greedy_search(ctc_log_probs, lengths, blank)
        elif method == "ctc_prefix_beam_search":
            results[method] = [hyps[0] for hyps in nbest]
        elif method == "attention":
            results[method] = attention_beam_search(model, encoder_out, encoder_mask, beam_size)
        elif method == "attention_rescoring":
            results[method] = attention_rescoring(
                model, nbest, encoder_out, encoder_mask, ctc_weight, reverse_weight
            )
    return results
