"""The training-throughput benchmark on a tiny model."""

from __future__ import annotations

import json
import math

from tests.train.helpers import TINY_MODEL
from wenet_eff.bench import train_throughput


def test_writes_json_and_prints_a_table(tmp_path, capsys):
    out = tmp_path / "tp.json"
    argv = ["--model", "mini", "--threads", "1", "--batch_size", "2", "--frames", "120",
            "--tokens", "4", "--vocab_size", "20", "--repeats", "2", "--out", str(out),
            "--override", *TINY_MODEL]  # fmt: skip
    result = train_throughput.main(argv)
    assert json.loads(out.read_text()) == result
    assert result["threads"] == 1 and result["frames"] == 120
    assert result["frames_per_second"] == 240 / result["seconds_per_step"]
    assert all(math.isfinite(loss) for loss in result["losses"])
    assert "frames/s" in capsys.readouterr().out
