"""Utterance keys with whitespace are refused where data preparation takes them in: Kaldi tables
split at the first whitespace run (tabs too), the recipes' corpus preparation skips and counts
such keys (bad_key), and the tools that read a data.list leave them out with the key named.

A key is one token in every `key value` file downstream (text, wav.scp, recognize results,
compute_wer), so a key holding a space would shift the first word of its text into the key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from data_prep import DataDirWriter
from kaldi_files import read_table

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / "tools"
RECIPES = REPO / "recipes"


def _tone(path: Path, seconds: float = 0.5, sr: int = 16000) -> Path:
    t = np.arange(round(seconds * sr)) / sr
    sf.write(path, 0.3 * np.sin(2 * np.pi * 440 * t), sr, subtype="PCM_16")
    return path


def _run(script: Path, *args: object) -> subprocess.CompletedProcess:
    """Run a tool or recipe script as path.sh sets it up (tools/ and the repository importable)."""
    env = {**os.environ, "PYTHONPATH": f"{TOOLS}:{REPO}"}
    cmd = [sys.executable, str(script), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, env=env)


def test_read_table_splits_at_any_whitespace(tmp_path):
    table = tmp_path / "text"
    table.write_text("u1\tHELLO WORLD\nu2 \t GOOD  DAY \nu3\u3000NIHAO\n", encoding="utf-8")
    assert read_table(table) == {"u1": "HELLO WORLD", "u2": "GOOD  DAY", "u3": "NIHAO"}


def test_make_raw_list_reads_tab_separated_tables(tmp_path):
    wav = _tone(tmp_path / "a.wav")
    (tmp_path / "wav.scp").write_text(f"u1\t{wav}\n")
    (tmp_path / "text").write_text("u1\tHELLO WORLD\n")
    proc = _run(TOOLS / "make_raw_list.py", *(tmp_path / n for n in ("wav.scp", "text")),
                tmp_path / "data.list")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    entries = [json.loads(line) for line in (tmp_path / "data.list").read_text().splitlines()]
    assert entries == [{"key": "u1", "wav": str(wav), "txt": "HELLO WORLD"}]


@pytest.mark.parametrize("key", ["a b", "a\tb", "a\u3000b", ""])
def test_data_dir_writer_refuses_a_key_that_is_not_one_token(tmp_path, key):
    with DataDirWriter(str(tmp_path / "d")) as writer, pytest.raises(ValueError) as info:
        writer.add(key, "HELLO", 1.0, path="/a.wav")
    assert (repr(key) if key else "empty key") in str(info.value)


def test_prepare_librispeech_skips_keys_with_whitespace(tmp_path):
    chapter = tmp_path / "dev-clean" / "84" / "121123"
    chapter.mkdir(parents=True)
    _tone(chapter / "84-121123-0000.flac")
    _tone(chapter / "84-121123-0001 copy.flac")  # a file manager's duplicate
    (chapter / "84-121123.trans.txt").write_text(
        "84-121123-0000 GO DO YOU HEAR\n84-121123-0001 copy BUT IN LESS THAN FIVE MINUTES\n"
    )
    out = tmp_path / "data"
    proc = _run(RECIPES / "librispeech/s0/local/prepare_librispeech.py", chapter.parents[1], out)
    assert proc.returncode == 0, proc.stderr
    assert read_table(out / "text") == {"84-121123-0000": "GO DO YOU HEAR"}
    assert "1 utterances skipped (bad_key), e.g. '84-121123-0001 copy'" in proc.stderr


def test_prepare_aishell_skips_keys_with_whitespace(tmp_path):
    root = tmp_path / "data_aishell"
    for split in ("train", "dev", "test"):
        (root / "wav" / split / "S0002").mkdir(parents=True)
    _tone(root / "wav/train/S0002/BAC009S0002W0122.wav")
    _tone(root / "wav/train/S0002/BAC009S0002W0123 (1).wav")
    (root / "transcript").mkdir()
    (root / "transcript/aishell_transcript_v0.8.txt").write_text(
        "BAC009S0002W0122 而 对 楼市\nBAC009S0002W0123 也 成为\n", encoding="utf-8"
    )
    proc = _run(RECIPES / "aishell/s0/local/prepare_aishell.py", tmp_path, tmp_path / "data")
    assert proc.returncode == 0, proc.stderr
    assert read_table(tmp_path / "data/train/text") == {"BAC009S0002W0122": "而对楼市"}
    assert "1 utterances skipped (bad_key), e.g. 'BAC009S0002W0123 (1)'" in proc.stderr


def test_prepare_wenetspeech_skips_keys_with_whitespace(tmp_path):
    audio = tmp_path / "audio"
    audio.mkdir()
    _tone(audio / "Y1.wav", 2.0)
    _tone(audio / "Y2.wav", 2.0)
    segment = {"begin_time": 0.0, "end_time": 1.0, "text": "你好", "subsets": ["S"]}
    corpus = {
        "audios": [
            {"aid": "Y1", "path": "audio/Y1.wav", "duration": 2.0, "segments": [
                {**segment, "sid": "Y1_S0"}, {**segment, "sid": "Y1 S1", "begin_time": 1.0,
                                               "end_time": 2.0}]},
            {"aid": "Y2 copy", "path": "audio/Y2.wav", "duration": 2.0,
             "segments": [{**segment, "sid": "Y2_S0"}]},
        ]
    }  # fmt: skip
    (tmp_path / "WenetSpeech.json").write_text(json.dumps(corpus, ensure_ascii=False))
    proc = _run(RECIPES / "wenetspeech/s0/local/prepare_wenetspeech.py", "--subsets", "S",
                tmp_path, tmp_path / "data")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert read_table(tmp_path / "data/train_s/text") == {"Y1_S0": "你好"}
    assert read_table(tmp_path / "data/train_s/wav.scp") == {"Y1": str(audio / "Y1.wav")}
    assert "2 utterances skipped (bad_key), e.g. 'Y1 S1', Y2_S0" in proc.stderr


def _data_list(tmp_path: Path) -> Path:
    """Two utterances of one 8 kHz wav (so make_wav_list converts it): good, and 'u 1'."""
    wav = _tone(tmp_path / "a.wav", sr=8000)
    entries = [{"key": key, "wav": str(wav), "txt": "A"} for key in ("good", "u 1")]
    data_list = tmp_path / "data.list"
    data_list.write_text("".join(json.dumps(e) + "\n" for e in entries))
    return data_list


def test_make_wav_list_leaves_out_keys_with_whitespace(tmp_path):
    out_list = tmp_path / "wav.list"
    proc = _run(TOOLS / "make_wav_list.py", _data_list(tmp_path), tmp_path / "wav", out_list)
    assert proc.returncode == 0, proc.stderr
    assert "skipped key 'u 1' contains whitespace" in proc.stderr
    assert [json.loads(line)["key"] for line in out_list.read_text().splitlines()] == ["good"]
    assert [p.name for p in (tmp_path / "wav").iterdir()] == ["good.wav"]
