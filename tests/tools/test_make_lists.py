"""tools/make_raw_list.py and tools/make_shard_list.py: Kaldi dir -> data.list -> shards."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from make_raw_list import build_entries
from make_shard_list import make_shards

from wenet_eff.data.sources import read_data_list

TOOLS = Path(__file__).resolve().parents[2] / "tools"


def _tone(path: Path, seconds: float, sr: int) -> None:
    t = np.arange(round(seconds * sr)) / sr
    sf.write(path, 0.3 * np.sin(2 * np.pi * 440 * t), sr, subtype="PCM_16")


def _kaldi_dir(tmp_path: Path) -> Path:
    """Recordings r1 (1.0 s, 16 kHz) and r2 (2.0 s, 8 kHz); texts for u1, u2, u3 (no audio)."""
    _tone(tmp_path / "r1.wav", 1.0, 16000)
    _tone(tmp_path / "r2.wav", 2.0, 8000)
    (tmp_path / "wav.scp").write_text(
        f"r1 {tmp_path / 'r1.wav'}\nr2 {tmp_path / 'r2.wav'}\nr9 {tmp_path / 'r9.wav'}\n"
    )
    (tmp_path / "text").write_text("r1 HELLO WORLD\nr2 GOOD DAY\nr3 NO AUDIO\n")
    return tmp_path


def test_raw_list_matches_keys_and_reports_missing(tmp_path):
    d = _kaldi_dir(tmp_path)
    cmd = [sys.executable, TOOLS / "make_raw_list.py", d / "wav.scp", d / "text", d / "data.list"]
    out = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        check=True,
    )
    entries = [json.loads(line) for line in (d / "data.list").read_text().splitlines()]
    assert entries == [
        {"key": "r1", "wav": str(d / "r1.wav"), "txt": "HELLO WORLD"},
        {"key": "r2", "wav": str(d / "r2.wav"), "txt": "GOOD DAY"},
    ]
    assert "1 utterances left out (no_text), e.g. r9" in out.stderr
    assert "1 utterances left out (no_audio), e.g. r3" in out.stderr


def test_raw_list_with_segments(tmp_path):
    d = _kaldi_dir(tmp_path)
    segments = d / "segments"
    segments.write_text("s1 r2 0.25 1.0\ns2 r2 1.0 -1\ns3 r7 0 1\ns4 r1 0 0.5\n")
    texts = {"s1": "FIRST PART", "s2": "SECOND PART", "s3": "NO RECORDING"}
    wavs = {"r1": str(d / "r1.wav"), "r2": str(d / "r2.wav")}
    entries, missing = build_entries(wavs, texts, str(segments))
    assert entries == [
        {"key": "s1", "wav": wavs["r2"], "txt": "FIRST PART", "start": 0.25, "end": 1.0},
        {"key": "s2", "wav": wavs["r2"], "txt": "SECOND PART", "start": 1.0},
    ]
    assert missing == {"no_text": ["s4"], "no_audio": ["s3"]}


def test_shards_round_trip_keys_texts_durations(tmp_path):
    """Segments are cut, 8 kHz audio is resampled, unreadable audio is skipped and named."""
    d = _kaldi_dir(tmp_path)
    entries = [
        {"key": "r1", "wav": str(d / "r1.wav"), "txt": "HELLO WORLD"},
        {"key": "s1", "wav": str(d / "r2.wav"), "txt": "FIRST PART", "start": 0.25, "end": 1.0},
        {"key": "s2", "wav": str(d / "r2.wav"), "txt": "SECOND PART", "start": 1.0},
        {"key": "bad", "wav": str(d / "missing.wav"), "txt": "GONE"},
    ]
    data_list = d / "data.list"
    data_list.write_text("".join(json.dumps(e) + "\n" for e in entries))
    paths, skipped, downmixed = make_shards(read_data_list(data_list), str(d / "shards"), 2, 2,
                                            16000)  # fmt: skip
    assert [Path(p).name for p in paths] == ["shards_000000000.tar", "shards_000000001.tar"]
    assert len(skipped) == 1 and skipped[0].startswith("bad: ") and downmixed == []
    members = {}
    for path in paths:
        with tarfile.open(path) as tar:
            for member in tar.getmembers():
                members[member.name] = tar.extractfile(member).read()
    assert list(members) == ["r1.txt", "r1.wav", "s1.txt", "s1.wav", "s2.txt", "s2.wav"]
    assert members["s1.txt"].decode() == "FIRST PART"
    expected = {"r1": 1.0, "s1": 0.75, "s2": 1.0}
    for key, seconds in expected.items():
        info = sf.info(io.BytesIO(members[f"{key}.wav"]))
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        assert abs(info.duration - seconds) < 0.002, key


def _tool(script: str, *args: object) -> subprocess.CompletedProcess:
    """Run `tools/script` as WeNet's run.sh does: an executable (`#!/usr/bin/env python3`)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.run(
        [TOOLS / script, *map(str, args)], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr
    return proc


