import random

import pytest
import torch

from wenet_eff.decode.context import ContextGraph, split_phrase
from wenet_eff.decode.ctc import ctc_prefix_beam_search

UNITS = {"<blank>": 0, "<unk>": 1, "\u2581": 2, "A": 3, "B": 4, "D": 5, "E": 6, "<sos/eos>": 7}


def _boost(graph: ContextGraph, tokens) -> float:
    state, total = graph.initial(), 0.0
    for t in tokens:
        state, delta = graph.extend(state, t)
        total += delta
    return total + graph.final(state)


def _naive_boost(phrases, score, tokens) -> float:
    """Reference by brute force over token tuples: the match is the longest suffix of the
    prefix (so far) that is a phrase prefix, reached one token at a time; see the module doc."""
    prefixes = {tuple(p[:i]) for p in phrases for i in range(len(p) + 1)}
    ends = {tuple(p) for p in phrases}

    def unfinished(match):
        kept = max((i for i in range(len(match) + 1) if match[:i] in ends), default=0)
        return score * (len(match) - kept)

    match, total = (), 0.0
    for t in tokens:
        longer = (*match, t)
        if longer in prefixes:
            total += score
            match = longer
            continue
        new = next(longer[i:] for i in range(1, len(longer) + 1) if longer[i:] in prefixes)
        total += score * len(new) - unfinished(match)
        match = new
    return total - unfinished(match)


def test_boost_per_matched_token_given_back_when_the_match_breaks():
    graph = ContextGraph([[3, 4], [1, 2], [1, 2, 5, 6], [7, 8, 9], [8, 9, 6], []], 2.0)
    assert graph.num_phrases == 5
    state, delta = graph.extend(graph.initial(), 3)
    assert delta == 2.0 and graph.final(state) == -2.0
    assert _boost(graph, [3, 4]) == 4.0
    assert _boost(graph, [3, 10, 4]) == 0.0
    assert _boost(graph, [10, 3, 3, 4, 10]) == 4.0
    assert _boost(graph, [1, 2, 5, 10]) == 4.0  # "1 2" completed inside a longer match stays
    assert _boost(graph, [1, 2, 5, 6]) == 8.0
    assert _boost(graph, [7, 8, 9, 6]) == 12.0  # overlapping occurrences both count
    assert _boost(graph, [7, 8, 6]) == 0.0


@pytest.mark.parametrize("seed", range(5))
def test_automaton_equals_brute_force(seed):
    rng = random.Random(seed)
    phrases = [[rng.randint(1, 4) for _ in range(rng.randint(1, 4))] for _ in range(6)]
    graph = ContextGraph(phrases, 1.5)
    for _ in range(200):
        tokens = [rng.randint(1, 5) for _ in range(rng.randint(0, 12))]
        assert _boost(graph, tokens) == pytest.approx(_naive_boost(phrases, 1.5, tokens)), (
            phrases,
            tokens,
        )


def test_split_phrase_greedy_longest_match():
    units = {"<blank>": 0, "\u2581": 1, "A": 2, "B": 3, "\u2581AB": 4, "AB": 5, "é": 6}
    assert split_phrase(" AB  B", units, False) == [4, 1, 3]
    assert split_phrase("BAB é", units, False) == [3, 5, 1, 6]  # the leading "▁" dropped
    assert split_phrase("ABC", units, False) is None
    assert split_phrase("AB A", units, True) == [5, 2]
    assert split_phrase("AB C", units, True) is None


def test_from_file_skips_phrases_no_unit_covers(tmp_path, caplog):
    path = tmp_path / "hotwords.txt"
    path.write_text("BED\n\nBEXD\nA BAD\n")
    graph = ContextGraph.from_file(path, UNITS, False, 1.0)
    assert graph.num_phrases == 2
    assert "hotwords.txt:3" in caplog.text and "BEXD" in caplog.text
    path.write_text("XYZ\n")
    with pytest.raises(ValueError, match="hotwords.txt: no phrase"):
        ContextGraph.from_file(path, UNITS, False, 1.0)


def rare_word_posteriors() -> torch.Tensor:
    """CTC posteriors of "BAD" (A at 0.55) against the rarer "BED" (E at 0.45): B - A|E - D
    (the other units below 1e-3, without ties, so every top-k is unambiguous)."""
    probs = torch.rand(5, len(UNITS), generator=torch.Generator().manual_seed(0)) * 1e-3
    for t, unit in enumerate(["B", "<blank>", None, "<blank>", "D"]):
        if unit is not None:
            probs[t, UNITS[unit]] = 1.0
    probs[2, UNITS["A"]], probs[2, UNITS["E"]] = 0.55, 0.45
    return probs.log().log_softmax(-1)


def test_hotword_turns_a_rare_word():
    """The rare word wins only with biasing; a partial match ("BE" of "BEE") gains nothing."""
    log_probs = rare_word_posteriors()
    names = {i: u for u, i in UNITS.items()}

    def best(context):
        hyp = ctc_prefix_beam_search(log_probs, beam_size=4, context=context)[0]
        return "".join(names[t] for t in hyp.tokens), hyp

    assert best(None)[0] == "BAD"
    text, hyp = best(ContextGraph([[UNITS[c] for c in "BED"]], 1.0))
    assert text == "BED" and hyp.extras["context"] == 3.0
    assert hyp.score == pytest.approx(hyp.extras["ctc"] + 3.0)
    assert best(ContextGraph([[UNITS[c] for c in "BEE"]], 1.0))[0] == "BAD"
