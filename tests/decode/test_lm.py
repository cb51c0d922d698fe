import math

import pytest
import torch

from tests.decode.test_ctc import _exhaustive
from wenet_eff.data.tokenizer import CharTokenizer
from wenet_eff.decode.ctc import ctc_prefix_beam_search
from wenet_eff.decode.lm import EOS, UNK, NgramLM, WordLmFusion, train_kneser_ney

CORPUS = [["A", "B"], ["A"], ["B", "A"]]
SENTENCES = [
    "PRESS ONE FOR SALES",
    "PRESS TWO FOR SUPPORT",
    "PLEASE HOLD",
    "PRESS ONE TO HEAR YOUR MESSAGES",
    "YOUR CALL IS IMPORTANT",
    "PLEASE PRESS TWO",
]


def test_kneser_ney_matches_hand_computed_values():
    lm = train_kneser_ney(CORPUS, order=2)
    # unigrams: continuation counts A 2, B 2, </s> 2 -> D = 0.1 (clipped), gamma = 0.05 over
    # the 4 words of the open vocabulary {A, B, </s>, <unk>}
    p_b = (2 - 0.1) / 6 + 0.05 / 4
    assert math.exp(lm.logprob([], "B")) == pytest.approx(p_b)
    assert math.exp(lm.logprob([], UNK)) == pytest.approx(0.05 / 4)
    # bigrams: counts of counts n1 = 4, n2 = 2 -> D = 0.5; context A: B 1, </s> 2
    assert math.exp(lm.logprob(["A"], "B")) == pytest.approx(0.5 / 3 + (1 / 3) * p_b)
    assert math.exp(lm.logprob(["A"], UNK)) == pytest.approx((1 / 3) * 0.05 / 4)
    assert math.exp(lm.logprob(["A"], "NEVER_SEEN")) == pytest.approx((1 / 3) * 0.05 / 4)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_kneser_ney_distributions_sum_to_one(order):
    lm = train_kneser_ney([s.split() for s in SENTENCES], order)
    words = sorted(lm.vocab) + [EOS, UNK]
    contexts = [
        (),
        ("<s>",),
        ("<s>", "PRESS"),
        ("PRESS", "ONE"),
        ("ONE", "FOR", "SALES"),
        ("UNSEEN", "WORDS"),
    ]
    for ctx in contexts:
        total = sum(math.exp(lm.logprob(ctx, w)) for w in words)
        assert total == pytest.approx(1.0, abs=1e-9), ctx


def test_arpa_round_trip(tmp_path):
    lm = train_kneser_ney([s.split() for s in SENTENCES], 3)
    lm.write_arpa(tmp_path / "lm.arpa")
    back = NgramLM.read_arpa(tmp_path / "lm.arpa")
    assert back.order == 3 and back.vocab == lm.vocab
    for s in SENTENCES + ["PRESS SALES HOLD", "UNKNOWN WORDS HERE"]:
        assert back.sentence_logprob(s.split()) == pytest.approx(
            lm.sentence_logprob(s.split()), abs=1e-4
        )


def test_read_arpa_errors_name_the_file(tmp_path):
    lm = train_kneser_ney(CORPUS, 2)
    lm.write_arpa(tmp_path / "lm.arpa")
    text = (tmp_path / "lm.arpa").read_text()
    (tmp_path / "short.arpa").write_text(text.replace("ngram 2=", "ngram 2=9"))
    with pytest.raises(ValueError, match="short.arpa: header says"):
        NgramLM.read_arpa(tmp_path / "short.arpa")
    (tmp_path / "plain.txt").write_text("hello world\n")
    with pytest.raises(ValueError, match="plain.txt"):
        NgramLM.read_arpa(tmp_path / "plain.txt")
    lines = [ln for ln in text.splitlines() if "\t<unk>" not in ln]
    (tmp_path / "closed.arpa").write_text("\n".join(lines).replace("ngram 1=5", "ngram 1=4"))
    with pytest.raises(ValueError, match="no <unk>"):
        NgramLM.read_arpa(tmp_path / "closed.arpa")


def _char_fusion(lm, weight, bonus):
    units = {"<blank>": 0, "<unk>": 1, "A": 2, "B": 3, "\u2581": 4, "<sos/eos>": 5}
    tok = CharTokenizer(units)
    return tok, WordLmFusion(lm, tok.word_pieces(), weight, bonus)


def _fused(tok, lm, tokens, weight, bonus):
    """Independent reference: the LM score of the decoded words, weighted, plus the bonus."""
    words = tok.detokenize(tokens)[0].split()
    return weight * lm.sentence_logprob(words) + bonus * len(words)


def test_fusion_scores_words_as_the_lm_does():
    lm = train_kneser_ney([["AB", "A"], ["A"], ["B", "AB"]], 2)
    tok, fusion = _char_fusion(lm, 0.7, 1.5)
    for text in ["AB A", "A", "BA AB", "BB A B", " A  B "]:
        tokens = tok.tokenize(text)[1]
        state, score = fusion.initial(), 0.0
        for t in tokens:
            state, delta = fusion.extend(state, t)
            score += delta
        score += fusion.final(state)
        assert score == pytest.approx(_fused(tok, lm, tokens, 0.7, 1.5)), text


@pytest.mark.parametrize("seed", range(3))
def test_prefix_beam_search_with_lm_equals_exhaustive_search(seed):
    """With a beam holding every prefix, fusion changes only the ranking: each labelling's
    score is its exact CTC probability plus the LM score of its words."""
    lm = train_kneser_ney([["AB", "A"], ["A"], ["B", "AB"]], 2)
    tok, fusion = _char_fusion(lm, 0.8, 0.5)
    torch.manual_seed(seed)
    log_probs = torch.randn(5, 5).mul(2).log_softmax(-1)
    exact = _exhaustive(log_probs)
    hyps = ctc_prefix_beam_search(log_probs, beam_size=len(exact), lm=fusion)
    assert {tuple(h.tokens) for h in hyps} == exact.keys()
    expected = {k: v + _fused(tok, lm, list(k), 0.8, 0.5) for k, v in exact.items()}
    for h in hyps:
        assert h.extras["ctc"] == pytest.approx(exact[tuple(h.tokens)], abs=1e-5)
        assert h.score == pytest.approx(expected[tuple(h.tokens)], abs=1e-5)
    assert tuple(hyps[0].tokens) == max(expected, key=expected.get)


def test_lm_moves_a_misspelling_to_the_word():
    """Acoustically "AA" is a little likelier than "AB" (a word); the LM turns the choice."""
    lm = train_kneser_ney([["AB"], ["AB", "AB"], ["B"]], 2)
    tok, fusion = _char_fusion(lm, 1.0, 0.0)
    probs = torch.full((3, 6), 1e-6)
    probs[0, 2] = 1.0  # A
    probs[1, 0] = 1.0  # blank
    probs[2, 2], probs[2, 3] = 0.55, 0.45  # A or B
    log_probs = probs.log().log_softmax(-1)
    plain = ctc_prefix_beam_search(log_probs, beam_size=4)[0]
    fused = ctc_prefix_beam_search(log_probs, beam_size=4, lm=fusion)[0]
    assert tok.detokenize(plain.tokens)[0] == "AA"
    assert tok.detokenize(fused.tokens)[0] == "AB"
