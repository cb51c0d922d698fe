"""Audio that used to be read wrong without a word: multi-channel files are averaged to mono and
counted (`downmixed`), never reduced to a first channel that may be silent; a WAV whose data
chunk is cut short is refused as `truncated_audio` with both durations, never read in part
against its whole transcript. The same in the dataset and in the tools that copy audio."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.bad_audio import SR, piped_wav, stereo_silent_left, truncated_wav
from wenet_eff.data.audio import AudioError, load_audio, load_audio_bytes
from wenet_eff.data.dataset import Dataset

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("from_bytes", [False, True])
def test_multichannel_is_averaged_and_reported(tmp_path, from_bytes):
    data = stereo_silent_left(tmp_path / "st.wav")
    calls = []
    if from_bytes:
        wav, sr = load_audio_bytes((tmp_path / "st.wav").read_bytes(), "st", None, None,
                                   calls.append)  # fmt: skip
    else:
        wav, sr = load_audio(tmp_path / "st.wav", on_downmix=calls.append)
    assert sr == SR and calls == [2]
    np.testing.assert_allclose(wav, (data[:, 0] + data[:, 1]) / 2, atol=1e-7)
    assert np.abs(wav).max() > 0.2  # not the silent channel 0
    sf.write(tmp_path / "mono.wav", data[:, 1], SR, subtype="PCM_16")
    load_audio(tmp_path / "mono.wav", on_downmix=calls.append)
    assert calls == [2]


@pytest.mark.parametrize("from_bytes", [False, True])
def test_truncated_wav_is_refused_with_both_durations(tmp_path, from_bytes):
    path = truncated_wav(tmp_path / "cut.wav")
    assert sf.info(path).duration == pytest.approx(1.41)  # libsndfile reads the part held
    with pytest.raises(AudioError) as info:
        if from_bytes:
            load_audio_bytes(path.read_bytes(), "utt7")
        else:
            load_audio(path, start=0.1, end=0.5)  # a segment of a damaged file too
    assert info.value.reason == "truncated_audio"
    message = str(info.value)
    assert ("utt7" if from_bytes else str(path)) in message
    assert "header says 2.83 s, the file holds 1.41 s" in message


def test_wav_written_to_a_pipe_reads_to_the_end(tmp_path):
    """A data size 0xFFFFFFFF (what a writer to a pipe leaves) means: up to the end of the file."""
    samples, _ = load_audio(piped_wav(tmp_path / "piped.wav"))
    assert samples.shape == (SR,)


@pytest.mark.parametrize("train", [False, True])
def test_dataset_counts_downmixed_and_skips_truncated(corpus, make_cfg, caplog, train):
    stereo_silent_left(corpus.root / "stereo.wav")
    truncated_wav(corpus.root / "cut.wav")
    entries = corpus.entries[:3] + [
        {"key": "stereo", "wav": str(corpus.root / "stereo.wav"), "txt": "the fox"},
        {"key": "cut", "wav": str(corpus.root / "cut.wav"), "txt": "the lazy dog"},
    ]
    ds = Dataset(make_cfg(), str(corpus.write_list(entries)), corpus.tokenizer, train=train)
    with caplog.at_level(logging.INFO):  # skips warn; kept utterances are noted at INFO
        batches = list(ds.iterate())
    keys = sorted(k for b in batches for k in b["keys"])
    assert keys == sorted([*corpus.keys[:3], "stereo"])
    skipped = sum((Counter(b["skipped"]) for b in batches), Counter())
    assert skipped == Counter({"downmixed": 1, "truncated_audio": 1})
    messages = [r.getMessage() for r in caplog.records]
    assert any("cut" in m and "truncated_audio" in m and "2.83 s" in m for m in messages)
    assert any("stereo" in m and "downmixed" in m for m in messages)
    # a kept (downmixed) utterance is no warning: a stereo corpus would warn on every line
    downmixed = [r for r in caplog.records if r.getMessage().startswith("keep utterance stereo")]
    assert downmixed and all(r.levelno == logging.INFO for r in downmixed)


def _run_tool(name: str, *args: object) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'tools'}:{REPO}"}
    cmd = [sys.executable, str(REPO / "tools" / f"{name}.py"), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env)


def test_make_shard_list_downmixes_counts_and_skips_truncated(tmp_path):
    data = stereo_silent_left(tmp_path / "stereo.wav")
    truncated_wav(tmp_path / "cut.wav")
    (tmp_path / "wav.scp").write_text(
        "".join(f"{k} {tmp_path / k}.wav\n" for k in ("stereo", "cut"))
    )
    (tmp_path / "text").write_text("stereo A\ncut A\n")
    proc = _run_tool("make_shard_list", tmp_path / "wav.scp", tmp_path / "text",
                     tmp_path / "shards", tmp_path / "shards.list")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "downmixed 1 multi-channel files to mono (channels averaged), e.g. stereo" in proc.stderr
    assert "skipped cut: " in proc.stderr and "header says 2.83 s" in proc.stderr
    with tarfile.open(tmp_path / "shards" / "shards_000000000.tar") as tar:
        assert tar.getnames() == ["stereo.txt", "stereo.wav"]
        mono, _ = sf.read(io.BytesIO(tar.extractfile("stereo.wav").read()), dtype="float32")
    np.testing.assert_allclose(mono, data.mean(axis=1), atol=1 / 32768)


def test_make_wav_list_counts_downmixed_conversions(tmp_path):
    t = np.arange(8000) / 8000
    sf.write(tmp_path / "st8k.wav", np.stack([0 * t, np.sin(2 * np.pi * 300 * t)], 1), 8000)
    entry = {"key": "st8k", "wav": str(tmp_path / "st8k.wav"), "txt": "A"}
    (tmp_path / "data.list").write_text(json.dumps(entry) + "\n")
    proc = _run_tool("make_wav_list", tmp_path / "data.list", tmp_path / "wav", tmp_path / "out")
    assert proc.returncode == 0, proc.stderr
    assert "downmixed 1 multi-channel files to mono (channels averaged), e.g. st8k" in proc.stderr
    assert sf.info(tmp_path / "wav" / "st8k.wav").channels == 1
