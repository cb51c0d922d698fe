import itertools
import math

import pytest
import torch

from wenet_eff.decode.ctc import ctc_greedy_search, ctc_prefix_beam_search


def _exhaustive(log_probs: torch.Tensor, blank: int = 0, allowed=None) -> dict[tuple, float]:
    """log P(labelling) by summing every alignment path (only through `allowed[t][s]`)."""
    frames, vocab = log_probs.shape
    totals: dict[tuple, float] = {}
    for path in itertools.product(range(vocab), repeat=frames):
        if allowed is not None and not all(allowed[t][s] for t, s in enumerate(path)):
            continue
        labels, prev = [], None
        for s in path:
            if s != blank and s != prev:
                labels.append(s)
            prev = s
        score = sum(float(log_probs[t, s]) for t, s in enumerate(path))
        key = tuple(labels)
        totals[key] = float(
            torch.logaddexp(torch.tensor(totals.get(key, -math.inf)), torch.tensor(score))
        )
    return totals


@pytest.mark.parametrize("seed", range(4))
def test_prefix_beam_search_equals_exhaustive_search(seed):
    torch.manual_seed(seed)
    log_probs = torch.randn(5, 3).mul(2).log_softmax(-1)
    exact = _exhaustive(log_probs)
    hyps = ctc_prefix_beam_search(log_probs, beam_size=len(exact))
    got = {tuple(h.tokens): h.score for h in hyps}
    assert got.keys() == exact.keys()
    for key, score in exact.items():
        assert got[key] == pytest.approx(score, abs=1e-5)
    best = max(exact, key=exact.get)
    assert tuple(hyps[0].tokens) == best


@pytest.mark.parametrize("seed", range(3))
def test_token_floor_sums_only_paths_through_tokens_above_it(seed):
    torch.manual_seed(seed)
    log_probs = torch.randn(5, 3).mul(2).log_softmax(-1)
    floor = -1.5
    best = log_probs.argmax(-1)
    allowed = [
        [float(log_probs[t, s]) >= floor or s == int(best[t]) for s in range(3)] for t in range(5)
    ]
    assert not all(all(row) for row in allowed)  # the floor removes some tokens
    exact = _exhaustive(log_probs, allowed=allowed)
    hyps = ctc_prefix_beam_search(log_probs, beam_size=100, min_token_logp=floor)
    got = {tuple(h.tokens): h.score for h in hyps}
    assert got.keys() == exact.keys()
    for key, score in exact.items():
        assert got[key] == pytest.approx(score, abs=1e-5)
    no_floor = ctc_prefix_beam_search(log_probs, beam_size=100, min_token_logp=-math.inf)
    assert len(no_floor) == len(_exhaustive(log_probs)) > len(hyps)


def test_positive_token_floor_is_refused():
    with pytest.raises(ValueError, match="min_token_logp=2.0"):
        ctc_prefix_beam_search(torch.zeros(3, 4).log_softmax(-1), beam_size=2, min_token_logp=2.0)


def test_small_beam_keeps_best_prefix_of_exhaustive_search():
    torch.manual_seed(7)
    log_probs = torch.randn(6, 3).mul(3).log_softmax(-1)
    exact = _exhaustive(log_probs)
    hyps = ctc_prefix_beam_search(log_probs, beam_size=4)
    assert tuple(hyps[0].tokens) == max(exact, key=exact.get)


@pytest.mark.parametrize("seed", range(5))
def test_beam_one_prefix_search_equals_greedy(seed):
    torch.manual_seed(seed)
    log_probs = torch.randn(40, 6).mul(2).log_softmax(-1)
    greedy = ctc_greedy_search(log_probs.unsqueeze(0), torch.tensor([40]))[0]
    beam = ctc_prefix_beam_search(log_probs, beam_size=1)[0]
    assert beam.tokens == greedy.tokens
    assert beam.score == pytest.approx(greedy.score, abs=1e-4)


def test_greedy_respects_lengths_and_merges_repeats():
    log_probs = torch.full((1, 6, 4), -10.0)
    for t, s in enumerate([1, 1, 0, 1, 2, 3]):
        log_probs[0, t, s] = 0.0
    assert ctc_greedy_search(log_probs, torch.tensor([5]))[0].tokens == [1, 1, 2]