def _members(tar_path: str) -> list[tuple[str, bytes]]:
    with tarfile.open(tar_path) as tar:
        return [(m.name, tar.extractfile(m).read()) for m in tar.getmembers()]


def test_make_shard_list_as_wenet_aishell_calls_it(spoken_dir, tmp_path):
    """`make_shard_list.py --num_utts_per_shard N --num_threads 16 wav.scp text
    $(realpath shards) data.list`: per utterance KEY.txt then KEY.wav (16 kHz mono 16-bit),
    N per tar, the list of absolute tar paths."""
    d = spoken_dir.root
    shards = tmp_path / "shards"
    _tool("make_shard_list.py", "--num_utts_per_shard", 2, "--num_threads", 16,
          d / "wav.scp", d / "text", shards.resolve(), tmp_path / "data.list")  # fmt: skip
    paths = (tmp_path / "data.list").read_text().splitlines()
    assert paths == [str(shards / f"shards_00000000{i}.tar") for i in (0, 1)]
    members = [m for path in paths for m in _members(path)]
    assert [name for name, _ in members] == [
        f"{key}.{ext}" for key in spoken_dir.texts for ext in ("txt", "wav")
    ]
    for name, data in members:
        key, ext = name.split(".")
        if ext == "txt":
            assert data.decode("utf-8") == spoken_dir.texts[key]
            continue
        wav, sr = sf.read(io.BytesIO(data), dtype="float32")
        assert sf.info(io.BytesIO(data)).subtype == "PCM_16" and sr == 16000 and wav.ndim == 1
        np.testing.assert_allclose(wav, spoken_dir.audio[key], atol=1 / 32768)


def test_make_shard_list_as_wenet_wenetspeech_calls_it(spoken_dir, tmp_path):
    """`--resample 16000 --num_utts_per_shard 1000 --num_threads 32 --segments segments wav.scp
    text shards data.list`, plus `--prefix`: each segment cut out of its recording."""
    d = spoken_dir.root / "seg"
    _tool("make_shard_list.py", "--resample", 16000, "--num_utts_per_shard", 1000,
          "--num_threads", 32, "--prefix", "dev", "--segments", d / "segments", d / "wav.scp",
          d / "text", tmp_path / "shards", tmp_path / "data.list")  # fmt: skip
    (path,) = (tmp_path / "data.list").read_text().splitlines()
    assert Path(path).name == "dev_000000000.tar"
    wavs = {name: data for name, data in _members(path) if name.endswith(".wav")}
    assert list(wavs) == ["u1.wav", "u2.wav", "u3.wav"]
    for key, (start, end) in spoken_dir.segments.items():
        info = sf.info(io.BytesIO(wavs[f"{key}.wav"]))
        assert abs(info.duration - (end - start)) < 0.001, key


def test_make_raw_list_as_wenet_calls_it(spoken_dir, tmp_path):
    """`make_raw_list.py wav.scp text data.list` and with `--segments segments`: JSON lines
    {"key", "wav", "txt"} (+ "start", "end" in seconds)."""
    d = spoken_dir.root
    _tool("make_raw_list.py", d / "wav.scp", d / "text", tmp_path / "data.list")
    lines = [json.loads(line) for line in (tmp_path / "data.list").read_text().splitlines()]
    assert lines == [
        {"key": k, "wav": str(d / f"{k}.wav"), "txt": t} for k, t in spoken_dir.texts.items()
    ]
    seg = d / "seg"
    _tool("make_raw_list.py", "--segments", seg / "segments", seg / "wav.scp", seg / "text",
          tmp_path / "seg.list")  # fmt: skip
    lines = [json.loads(line) for line in (tmp_path / "seg.list").read_text().splitlines()]
    assert [(x["key"], x["wav"], x["txt"]) for x in lines] == [
        (k, str(seg / "rec.wav"), t) for k, t in spoken_dir.texts.items()
    ]
    for line in lines:
        start, end = spoken_dir.segments[line["key"]]
        assert line["start"] == pytest.approx(start, abs=1e-4)
        assert line["end"] == pytest.approx(end, abs=1e-4)
