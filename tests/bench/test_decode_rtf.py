"""The decoding-RTF benchmark on a tiny model, through the `bin.benchmark` dispatcher."""

from __future__ import annotations

import json

import pytest

from tests.tiny import TINY
from wenet_eff.bin import benchmark


def test_decode_rtf_writes_json_and_table(tmp_path, capsys):
    out = tmp_path / "rtf.json"
    result = benchmark.main(
        [
            "decode_rtf",
            "--model",
            "mini",
            "--threads",
            "1",
            "--seconds",
            "2",
            "--repeats",
            "1",
            "--beam_size",
            "2",
            "--out",
            str(out),
            "--override",
            *TINY,
        ]  # fmt: skip
    )
    assert json.loads(out.read_text()) == result
    stages = [row["stage"] for row in result["results"]]
    assert stages[0] == "encoder" and "attention_rescoring" in stages
    for row in result["results"]:
        assert row["rtf"] == pytest.approx(row["seconds"] / 2.0)
    assert result["threads"] == 1 and result["random_weights"]
    assert "RTF" in capsys.readouterr().out


def test_unknown_benchmark_is_an_error():
    with pytest.raises(SystemExit, match="usage"):
        benchmark.main(["no_such_bench"])
