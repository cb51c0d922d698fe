"""The stability-monitor overhead benchmark on a tiny model, through `bin.benchmark`."""

from __future__ import annotations

import json

import pytest

from tests.tiny import TINY
from wenet_eff.bin import benchmark


def test_monitor_overhead_writes_json_and_table(tmp_path, capsys):
    out = tmp_path / "monitor.json"
    result = benchmark.main(
        [
            "monitor_overhead",
            "--threads",
            "1",
            "--batch_size",
            "2",
            "--frames",
            "100",
            "--tokens",
            "5",
            "--warmup",
            "1",
            "--repeats",
            "3",
            "--out",
            str(out),
            "--override",
            *TINY,
        ]  # fmt: skip
    )
    assert json.loads(out.read_text()) == result
    # every weight layer and attention module of the tiny model is measured
    assert result["monitored_layers"] > 20 and result["attention_layers"] == 6
    assert result["values_per_monitored_step"] > result["monitored_layers"]
    extra, plain = result["extra_seconds_per_monitored_step"], result["seconds_plain_step"]
    for k, overhead in result["overhead_by_interval"].items():
        assert overhead == pytest.approx(extra / (int(k) * plain))
    assert "every 50" in capsys.readouterr().out
