"""The streaming latency benchmark on a tiny model and real wav files, through `bin.benchmark`."""

from __future__ import annotations

import json

import numpy as np
import soundfile as sf
import torch

import wenet_eff
from tests.tiny import TINY
from wenet_eff.bin import benchmark
from wenet_eff.config import save_config
from wenet_eff.decode.streaming import EndpointConfig, StreamingSession

STREAMING = ["model.encoder.causal=true", "model.encoder.use_dynamic_chunk=true"]


def test_streaming_latency_decodes_each_utterance_as_a_fresh_stream(tmp_path, capsys):
    cfg = wenet_eff.load_config("mini", [*TINY, *STREAMING])
    save_config(cfg, tmp_path / "train.yaml")
    torch.manual_seed(0)
    model = wenet_eff.build_model(cfg).eval()
    with torch.no_grad():  # sharper CTC posteriors than a fresh init: tokens get shown
        model.ctc.ctc_lo.weight.mul_(8.0)
    torch.save(model.state_dict(), tmp_path / "model.pt")
    rng = np.random.default_rng(0)
    wavs = {}
    with open(tmp_path / "data.list", "w", encoding="utf-8") as f:
        for i, seconds in enumerate((1.3, 2.1)):
            wavs[f"u{i}"] = (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32)
            sf.write(tmp_path / f"u{i}.wav", wavs[f"u{i}"], 16000, subtype="FLOAT")
            entry = {"key": f"u{i}", "wav": str(tmp_path / f"u{i}.wav"), "txt": "a"}
            f.write(json.dumps(entry) + "\n")
    out = tmp_path / "latency.json"
    result = benchmark.main(
        ["streaming_latency", "--config", str(tmp_path / "train.yaml"), "--checkpoint",
         str(tmp_path / "model.pt"), "--threads", "1", "--beam_size", "2", "--data_list",
         str(tmp_path / "data.list"), "--chunks", "4", "-1", "--out", str(out)]
    )  # fmt: skip
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    rows = {row["chunk"]: row for row in result["results"]}
    assert [rows[c]["chunk_ms"] for c in (4, -1)] == [160, None]
    assert abs(rows[4]["audio_seconds"] - 3.4) < 1e-6
    # the hypotheses: each utterance alone, whole, in a session of its own (last one first)
    for chunk, row in rows.items():
        for key in ("u1", "u0"):
            session = StreamingSession(
                model, chunk_size=chunk, beam_size=2, endpoint=EndpointConfig(rules=[])
            )
            session.accept_waveform(wavs[key])
            tokens = session.finalize().tokens
            assert tokens and row["hypotheses"][key] == tokens
    # full context shows its first token with the final result: after the end of the audio
    assert rows[-1]["first_partial_ms"]["p50"] >= rows[-1]["final_ms"]["p50"]
    table = capsys.readouterr().out
    assert "first partial ms" in table and "full" in table
