"""tools/make_raw_list.py and tools/make_shard_list.py: Kaldi dir -> data.list -> shards."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
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


def test_shard_list_cli_writes_one_path_per_line(tmp_path):
    d = _kaldi_dir(tmp_path)
    (d / "data.list").write_text(json.dumps({"key": "r1", "wav": str(d / "r1.wav"), "txt": "HI"}))
    subprocess.run(
        [
            sys.executable,
            str(TOOLS / "make_shard_list.py"),
            "--num_utts_per_shard",
            "5",
            d / "data.list",
            d / "shards",
            d / "shards.list",
        ],  # fmt: skip
        capture_output=True,
        check=True,
    )
    assert (d / "shards.list").read_text() == f"{d / 'shards' / 'shards_000000000.tar'}\n"
