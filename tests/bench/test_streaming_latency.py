"""The streaming latency benchmark on a tiny model and real wav files, through `bin.benchmark`."""

from __future__ import annotations

import json

import numpy as np
import soundfile as sf

from tests.tiny import TINY
from wenet_eff.bin import benchmark


def test_streaming_latency_table_and_json(tmp_path, capsys):
    rng = np.random.default_rng(0)
    with open(tmp_path / "data.list", "w", encoding="utf-8") as f:
        for i, seconds in enumerate((1.3, 2.1)):
            wav = tmp_path / f"u{i}.wav"
            sf.write(wav, (0.1 * rng.standard_normal(int(seconds * 16000))), 16000)
            f.write(json.dumps({"key": f"u{i}", "wav": str(wav), "txt": "a"}) + "\n")
    out = tmp_path / "latency.json"
    result = benchmark.main(
        ["streaming_latency", "--model", "mini", "--threads", "1", "--beam_size", "2",
         "--data_list", str(tmp_path / "data.list"), "--chunks", "4", "16", "-1",
         "--out", str(out), "--override", *TINY, "model.encoder.use_dynamic_chunk=true"]
    )  # fmt: skip
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert result["utterances"] == 2
    rows = {row["chunk"]: row for row in result["results"]}
    assert set(rows) == {4, 16, -1}
    assert [rows[c]["chunk_ms"] for c in (4, 16, -1)] == [160, 640, None]
    assert abs(rows[4]["audio_seconds"] - 3.4) < 1e-6
    for row in rows.values():
        assert row["rtf"] > 0 and row["final_ms"]["p50"] > 0
        assert set(row["hypotheses"]) == {"u0", "u1"}
    # a token is shown after the audio behind it has arrived and been computed on
    assert rows[4]["first_partial_ms"]["p50"] > 0
    assert rows[4]["chunk_compute_ms"]["mean"] > 0
    # full context shows its first token with the final result: after the end of the audio
    assert rows[-1]["first_partial_ms"]["p50"] >= rows[-1]["final_ms"]["p50"]
    table = capsys.readouterr().out
    assert "first partial ms" in table and "full" in table
