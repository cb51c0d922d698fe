"""Attention-decoder search: autoregressive beam search and rescoring of CTC n-best lists."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from wenet_eff.decode.ctc import Hypothesis
from wenet_eff.nn.mask import make_pad_mask


@torch.no_grad()
def attention_beam_search(
    model, encoder_out: torch.Tensor, encoder_mask: torch.Tensor, beam_size: int
) -> list[Hypothesis]:
    """Left-to-right beam search with the attention decoder (batched over utterances x beam).

    A finished hypothesis (ending in eos) keeps its score: its only continuation is eos at 0.

    Args:
        model: ASRModel (uses decoder.forward_one_step, sos/eos).
        encoder_out: (B, T, D); encoder_mask: (B, 1, T).
    Returns:
        B Hypothesis, score = sum of token log probabilities incl. eos.
    """
    batch = encoder_out.size(0)
    n = batch * beam_size
    # each utterance's encoder output serves its beam_size consecutive rows (not copied)
    memory, memory_mask = encoder_out, encoder_mask
    hyps = torch.full((n, 1), model.sos, dtype=torch.long, device=encoder_out.device)
    # only the first beam entry starts alive, so the first step does not pick duplicates
    scores = torch.tensor([0.0] + [-float("inf")] * (beam_size - 1), device=encoder_out.device)
    scores = scores.repeat(batch).unsqueeze(1)  # (n, 1)
    finished = torch.zeros(n, dtype=torch.bool, device=encoder_out.device)
    cache = None
    vocab = model.vocab_size
    max_len = max(int(encoder_mask.sum(-1).max()), 1)
    for _ in range(max_len):
        logp, cache = model.decoder.forward_one_step(memory, memory_mask, hyps, cache)
        # finished hypotheses may only emit eos, at no cost
        ended = torch.full_like(logp, -float("inf"))
        ended[:, model.eos] = 0.0
        logp = torch.where(finished.unsqueeze(1), ended, logp)
        cand = (scores + logp).view(batch, beam_size * vocab)
        top_scores, top_idx = cand.topk(beam_size, dim=-1)  # (B, beam)
        src = (top_idx // vocab) + torch.arange(batch, device=hyps.device).unsqueeze(1) * beam_size
        src, tok = src.view(-1), (top_idx % vocab).view(-1)
        hyps = torch.cat([hyps[src], tok.unsqueeze(1)], dim=1)
        cache = [c[src] for c in cache]
        scores = top_scores.view(-1, 1)
        finished = tok == model.eos
        if bool(finished.view(batch, beam_size)[:, 0].all()):
            break
    scores = scores.view(batch, beam_size)
    best = scores.argmax(dim=-1)
    results = []
    for b in range(batch):
        seq = hyps[b * beam_size + int(best[b]), 1:].tolist()
        if model.eos in seq:
            seq = seq[: seq.index(model.eos)]
        results.append(Hypothesis(seq, float(scores[b, best[b]])))
    return results


def _sequence_scores(logits: torch.Tensor, targets: torch.Tensor, lens: torch.Tensor, eos: int):
    """Sum of log p(token) over each sequence plus log p(eos) after it.

    Args: logits (N, L+1, V); targets (N, L) padded arbitrarily; lens (N,).
    Returns: (N,) scores.
    """
    logp = F.log_softmax(logits.float(), dim=-1)
    n, width = targets.shape
    tok = torch.cat([targets, targets.new_zeros(n, 1)], dim=1)
    tok.scatter_(1, lens.unsqueeze(1), eos)
    picked = logp.gather(2, tok.unsqueeze(2)).squeeze(2)  # (N, L+1)
    keep = ~make_pad_mask(lens + 1, width + 1)
    return (picked * keep).sum(1)


@torch.no_grad()
def attention_rescoring(
    model,
    nbest: list[list[Hypothesis]],
    encoder_out: torch.Tensor,
    encoder_mask: torch.Tensor,
    ctc_weight: float,
    reverse_weight: float,
) -> list[Hypothesis]:
    """Rescore each utterance's CTC n-best with both attention decoders.

    score = (1 - reverse_weight) * l2r + reverse_weight * r2l + ctc_weight * ctc
    (+ lm + context).

    Args:
        nbest: per utterance, CTC prefix-beam hypotheses (score = CTC log prob; with a fused
            LM or context biasing, extras `ctc`, `lm`, `context`, and the fused scores are
            added as they are).
        encoder_out: (B, T, D); encoder_mask: (B, 1, T).
    Returns:
        the best Hypothesis per utterance (extras: ctc, att, fused = lm + context).
    """
    counts = [len(h) for h in nbest]
    if not any(counts):
        return [Hypothesis([]) for _ in nbest]
    device = encoder_out.device
    # every utterance gets `per` rows (padded with empty hypotheses), so its encoder output
    # serves its rows as they are: the decoders' keys/values are computed once per utterance
    per = max(counts)
    flat = [h for hyps in nbest for h in [*hyps, *[Hypothesis([])] * (per - len(hyps))]]
    memory, memory_mask = encoder_out, encoder_mask
    lens = torch.tensor([len(h.tokens) for h in flat], device=device)
    width = max(int(lens.max()), 1)
    # padded with eos, built here and copied to the device once (one copy per row would sync)
    pad = torch.tensor([[*h.tokens, *[model.eos] * (width - len(h.tokens))] for h in flat])
    rev = torch.tensor([[*h.tokens[::-1], *[model.eos] * (width - len(h.tokens))] for h in flat])
    pad, rev = pad.to(device), rev.to(device)
    sos = pad.new_full((len(flat), 1), model.sos)
    ys_in = torch.cat([sos, pad], dim=1)
    r_ys_in = torch.cat([sos, rev], dim=1)
    left, right = model.decoder(memory, memory_mask, ys_in, lens + 1, r_ys_in, reverse_weight)
    att = _sequence_scores(left, pad, lens, model.eos)
    if right is not None:
        att = (1 - reverse_weight) * att + reverse_weight * _sequence_scores(
            right, rev, lens, model.eos
        )
    ctc = torch.tensor([h.extras.get("ctc", h.score) for h in flat], device=device)
    fused = [h.extras.get("lm", 0.0) + h.extras.get("context", 0.0) for h in flat]
    fused = torch.tensor(fused, device=device)
    total = att + ctc_weight * ctc + fused
    results = []
    for b, count in enumerate(counts):
        if count == 0:
            results.append(Hypothesis([]))
            continue
        start = b * per
        j = start + int(total[start : start + count].argmax())
        results.append(
            Hypothesis(
                flat[j].tokens,
                float(total[j]),
                {"ctc": float(ctc[j]), "att": float(att[j]), "fused": float(fused[j])},
            )
        )
    return results
