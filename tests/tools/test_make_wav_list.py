"""tools/make_wav_list.py: every entry becomes a 16 kHz WAV file (kept when it already is one)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import soundfile as sf

from tests.tools.conftest import REPO


def test_make_wav_list(tmp_path):
    rng = np.random.default_rng(0)
    audio = (0.1 * rng.standard_normal(32000)).astype(np.float32)
    sf.write(tmp_path / "a.wav", audio, 16000, subtype="PCM_16")
    sf.write(tmp_path / "b.flac", audio, 16000, subtype="PCM_16")
    sf.write(tmp_path / "c.wav", audio[::2], 8000, subtype="PCM_16")
    sf.write(tmp_path / "d.ogg", audio, 16000, format="OGG", subtype="OPUS")
    entries = [
        {"key": "a", "wav": str(tmp_path / "a.wav"), "txt": "A"},
        {"key": "b", "wav": str(tmp_path / "b.flac"), "txt": "B"},
        {"key": "c", "wav": str(tmp_path / "c.wav"), "txt": "C"},
        {"key": "d", "wav": str(tmp_path / "d.ogg"), "txt": "D", "start": 0.5, "end": 1.5},
        {"key": "e", "wav": str(tmp_path / "a.wav"), "txt": "E", "start": 0.25},
        {"key": "gone", "wav": str(tmp_path / "gone.flac"), "txt": "G"},
    ]
    (tmp_path / "data.list").write_text("".join(json.dumps(e) + "\n" for e in entries))
    proc = subprocess.run(
        [sys.executable, REPO / "tools" / "make_wav_list.py", "--num_threads", "2",
         tmp_path / "data.list", tmp_path / "wavs", tmp_path / "out.list"],
        capture_output=True, text=True, env={"PYTHONPATH": f"{REPO}:{REPO / 'tools'}"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    out = {e["key"]: e for e in map(json.loads, (tmp_path / "out.list").read_text().splitlines())}
    assert list(out) == ["a", "b", "c", "d", "e"]
    assert out["a"] == entries[0]  # already a 16 kHz wav: kept
    assert "skipped gone:" in proc.stderr and "4 written as WAV" in proc.stderr
    for key, samples in (("b", 32000), ("c", 32000), ("d", 16000), ("e", 28000)):
        assert out[key]["wav"] == str(tmp_path / "wavs" / f"{key}.wav")
        assert "start" not in out[key] and "end" not in out[key]
        info = sf.info(out[key]["wav"])
        assert (info.samplerate, info.subtype, info.frames) == (16000, "PCM_16", samples)
    flac, _ = sf.read(out["b"]["wav"], dtype="float32")
    np.testing.assert_allclose(flac, audio, atol=1 / 32768)
