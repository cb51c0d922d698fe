"""CTC decoding: greedy search and prefix beam search (the blank id is the model's)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

NEG_INF = -float("inf")


@dataclass
class Hypothesis:
    """A decoding result: token ids (no blank/sos/eos) and its log score."""

    tokens: list[int]
    score: float = 0.0
    # per-method extras, e.g. the CTC score of a rescored hypothesis
    extras: dict[str, float] = field(default_factory=dict)


def ctc_greedy_search(ctc_log_probs: torch.Tensor, lengths: torch.Tensor, blank: int = 0):
    """Best path: argmax per frame, merge repeats, drop blanks.

    Args:
        ctc_log_probs: (B, T, V) log posteriors; lengths: (B,) valid frames.
    Returns:
        list of B Hypothesis (score = sum of the best-path log probabilities).
    """
    best_logp, best = ctc_log_probs.max(dim=-1)
    hyps = []
    for b in range(best.size(0)):
        n = int(lengths[b])
        path = best[b, :n]
        keep = torch.ones_like(path, dtype=torch.bool)
        keep[1:] = path[1:] != path[:-1]
        keep &= path != blank
        hyps.append(Hypothesis(path[keep].tolist(), float(best_logp[b, :n].sum())))
    return hyps


def _logaddexp(a: float, b: float) -> float:
    if a == NEG_INF:
        return b
    if b == NEG_INF:
        return a
    hi, lo = (a, b) if a > b else (b, a)
    return hi + math.log1p(math.exp(lo - hi))


def _accumulate(beam: dict, prefix: tuple[int, ...], pb: float, pnb: float) -> None:
    cur = beam.setdefault(prefix, [NEG_INF, NEG_INF])
    cur[0] = _logaddexp(cur[0], pb)
    cur[1] = _logaddexp(cur[1], pnb)


class CtcPrefixBeam:
    """Incremental CTC prefix beam search: `advance` with each new block of frames, read the
    n-best at any time (streaming partial results); over the whole utterance it is exactly
    `ctc_prefix_beam_search`.

    Each prefix keeps two log scores: paths ending in blank (pb) and in its last token (pnb).
    With `beam_size` >= the number of distinct prefixes and all tokens expanded, the scores are
    the exact total probability of each labelling (tests check this by enumeration).

    With a word LM (`lm`, shallow fusion) and context biasing (`context`, hotwords) prefixes
    are ranked by CTC score + the fused scores of their tokens so far (see
    `wenet_eff.decode.lm.WordLmFusion` and `wenet_eff.decode.context.ContextGraph`, each with
    `initial`, `extend`, `final` and a `name`); the CTC scores stay exact per prefix.

    Args:
        beam_size: prefixes kept per frame.
        blank: the blank id.
        token_beam: tokens expanded per frame (0: beam_size).
        lm: optional `WordLmFusion`.
        context: optional `ContextGraph`.
        min_token_logp: tokens whose log posterior in a frame is below this are not expanded
            (the frame's best token always is); None: no floor. Most frames of a trained model
            have one or two tokens above log(1e-4), so a floor there makes wide beams cheap.
    """

    def __init__(
        self,
        beam_size: int,
        blank: int = 0,
        token_beam: int = 0,
        lm=None,
        min_token_logp: float | None = None,
        context=None,
    ):
        self.beam_size = beam_size
        self.blank = blank
        self.token_beam = token_beam or beam_size
        if min_token_logp is not None and min_token_logp > 0:
            raise ValueError(
                f"min_token_logp={min_token_logp} is a log probability floor: it must be <= 0 "
                "(e.g. -9.2 for p >= 1e-4)"
            )
        self.min_token_logp = min_token_logp
        self.scorers = [s for s in (lm, context) if s is not None]
        self.beam: dict[tuple[int, ...], tuple[float, float]] = {(): (0.0, NEG_INF)}
        # per prefix in the beam: each scorer's state and accumulated fused score
        self.fused: dict[tuple[int, ...], tuple[tuple, tuple[float, ...]]] = {
            (): (tuple(s.initial() for s in self.scorers), (0.0,) * len(self.scorers))
        }
        self.frames = 0
        # frame at which each prefix's last token was (most recently) emitted: token timing
        self.emitted_at: dict[tuple[int, ...], int] = {(): -1}

    def advance(self, ctc_log_probs: torch.Tensor) -> None:
        """Consume (T, V) log posteriors of the next T frames."""
        blank = self.blank
        logp = ctc_log_probs.float()
        top_logp, top_ids = logp.topk(min(self.token_beam, logp.size(1)), dim=-1)
        if self.min_token_logp is None:
            keep = [top_logp.size(1)] * top_logp.size(0)
        else:  # topk is sorted: each frame keeps its first `keep` tokens (at least one)
            keep = (top_logp >= self.min_token_logp).sum(-1).clamp(min=1).tolist()
        beam = self.beam
        for frame_logp, frame_ids, n in zip(top_logp.tolist(), top_ids.tolist(), keep, strict=True):
            frame_logp, frame_ids = frame_logp[:n], frame_ids[:n]
            nxt: dict[tuple[int, ...], list[float]] = {}
            for prefix, (pb, pnb) in beam.items():
                total = _logaddexp(pb, pnb)
                last = prefix[-1] if prefix else None
                for p, s in zip(frame_logp, frame_ids, strict=True):
                    if s == blank:
                        _accumulate(nxt, prefix, total + p, NEG_INF)
                    elif s == last:
                        _accumulate(nxt, prefix, NEG_INF, pnb + p)  # a repeat collapses
                        if pb != NEG_INF:  # blank-separated: a new token
                            _accumulate(nxt, prefix + (s,), NEG_INF, pb + p)
                    else:
                        _accumulate(nxt, prefix + (s,), NEG_INF, total + p)
            ranked = sorted(
                nxt.items(),
                key=lambda kv: _logaddexp(*kv[1]) + self._fused_score(kv[0]),
                reverse=True,
            )
            beam = {prefix: (v[0], v[1]) for prefix, v in ranked[: self.beam_size]}
            if self.scorers:
                self.fused = {prefix: self.fused[prefix] for prefix in beam}
            for prefix in beam:
                if prefix not in self.emitted_at:
                    self.emitted_at[prefix] = self.frames
            self.frames += 1
        self.beam = beam
        # forget timings of prefixes that left the beam (keep their ancestors: beam members')
        live = {prefix[:n] for prefix in beam for n in range(len(prefix) + 1)}
        self.emitted_at = {p: f for p, f in self.emitted_at.items() if p in live}

    def _fused_score(self, prefix: tuple[int, ...]) -> float:
        """Fused score of `prefix` (0 without scorers); computed from its parent's states."""
        if not self.scorers:
            return 0.0
        cached = self.fused.get(prefix)
        if cached is None:
            states, scores = self.fused[prefix[:-1]]
            steps = [s.extend(st, prefix[-1]) for s, st in zip(self.scorers, states, strict=True)]
            cached = self.fused[prefix] = (
                tuple(st for st, _ in steps),
                tuple(acc + delta for acc, (_, delta) in zip(scores, steps, strict=True)),
            )
        return sum(cached[1])

    def nbest(self) -> list[Hypothesis]:
        """The current hypotheses, best first, score = log P(prefix so far); with scorers,
        score = CTC + their fused scores with the utterance ending here (extras `ctc` and
        each scorer's name: `lm`, `context`)."""
        hyps = []
        for prefix, (pb, pnb) in self.beam.items():
            ctc = _logaddexp(pb, pnb)
            if not self.scorers:
                hyps.append(Hypothesis(list(prefix), ctc))
                continue
            states, scores = self.fused[prefix]
            totals = {
                s.name: acc + s.final(st)
                for s, st, acc in zip(self.scorers, states, scores, strict=True)
            }
            hyps.append(
                Hypothesis(list(prefix), ctc + sum(totals.values()), {"ctc": ctc, **totals})
            )
        return sorted(hyps, key=lambda h: h.score, reverse=True)

    def token_frames(self, tokens: list[int]) -> list[int]:
        """For a prefix in the beam, the frame at which each of its tokens first appeared."""
        return [self.emitted_at.get(tuple(tokens[: n + 1]), -1) for n in range(len(tokens))]


def ctc_prefix_beam_search(
    ctc_log_probs: torch.Tensor,
    beam_size: int,
    blank: int = 0,
    token_beam: int = 0,
    lm=None,
    min_token_logp: float | None = None,
    context=None,
) -> list[Hypothesis]:
    """Prefix beam search over one utterance (see CtcPrefixBeam).

    Args:
        ctc_log_probs: (T, V) log posteriors of one utterance (valid frames only).
        beam_size: prefixes kept per frame.
        token_beam: tokens expanded per frame (0: beam_size).
        lm: optional `WordLmFusion` (shallow fusion of a word n-gram LM).
        min_token_logp: per-frame floor on the expanded tokens' log posteriors (None: none).
        context: optional `ContextGraph` (context biasing).
    Returns:
        up to beam_size Hypothesis, best first, score = log P(prefix) (+ the fused scores).
    """
    search = CtcPrefixBeam(beam_size, blank, token_beam, lm, min_token_logp, context)
    search.advance(ctc_log_probs)
    return search.nbest()
