"""The stability-monitor overhead benchmark on a tiny model, through `bin.benchmark`."""

from __future__ import annotations

import json

from tests.tiny import TINY, tiny_model
from wenet_eff.bin import benchmark
from wenet_eff.nn.linear import weight_layers


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
    # a monitored step measured every layer: one RMS each, max and mean per role, one max
    # logit per attention layer and their maximum
    roles = {layer.role for _, layer in weight_layers(tiny_model())}
    assert result["values_per_monitored_step"] == (
        result["monitored_layers"] + 2 * len(roles) + result["attention_layers"] + 1
    )
    assert result["seconds_plain_step"] > 0 and set(result["overhead_by_interval"]) == {
        "1", "10", "50", "100"
    }  # fmt: skip
    assert "every 50" in capsys.readouterr().out
