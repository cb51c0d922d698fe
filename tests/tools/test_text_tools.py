"""tools/text2token.py, tools/make_units.py and the mini recipe's WER table."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from wenet_eff.data.tokenizer import CharTokenizer, read_units

REPO = Path(__file__).resolve().parents[2]
TEXT = "u1 HELLO WORLD\nu2 IT'S A TEST\n"


def _tool(name: str, *args: str | Path, stdin: str | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, REPO / "tools" / name, *args]
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, check=True)


def test_text2token_char_keeps_key_and_marks_spaces():
    out = _tool("text2token.py", "-s", "1", "-", stdin=TEXT)
    assert out.stdout.splitlines() == [
        "u1 H E L L O ▁ W O R L D",
        "u2 I T ' S ▁ A ▁ T E S T",
    ]
    spaced = _tool("text2token.py", "-s", "1", "--space", "<space>", "-", stdin="k A B\n")
    assert spaced.stdout == "k A <space> B\n"


def test_char_units_cover_what_the_tokenizer_produces(tmp_path):
    (tmp_path / "text").write_text(TEXT)
    _tool("make_units.py", "--token_type", "char", tmp_path / "text", tmp_path / "units.txt")
    units = read_units(tmp_path / "units.txt")
    symbols = sorted(units, key=units.get)
    assert symbols[:3] == ["<blank>", "<unk>", "<sos/eos>"]  # WeNet's current layout
    tokenizer = CharTokenizer(units, normalize="english")
    for line in TEXT.splitlines():
        tokens, ids = tokenizer.tokenize(line.split(maxsplit=1)[1])
        assert units["<unk>"] not in ids and tokens


def test_bpe_units_and_model(tmp_path):
    lines = [f"u{i} THE {w} IS ON THE TABLE" for i, w in enumerate("CAT DOG CUP PEN BOX".split())]
    (tmp_path / "text").write_text("\n".join(lines) + "\n")
    prefix = tmp_path / "bpe20"
    _tool("make_units.py", "--token_type", "bpe", "--nbpe", "20", "--bpe_model_prefix", prefix,
          tmp_path / "text", tmp_path / "units.txt")  # fmt: skip
    assert (tmp_path / "bpe20.model").is_file()
    units = read_units(tmp_path / "units.txt")
    assert len(units) == 20 - 3 + 3  # pieces minus <unk>/<s>/</s>, plus blank/unk/sos-eos
    out = _tool("text2token.py", "-s", "1", "--bpe_model", tmp_path / "bpe20.model", "-",
                stdin="k THE CAT\n")  # fmt: skip
    assert out.stdout.startswith("k ▁")


def test_wer_table_collects_overall_lines(tmp_path):
    for test_set, wer in (("test", "1.50"), ("test_real", "40.00")):
        for mode in ("ctc_greedy_search", "attention"):
            result = tmp_path / test_set / mode
            result.mkdir(parents=True)
            (result / "wer").write_text(
                f"utt: x\n{'=' * 75}\nOverall -> {wer} % N=200 C=197 S=2 D=1 I=0\n{'=' * 75}\n"
            )
    script = REPO / "tools" / "wer_table.py"
    out = subprocess.run(
        [
            sys.executable,
            script,
            "--test_sets",
            "test test_real",
            "--modes",
            "ctc_greedy_search attention",
            tmp_path,
        ],  # fmt: skip
        capture_output=True,
        text=True,
        check=True,
    )
    table = (tmp_path / "wer_table.md").read_text()
    assert out.stdout == table
    assert "| ctc_greedy_search | 1.50 | 40.00 |" in table
    results = json.loads((tmp_path / "wer_table.json").read_text())["results"]
    expected = {"wer": 40.0, "n": 200, "c": 197, "s": 2, "d": 1, "i": 0}
    assert results["test_real"]["attention"] == expected
