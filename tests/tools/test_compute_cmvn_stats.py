"""tools/compute_cmvn_stats.py: statistics equal a direct accumulation; bad audio is skipped."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from compute_cmvn_stats import compute_stats

from wenet_eff.data.audio import load_audio
from wenet_eff.data.cmvn import CmvnStats
from wenet_eff.data.features import compute_fbank

TOOLS = Path(__file__).resolve().parents[2] / "tools"
FBANK = {"num_mel_bins": 80, "frame_length": 25, "frame_shift": 10}


@pytest.fixture
def entries(tmp_path: Path) -> list[dict]:
    rng = np.random.default_rng(0)
    out = []
    for i, seconds in enumerate((0.5, 0.8, 0.3)):
        path = tmp_path / f"u{i}.wav"
        sf.write(path, 0.1 * rng.standard_normal(round(seconds * 16000)), 16000)
        out.append({"key": f"u{i}", "wav": str(path), "txt": "X"})
    out.append({"key": "cut", "wav": out[1]["wav"], "txt": "X", "start": 0.1, "end": 0.4})
    out.append({"key": "gone", "wav": str(tmp_path / "gone.wav"), "txt": "X"})
    return out


def test_stats_equal_direct_accumulation(entries):
    stats, skipped = compute_stats(entries, FBANK, num_workers=0)
    expected = CmvnStats()
    for entry in entries[:4]:
        wav, sr = load_audio(entry["wav"], entry.get("start"), entry.get("end"))
        expected.add(compute_fbank(wav, sr, **FBANK))
    assert stats.frame_num == expected.frame_num == 48 + 78 + 28 + 28
    np.testing.assert_allclose(stats.mean_stat, expected.mean_stat, rtol=1e-9)
    np.testing.assert_allclose(stats.var_stat, expected.var_stat, rtol=1e-9)
    assert len(skipped) == 1 and skipped[0].startswith("gone: ")


def test_cli_with_workers_writes_wenet_json(entries, tmp_path):
    data_list = tmp_path / "data.list"
    data_list.write_text("".join(json.dumps(e) + "\n" for e in entries))
    out = subprocess.run(
        [
            sys.executable,
            TOOLS / "compute_cmvn_stats.py",
            "--num_workers",
            "2",
            "--max_utts",
            "4",
            "--in_data_list",
            data_list,
            "--out_cmvn",
            tmp_path / "global_cmvn",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        check=True,
    )
    cmvn = json.loads((tmp_path / "global_cmvn").read_text())
    assert set(cmvn) == {"mean_stat", "var_stat", "frame_num"}
    assert cmvn["frame_num"] == 182 and len(cmvn["mean_stat"]) == 80
    assert "from 4 utterances (0 skipped)" in out.stderr
