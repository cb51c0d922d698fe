"""tools/compute_cmvn_stats.py: statistics equal a direct accumulation; audio is resampled to the
training rate, and audio below the minimum rate or unreadable is skipped; WeNet's command line
(a WeNet train.yaml, a wav.scp, segmented or not) and ours (a recipe config, a data.list)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from compute_cmvn_stats import compute_stats, read_scp

from wenet_eff.data.audio import load_audio, resample
from wenet_eff.data.cmvn import CmvnStats
from wenet_eff.data.features import compute_fbank

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / "tools"
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
    assert len(skipped) == 1 and skipped[0].startswith("gone: missing_file: ")


def test_audio_is_resampled_to_the_training_rate_and_low_rates_skipped(entries, tmp_path):
    wav, sr = load_audio(entries[1]["wav"])
    sf.write(tmp_path / "u48k.wav", resample(wav, sr, 48000), 48000, subtype="FLOAT")
    sf.write(tmp_path / "u8k.wav", resample(wav, sr, 8000), 8000)
    at_48k = [{"key": "u48k", "wav": str(tmp_path / "u48k.wav"), "txt": "X"}]
    low = {"key": "u8k", "wav": str(tmp_path / "u8k.wav"), "txt": "X"}

    ref, _ = compute_stats([entries[1]], FBANK)
    stats, skipped = compute_stats([*at_48k, low], FBANK, sample_rate=16000, min_sample_rate=16000)
    own_rate, _ = compute_stats(at_48k, FBANK, sample_rate=48000)

    assert stats.frame_num == ref.frame_num == own_rate.frame_num == 78
    # Mean log-mel energies agree except in the top 3 of 80 bins (> ~7.5 kHz), where the
    # resamplers' anti-aliasing transition band removes part of the white noise's energy.
    diff = np.abs(stats.mean_stat - ref.mean_stat) / 78
    assert diff[:77].max() < 0.01
    assert (np.abs(own_rate.mean_stat - ref.mean_stat) / 78).min() > 1.0  # what resampling fixes
    reason = f"sample_rate_too_low: {low['wav']}: 8000 Hz is below min_sample_rate 16000 Hz"
    assert skipped == [f"u8k: {reason}"]
    stats, skipped = compute_stats([low], FBANK, min_sample_rate=8000)
    assert skipped == [] and stats.frame_num == 78


def _cli(*args: object) -> subprocess.CompletedProcess:
    """Run the tool as WeNet's run.sh does: an executable (`#!/usr/bin/env python3`)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    cmd = [TOOLS / "compute_cmvn_stats.py", *map(str, args)]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_cli_with_workers_and_a_recipe_config_writes_wenet_json(entries, tmp_path):
    data_list = tmp_path / "data.list"
    data_list.write_text("".join(json.dumps(e) + "\n" for e in entries))
    out = _cli("--num_workers", 2, "--max_utts", 4, "--train_config",
               "recipes/mini/s0/conf/train_mini.yaml", "--in_data_list", data_list,
               "--out_cmvn", tmp_path / "global_cmvn")  # fmt: skip
    cmvn = json.loads((tmp_path / "global_cmvn").read_text())
    assert set(cmvn) == {"mean_stat", "var_stat", "frame_num"}
    assert cmvn["frame_num"] == 182 and len(cmvn["mean_stat"]) == 80
    assert "(80 mel bins at 16000 Hz) from 4 utterances (0 skipped)" in out.stderr


WENET_YAML = """encoder: conformer
encoder_conf: {output_size: 32, attention_heads: 2}
dataset_conf:
  resample_conf: {resample_rate: 16000}
  fbank_conf: {num_mel_bins: 40, frame_shift: 10, frame_length: 25, dither: 1.0}
"""


def test_cli_as_wenet_recipes_call_it(spoken_dir, tmp_path):
    """`--num_workers 16 --train_config conf/train.yaml --in_scp wav.scp --out_cmvn
    global_cmvn` with a WeNet train.yaml: its fbank_conf (40 bins) and resample_conf are used."""
    conf = tmp_path / "train.yaml"
    conf.write_text(WENET_YAML)
    d = spoken_dir.root
    _cli("--num_workers", 16, "--train_config", conf, "--in_scp", d / "wav.scp",
         "--out_cmvn", tmp_path / "global_cmvn")  # fmt: skip
    cmvn = json.loads((tmp_path / "global_cmvn").read_text())
    utts = [{"key": k, "wav": str(d / f"{k}.wav")} for k in spoken_dir.texts]
    expected, _ = compute_stats(utts, {**FBANK, "num_mel_bins": 40})
    assert cmvn["frame_num"] == expected.frame_num and len(cmvn["mean_stat"]) == 40
    np.testing.assert_allclose(cmvn["mean_stat"], expected.mean_stat, rtol=1e-6)
    np.testing.assert_allclose(cmvn["var_stat"], expected.var_stat, rtol=1e-6)


def test_a_segmented_wav_scp_cuts_the_segments(spoken_dir, tmp_path):
    """WeNet's segmented wav.scp value `path,start,end` (seconds)."""
    d, rec = spoken_dir.root, spoken_dir.root / "seg" / "rec.wav"
    segmented = tmp_path / "wav.scp"
    segmented.write_text(
        "".join(f"{k}\t{rec},{s},{e}\n" for k, (s, e) in spoken_dir.segments.items())
    )
    cut = read_scp(str(segmented))
    assert cut == [
        {"key": k, "wav": str(rec), "start": s, "end": e}
        for k, (s, e) in spoken_dir.segments.items()
    ]
    whole, _ = compute_stats(
        [{"key": k, "wav": str(d / f"{k}.wav")} for k in spoken_dir.texts], FBANK
    )
    stats, skipped = compute_stats(cut, FBANK)
    assert skipped == [] and abs(stats.frame_num - whole.frame_num) <= 3  # rounding at the cuts
    np.testing.assert_allclose(
        stats.mean_stat / stats.frame_num, whole.mean_stat / whole.frame_num, atol=0.05
    )
    segmented.write_text(f"u1 {rec},0.5\n")
    with pytest.raises(ValueError, match="expected 'path' or 'path,start,end'"):
        read_scp(str(segmented))
