"""tools/compare_wer.py: the paired bootstrap of two systems' WERs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from compare_wer import paired_bootstrap

COMPARE_WER = Path(__file__).resolve().parents[2] / "tools" / "compare_wer.py"


def test_identical_systems_cannot_be_told_apart():
    a = [(e, 10) for e in (0, 3, 1, 5, 2, 0, 4, 1)]
    result = paired_bootstrap(a, list(a), num_samples=500)
    assert result["diff"] == 0 and result["ci95"] == [0.0, 0.0]
    assert result["p_b_better"] == result["p_a_better"] == 0  # every draw a tie


def test_a_consistent_improvement_is_significant_and_a_single_lucky_utterance_is_not():
    a = [(3, 10)] * 40
    b = [(2, 10)] * 40  # one error fewer in every utterance
    result = paired_bootstrap(a, b, num_samples=500)
    assert result["wer_a"] == pytest.approx(30.0) and result["wer_b"] == pytest.approx(20.0)
    assert result["diff"] == pytest.approx(10.0) and result["p_b_better"] == 1.0
    assert result["ci95"][0] == pytest.approx(10.0)  # every draw: exactly 10 points better
    # the same total gain from one utterance out of 40: the interval holds 0
    lucky = [(3, 10)] * 39 + [(0, 10)]
    noisy = paired_bootstrap(a, lucky, num_samples=2000, seed=1)
    assert noisy["diff"] == pytest.approx(0.75)
    assert noisy["ci95"][0] == 0.0 < noisy["ci95"][1]
    assert 0.5 < noisy["p_b_better"] < 0.8  # about 1 - e^-1 of draws contain it


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="same, non-empty"):
        paired_bootstrap([(1, 2)], [(1, 2), (0, 3)])
    with pytest.raises(ValueError, match="no tokens"):
        paired_bootstrap([(0, 0)], [(0, 0)])


def test_command_line(tmp_path):
    ref = tmp_path / "ref"
    ref.write_text("u1 the cat sat down\nu2 a dog ran\nu3 hello world\n")
    (tmp_path / "a").write_text("u1 the bat sat\nu2 a dog ran\nu3 hello word\n")
    (tmp_path / "b").write_text("u1 the cat sat down\nu2 a dog ran\n")  # u3 missing: deletions
    out = tmp_path / "cmp.json"
    proc = subprocess.run(
        [sys.executable, str(COMPARE_WER), "--num_samples", "200", "--json", str(out),
         str(ref), str(tmp_path / "a"), str(tmp_path / "b")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    result = json.loads(out.read_text())
    # A: 2 errors in u1 + 1 in u3 = 3 of 9; B: the 2 missing words of u3 = 2 of 9
    assert result["wer_a"] == pytest.approx(100 * 3 / 9)
    assert result["wer_b"] == pytest.approx(100 * 2 / 9)
    assert "A - B: +11.11 absolute, 95 % interval" in proc.stdout
    assert "P(B better)" in proc.stdout and "P(A better)" in proc.stdout
    # u1 (A worse by 2) against u3 (A better by 1): draws go either way, some tie
    assert 0 < result["p_a_better"] < result["p_b_better"] < 1
    assert result["p_a_better"] + result["p_b_better"] < 1
