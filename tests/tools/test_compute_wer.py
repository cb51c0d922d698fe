"""tools/compute_wer.py: alignment totals against jiwer, WeNet's tokens (--char=1 splits CJK
characters only) and output format, and the reference files it refuses."""

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


def _run_cli(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(COMPUTE_WER), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, check=check)


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
    """--char=1 on Chinese scores the characters: jiwer's CER of the space-free strings."""
    rng = random.Random(11)
    chars = list("我你他好")
    refs = [" ".join(_random_words(rng, chars, 1, 25)) for _ in range(200)]
    hyps = ["".join(_perturb(rng, list(r), [*chars[:3], " "])) + "好" for r in refs]
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


def test_char_mode_splits_cjk_characters_and_keeps_other_words_whole():
    """WeNet's rule: Lo characters one by one; a word ends at whitespace or a non-ASCII
    character; listed punctuation is dropped where a token would start, a word's trailing ASCII
    punctuation stays; `<...>` tags go in both modes."""
    assert tokenize("我爱 Python编程！", char=True) == ["我", "爱", "PYTHON", "编", "程"]
    assert tokenize("很好, OK? 《书》", char=True) == ["很", "好", "OK?", "书"]
    assert tokenize("<unk><noise>你好 hello", char=True) == ["你", "好", "HELLO"]
    assert tokenize("naïve", char=True) == ["NA", "ÏVE"]  # WeNet splits at a non-ASCII letter
    assert tokenize("the <unk> cat<noise>", char=False) == ["THE", "CAT"]
    assert tokenize("Ab", char=True, case_sensitive=True) == ["Ab"]


def test_alignment_pairs_and_display():
    pairs = align("A BB C".split(), "A X C D".split())
    assert pairs == [("A", "A"), ("BB", "X"), ("C", "C"), (None, "D")]
    assert format_alignment(pairs) == ("A BB C *", "A X  C D")
    assert align([], ["X"]) == [(None, "X")]
    assert align(["X"], []) == [("X", None)]


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
    words = _run_cli("--char=1", "--v=0", ref, hyp)  # English under --char=1: still words
    assert not words.stdout.startswith("utt:")
    assert "Overall -> 57.14 % N=7 C=4 S=1 D=2 I=1" in words.stdout


def test_cli_as_wenet_recipes_call_it_on_mixed_chinese_english(tmp_path):
    """`compute-wer.py --char=1 --v=1 ref hyp` as WeNet's run.sh calls it; tab or space after
    the key. The counts are worked out by hand (and agree with WeNet's tools/compute-wer.py)."""
    ref, hyp = tmp_path / "text", tmp_path / "hyp"
    ref.write_text(
        "u1 我爱 Python 编程\nu2\t今天 weather 很好, OK?\nu3 <unk>你好<noise> hello\n",
        encoding="utf-8",
    )
    hyp.write_text(
        "u1 我 爱 python编程！\nu2 今天 whether 很 好 ok\nu3\t你好 hello world\n", encoding="utf-8"
    )
    # WeNet's name, run as its run.sh runs it (python tools/compute-wer.py)
    cmd = [sys.executable, str(COMPUTE_WER.parent / "compute-wer.py"), "--char=1", "--v=1"]
    proc = subprocess.run([*cmd, ref, hyp], capture_output=True, text=True, check=True)
    lines = proc.stdout.splitlines()
    assert lines[lines.index("utt: u1") + 1] == "WER: 0.00 % N=5 C=5 S=0 D=0 I=0"
    # 今 天 WEATHER 很 好 OK? vs 今 天 WHETHER 很 好 OK
    assert lines[lines.index("utt: u2") + 1 :][:3] == [
        "WER: 33.33 % N=6 C=4 S=2 D=0 I=0",
        "lab: 今 天 WEATHER 很 好 OK?",
        "rec: 今 天 WHETHER 很 好 OK",
    ]
    assert lines[lines.index("utt: u3") + 1] == "WER: 33.33 % N=3 C=3 S=0 D=0 I=1"
    assert "Overall -> 21.43 % N=14 C=12 S=2 D=0 I=1" in lines


def test_tab_separated_files_split_at_the_key(tmp_path):
    ref, hyp = tmp_path / "ref", tmp_path / "hyp"
    ref.write_text("u1\tthe cat sat on the mat\nu2\t\ta dog\n")
    hyp.write_text("u1\tthe cat sat on a mat\nu2 a dog\n")
    assert "Overall -> 12.50 % N=8 C=7 S=1 D=0 I=0" in _run_cli("--v=0", ref, hyp).stdout


@pytest.mark.parametrize(
    "ref_text, message",
    [
        ("", "{ref}: no `key text` line"),
        ("\n  \n", "{ref}: no `key text` line"),
        ("u1 the cat\nu2\n", "{ref}:2: expected 'key value', got 'u2'"),
        ("the cat sat\na dog\n", "none of the 2 keys of {ref} (e.g. 'the') is a key of {hyp}"),
    ],
)
def test_unusable_references_are_errors_naming_the_file(tmp_path, ref_text, message):
    ref, hyp = tmp_path / "ref", tmp_path / "hyp"
    ref.write_text(ref_text)
    hyp.write_text("u1 the cat\nu2 a dog\n")
    proc = _run_cli("--char=1", "--v=1", ref, hyp, check=False)
    assert proc.returncode != 0 and "Overall" not in proc.stdout
    assert message.format(ref=ref, hyp=hyp) in proc.stderr
