"""tools/compute_wer.py: alignment totals against jiwer, and WeNet's output format."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import jiwer
import pytest
from compute_wer import ErrorCounts, align, count, format_alignment, tokenize

COMPUTE_WER = Path(__file__).resolve().parents[2] / "tools" / "compute_wer.py"


def _random_words(rng: random.Random, vocab: list[str], low: int, high: int) -> list[str]:
    return [rng.choice(vocab) for _ in range(rng.randint(low, high))]


def _perturb(rng: random.Random, words: list[str], vocab: list[str]) -> list[str]:
    """A few random substitutions, deletions and insertions of `words` (never empty)."""
    words = list(words)
    for _ in range(rng.randint(0, 4)):
        op, pos = rng.choice("sdi"), rng.randrange(len(words) + 1)
        if op == "i":
            words.insert(pos, rng.choice(vocab))
        elif pos < len(words) and op == "d":
            del words[pos]
        elif pos < len(words):
            words[pos] = rng.choice(vocab)
    return words or [rng.choice(vocab)]


def _totals(refs: list[str], hyps: list[str], char: bool = False) -> ErrorCounts:
    total = ErrorCounts()
    for ref, hyp in zip(refs, hyps, strict=True):
        total += count(align(tokenize(ref, char), tokenize(hyp, char)))
    return total


def _run_cli(*args: str | Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(COMPUTE_WER), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, check=True)


@pytest.mark.parametrize("seed", range(4))
def test_word_totals_match_jiwer(seed):
    """Per utterance and in total, N/C/S/D/I (not only the error count) equal jiwer's."""
    rng = random.Random(seed)
    vocab = [f"W{i}" for i in range(rng.randint(2, 8))]  # small vocabularies force ties
    refs, hyps = [], []
    for _ in range(300):
        ref = _random_words(rng, vocab, 1, 30)
        # Unrelated pairs, and a few edits of the reference (the realistic case).
        hyp = _random_words(rng, vocab, 1, 30) if rng.random() < 0.5 else _perturb(rng, ref, vocab)
        refs.append(" ".join(ref))
        hyps.append(" ".join(hyp))
        ours, theirs = _totals(refs[-1:], hyps[-1:]), jiwer.process_words(refs[-1], hyps[-1])
        assert (ours.s, ours.d, ours.i) == (
            theirs.substitutions,
            theirs.deletions,
            theirs.insertions,
        ), (refs[-1], hyps[-1])
    total, theirs = _totals(refs, hyps), jiwer.process_words(refs, hyps)
    assert total.n == sum(len(r.split()) for r in refs)
    assert (total.c, total.s, total.d, total.i) == (
        theirs.hits,
        theirs.substitutions,
        theirs.deletions,
        theirs.insertions,
    )
    assert total.rate == pytest.approx(100 * theirs.wer, abs=1e-9)


def test_char_totals_match_jiwer_cer():
    """--char=1 scores non-space characters: jiwer's CER of the space-free strings."""
    rng = random.Random(11)
    refs = [" ".join(_random_words(rng, list("ABCD"), 1, 25)) for _ in range(200)]
    hyps = ["".join(_perturb(rng, list(r), list("ABC D"))) + "D" for r in refs]
    total = _totals(refs, hyps, char=True)
    theirs = jiwer.process_characters(
        [r.replace(" ", "") for r in refs], [h.replace(" ", "") for h in hyps]
    )
    assert (total.s, total.d, total.i) == (
        theirs.substitutions,
        theirs.deletions,
        theirs.insertions,
    )
    assert total.rate == pytest.approx(100 * theirs.cer, abs=1e-9)


def test_alignment_pairs_and_display():
    pairs = align("A BB C".split(), "A X C D".split())
    assert pairs == [("A", "A"), ("BB", "X"), ("C", "C"), (None, "D")]
    assert format_alignment(pairs) == ("A BB C *", "A X  C D")
    assert align([], ["X"]) == [(None, "X")]
    assert align(["X"], []) == [("X", None)]
    assert tokenize("ab c", char=True) == ["A", "B", "C"]


def test_cli_output_format_and_missing_hypotheses(tmp_path):
    ref, hyp = tmp_path / "ref", tmp_path / "hyp"
    ref.write_text("u1 the cat sat\nu2 a dog\nu3 gone away\n")
    hyp.write_text("u1 THE BAT SAT DOWN\nu2 a dog\nu9 extra\n")
    out = _run_cli("--v=1", ref, hyp)
    lines = out.stdout.splitlines()
    assert lines[:4] == [
        "utt: u1",
        "WER: 66.67 % N=3 C=2 S=1 D=0 I=1",
        "lab: THE CAT SAT ****",
        "rec: THE BAT SAT DOWN",
    ]
    assert "Overall -> 57.14 % N=7 C=4 S=1 D=2 I=1" in lines
    assert any(line.startswith("Missing -> 1 of 3") for line in lines)
    assert "1 hypotheses" in out.stderr
    cer = _run_cli("--char=1", "--v=0", ref, hyp)
    assert not cer.stdout.startswith("utt:")
    assert "Overall -> " in cer.stdout and " N=21 " in cer.stdout
