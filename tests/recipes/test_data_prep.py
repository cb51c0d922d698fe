"""Data preparation of the LibriSpeech, AISHELL-1 and WenetSpeech recipes on miniature corpora.

Each corpus is built in its official layout from a few utterances of espeak-ng speech (FLAC,
16 kHz wav, Ogg/Opus recordings cut by segments), prepared with the recipe's local/ script as
run.sh runs it, turned into data.list by tools/make_raw_list.py and read back through
wenet_eff.data.audio.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from prepare_wenetspeech import iter_json_array

from tests.recipes.helpers import SR, run_recipe, speech
from wenet_eff.data.audio import load_audio

REPO = Path(__file__).resolve().parents[2]
needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="needs espeak-ng")


def _run(script: str, *args: str | Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run a recipe script (path relative to REPO) with path.sh's PYTHONPATH."""
    env = {**os.environ, "PYTHONPATH": f"{REPO}:{REPO / 'tools'}"}
    proc = subprocess.run(
        [sys.executable, REPO / script, *map(str, args)], env=env, capture_output=True, text=True
    )
    assert not check or proc.returncode == 0, proc.stderr
    return proc


def _read_list(path: Path) -> dict[str, dict]:
    return {e["key"]: e for e in map(json.loads, path.read_text(encoding="utf-8").splitlines())}


def _table(path: Path) -> dict[str, str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return dict(line.split(" ", 1) for line in lines)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


# ---------------------------------------------------------------- LibriSpeech

LIBRI = {  # key: transcript; 1272-128104-0002 is audio only, 174-50561-0001 transcript only
    "1272-128104-0000": "HELLO WORLD",
    "1272-128104-0001": "GOOD MORNING TO YOU",
    "1272-128104-0002": None,
    "174-50561-0000": "THE CAT SAT DOWN",
    "174-50561-0001": "NO AUDIO FOR THIS LINE",
}


@pytest.fixture(scope="module")
def libri(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("libri")
    subset = root / "LibriSpeech" / "dev-clean"
    samples = {}
    for key, text in LIBRI.items():
        reader, chapter, _ = key.split("-")
        chapter_dir = subset / reader / chapter
        chapter_dir.mkdir(parents=True, exist_ok=True)
        if text is not None:
            with open(chapter_dir / f"{reader}-{chapter}.trans.txt", "a") as f:
                f.write(f"{key} {text}\n")
        if text != "NO AUDIO FOR THIS LINE":
            wav = speech((text or "extra audio").lower(), "en-us", root)
            sf.write(chapter_dir / f"{key}.flac", wav, SR, subtype="PCM_16")
            samples[key] = len(wav)
    out = root / "data" / "dev_clean"
    prep = _run("recipes/librispeech/s0/local/prepare_librispeech.py", "--nj", "2", subset, out)
    _run("tools/make_raw_list.py", out / "wav.scp", out / "text", out / "data.list")
    return {"out": out, "samples": samples, "stderr": prep.stderr}


@needs_espeak
def test_librispeech_data_dir_and_list(libri):
    out, samples = libri["out"], libri["samples"]
    keys = ["1272-128104-0000", "1272-128104-0001", "174-50561-0000"]
    entries = _read_list(out / "data.list")
    assert list(entries) == keys
    assert {k: e["txt"] for k, e in entries.items()} == {k: LIBRI[k] for k in keys}
    durations = _table(out / "utt2dur")
    for key, entry in entries.items():
        assert "start" not in entry and os.path.isabs(entry["wav"])
        assert float(durations[key]) == pytest.approx(samples[key] / SR, abs=0.01)
        wav, sr = load_audio(entry["wav"])
        assert (sr, len(wav)) == (SR, samples[key]) and _rms(wav) > 0.01
    assert _table(out / "utt2spk") == {k: k.rsplit("-", 1)[0] for k in keys}
    assert _table(out / "spk2utt") == {
        "1272-128104": "1272-128104-0000 1272-128104-0001",
        "174-50561": "174-50561-0000",
    }


@needs_espeak
def test_librispeech_counts_skipped(libri):
    assert "1 utterances skipped (no_audio), e.g. 174-50561-0001" in libri["stderr"]
    assert "1 utterances skipped (no_text), e.g. 1272-128104-0002" in libri["stderr"]
    assert "dev_clean: 3 utterances" in libri["stderr"]


# ---------------------------------------------------------------- AISHELL-1

AISHELL = {  # split, speaker, key, transcript (words separated by spaces)
    ("train", "S0002", "BAC009S0002W0122", "今天 天气 很 好"),
    ("train", "S0002", "BAC009S0002W0123", "我们 去 北京"),
    ("dev", "S0724", "BAC009S0724W0121", "你好 世界"),
    ("dev", "S0724", "BAC009S0724W0122", None),  # audio without a transcript line
    ("test", "S0764", "BAC009S0764W0121", "谢谢 大家"),
}
AISHELL_NO_AUDIO = "BAC009S0764W0999"


@pytest.fixture(scope="module")
def aishell(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("aishell")
    corpus = root / "data_aishell"
    (corpus / "transcript").mkdir(parents=True)
    lines, samples = [f"{AISHELL_NO_AUDIO} 没有 音频"], {}
    for split, speaker, key, text in sorted(AISHELL):
        (corpus / "wav" / split / speaker).mkdir(parents=True, exist_ok=True)
        wav = speech((text or "多余").replace(" ", ""), "cmn", root)
        sf.write(corpus / "wav" / split / speaker / f"{key}.wav", wav, SR, subtype="PCM_16")
        samples[key] = len(wav)
        if text is not None:
            lines.append(f"{key} {text}")
    transcript = corpus / "transcript" / "aishell_transcript_v0.8.txt"
    transcript.write_text("\n".join(sorted(lines)) + "\n", encoding="utf-8")
    prep = _run("recipes/aishell/s0/local/prepare_aishell.py", root, root / "data")
    for split in ("train", "dev", "test"):
        d = root / "data" / split
        _run("tools/make_raw_list.py", d / "wav.scp", d / "text", d / "data.list")
    return {"data": root / "data", "samples": samples, "stderr": prep.stderr}


@needs_espeak
def test_aishell_data_dirs_and_lists(aishell):
    for split in ("train", "dev", "test"):
        d = aishell["data"] / split
        expected = {k: t.replace(" ", "") for s, _, k, t in AISHELL if s == split and t}
        entries = _read_list(d / "data.list")
        assert {k: e["txt"] for k, e in entries.items()} == expected
        assert list(entries) == sorted(expected)
        durations = _table(d / "utt2dur")
        for key, entry in entries.items():
            assert float(durations[key]) == pytest.approx(aishell["samples"][key] / SR, abs=0.01)
            wav, sr = load_audio(entry["wav"])
            assert (sr, len(wav)) == (SR, aishell["samples"][key])


@needs_espeak
def test_aishell_counts_skipped(aishell):
    assert "1 utterances skipped (no_text), e.g. BAC009S0724W0122" in aishell["stderr"]
    assert f"1 utterances skipped (no_audio), e.g. {AISHELL_NO_AUDIO}" in aishell["stderr"]


# ---------------------------------------------------------------- WenetSpeech

WS_A = ("Y0000000000_--5llN02F84", "audio/train/youtube/B00000/Y0000000000_--5llN02F84.opus")
WS_B = ("X0000000001_abcDEF", "audio/dev/podcast/B00001/X0000000001_abcDEF.opus")
WS_C = ("Y0000000002_missing", "audio/train/youtube/B00000/Y0000000002_missing.opus")
WS_SPEECH = {  # recording: [(text, subsets)], spoken one after the other with pauses between
    WS_A: [("今天天气很好", ["L", "M", "S"]), ("我们去北京", ["L", "M", "S"]), ("你好", ["L"])],
    WS_B: [("谢谢大家", ["DEV"]), ("早上好", ["TEST_NET"]), ("再见", ["TEST_MEETING"])],
}
PAUSE = 0.5  # seconds of silence before every utterance


@pytest.fixture(scope="module")
def wenetspeech(tmp_path_factory) -> dict:
    """Recordings A (train) and B (dev/test) with speech segments; A also holds a segment with
    end <= begin, one past its end, one with no text; C's file is missing."""
    root = tmp_path_factory.mktemp("wenetspeech")
    corpus = root / "WenetSpeech"
    audios, sources = [], {}
    for (aid, rel), utts in WS_SPEECH.items():
        pieces, segments = [], []
        position = 0
        for i, (text, subsets) in enumerate(utts):
            wav = speech(text, "cmn", root)
            pieces += [np.zeros(int(PAUSE * SR), np.float32), wav]
            position += int(PAUSE * SR)
            sid = f"{aid}_S{i:05d}"
            begin, end = round(position / SR, 2), round((position + len(wav)) / SR, 2)
            segments.append({"sid": sid, "confidence": 1.0, "begin_time": begin,
                             "end_time": end, "subsets": subsets, "text": text})  # fmt: skip
            sources[sid] = wav
            position += len(wav)
        recording = np.concatenate([*pieces, np.zeros(int(PAUSE * SR), np.float32)])
        (corpus / rel).parent.mkdir(parents=True, exist_ok=True)
        sf.write(corpus / rel, recording, SR, format="OGG", subtype="OPUS")
        audios.append({"aid": aid, "path": rel, "duration": round(len(recording) / SR, 2),
                       "segments": segments})  # fmt: skip
    a_end = audios[0]["duration"]
    audios[0]["segments"] += [
        {"sid": f"{WS_A[0]}_S00010", "begin_time": 2.0, "end_time": 2.0, "text": "坏",
         "subsets": ["L", "M", "S"], "confidence": 1.0},
        {"sid": f"{WS_A[0]}_S00011", "begin_time": a_end - 0.5, "end_time": a_end + 1.0,
         "text": "太长", "subsets": ["L", "M", "S"], "confidence": 1.0},
        {"sid": f"{WS_A[0]}_S00012", "begin_time": 0.1, "end_time": 0.4, "text": " ",
         "subsets": ["S"], "confidence": 1.0},
    ]  # fmt: skip
    audios.append({"aid": WS_C[0], "path": WS_C[1], "duration": 10.0, "segments": [
        {"sid": f"{WS_C[0]}_S00000", "begin_time": 1.0, "end_time": 2.0, "text": "丢失",
         "subsets": ["L", "M", "S"], "confidence": 1.0}]})  # fmt: skip
    meta = {"dataset": "WenetSpeech", "version": "v1.0", "audios": audios, "language": "zh"}
    with open(corpus / "WenetSpeech.json", "w", encoding="utf-8") as f:
        json.dump(meta, f, ensure_ascii=False, indent=2)
    prep = _run(
        "recipes/wenetspeech/s0/local/prepare_wenetspeech.py",
        "--subsets", "S DEV TEST_NET TEST_MEETING", corpus, root / "data",
    )  # fmt: skip
    for name in ("train_s", "dev", "test_net", "test_meeting"):
        d = root / "data" / name
        _run("tools/make_raw_list.py", "--segments", d / "segments", d / "wav.scp", d / "text",
             d / "data.list")  # fmt: skip
    return {"corpus": corpus, "data": root / "data", "audios": audios, "sources": sources,
            "stderr": prep.stderr}  # fmt: skip


@needs_espeak
def test_wenetspeech_subset_dirs_segments_and_audio(wenetspeech):
    corpus, data = wenetspeech["corpus"], wenetspeech["data"]
    segments = {s["sid"]: s for a in wenetspeech["audios"] for s in a["segments"]}
    expected = {
        "train_s": (WS_A, [f"{WS_A[0]}_S00000", f"{WS_A[0]}_S00001"]),
        "dev": (WS_B, [f"{WS_B[0]}_S00000"]),
        "test_net": (WS_B, [f"{WS_B[0]}_S00001"]),
        "test_meeting": (WS_B, [f"{WS_B[0]}_S00002"]),
    }
    for name, ((aid, rel), sids) in expected.items():
        d = data / name
        path = str((corpus / rel).resolve())
        assert _table(d / "wav.scp") == {aid: path}
        entries = _read_list(d / "data.list")
        assert list(entries) == sids
        durations = _table(d / "utt2dur")
        for sid, entry in entries.items():
            seg = segments[sid]
            assert (entry["wav"], entry["txt"]) == (path, seg["text"])
            assert entry["start"] == pytest.approx(seg["begin_time"], abs=1e-6)
            assert entry["end"] == pytest.approx(seg["end_time"], abs=1e-6)
            length = seg["end_time"] - seg["begin_time"]
            assert float(durations[sid]) == pytest.approx(length, abs=0.01)
            wav, sr = load_audio(entry["wav"], entry["start"], entry["end"])
            assert sr == SR and abs(len(wav) - length * SR) <= 1
            # the segment holds the utterance (Opus is lossy: compare loudness, not samples)
            source = wenetspeech["sources"][sid]
            assert 0.6 < _rms(wav) / _rms(source) < 1.4
    pause, _ = load_audio(path, 0.0, PAUSE - 0.1)  # the silence before the first utterance
    assert _rms(pause) < 0.1 * _rms(wenetspeech["sources"][f"{WS_B[0]}_S00000"])


@needs_espeak
def test_wenetspeech_counts_skipped_segments(wenetspeech):
    stderr, a, c = wenetspeech["stderr"], WS_A[0], WS_C[0]
    assert f"1 utterances skipped (no_audio), e.g. {c}_S00000" in stderr
    assert f"1 utterances skipped (bad_times), e.g. {a}_S00010" in stderr
    assert f"1 utterances skipped (beyond_audio), e.g. {a}_S00011" in stderr
    assert f"1 utterances skipped (empty_text), e.g. {a}_S00012" in stderr
    assert f"{a}_S00002" not in stderr  # an L-only segment is not asked for, not skipped
    assert "train_s: 2 utterances" in stderr


@needs_espeak
@pytest.mark.parametrize("chunk_chars", [1, 7, 1 << 22])
def test_json_stream_equals_json_load(wenetspeech, tmp_path, chunk_chars):
    path = wenetspeech["corpus"] / "WenetSpeech.json"
    audios = json.loads(path.read_text(encoding="utf-8"))["audios"]
    assert list(iter_json_array(str(path), "audios", chunk_chars)) == audios
    compact = tmp_path / "compact.json"
    compact.write_text('{"n":12345,"s":"a}\\"[","audios":[1.5,{"x":[]},"}"]}')
    assert list(iter_json_array(str(compact), "audios", chunk_chars)) == [1.5, {"x": []}, "}"]
    with pytest.raises(ValueError, match="no 'audio' array"):
        list(iter_json_array(str(compact), "audio", chunk_chars))
    compact.write_text('{"audios": [{"aid": "a"}, {"aid": ')
    with pytest.raises(ValueError, match=f"{compact}: malformed JSON"):
        list(iter_json_array(str(compact), "audios", chunk_chars))


# ---------------------------------------------------------------- missing inputs


def test_missing_corpus_parts_are_named(tmp_path):
    def fails_naming(script: str, *args: str | Path, named: str) -> None:
        proc = _run(f"recipes/{script}", *args, check=False)
        assert proc.returncode != 0 and named in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr

    missing, out = tmp_path / "nowhere", tmp_path / "data"
    libri = "librispeech/s0/local/prepare_librispeech.py"
    fails_naming(libri, missing, out, named=str(missing))
    fails_naming(libri, tmp_path, out, named=str(tmp_path / "*" / "*" / "*.trans.txt"))
    wenet = "wenetspeech/s0/local/prepare_wenetspeech.py"
    fails_naming(wenet, missing, out, named=str(missing))
    fails_naming(wenet, tmp_path, out, named=str(tmp_path / "WenetSpeech.json"))
    fails_naming(wenet, "--subsets", "S XL", tmp_path, out, named="unknown --subsets ['XL']")
    aishell = "aishell/s0/local/prepare_aishell.py"
    fails_naming(aishell, missing, out, named=str(missing / "data_aishell"))
    corpus = tmp_path / "aishell" / "data_aishell"
    (corpus / "transcript").mkdir(parents=True)
    (corpus / "wav").mkdir()
    transcript = corpus / "transcript" / "aishell_transcript_v0.8.txt"
    fails_naming(aishell, corpus.parent, out, named=str(transcript))
    # as released: wav/ still holds the per-speaker archives
    transcript.write_text("BAC009S0002W0122 而 对\n", encoding="utf-8")
    (corpus / "wav" / "S0002.tar.gz").write_bytes(b"")
    fails_naming(aishell, corpus.parent, out, named=f"{corpus / 'wav' / 'train'} (extract the 1")


# ---------------------------------------------------------------- run.sh stages 0-3


def _stages_0_to_3(recipe: str, work: Path, corpus: Path, *extra: str) -> Path:
    """run.sh stages 0-3 (data prep, CMVN, character units, shards of 2 utterances)."""
    opts = ["--stage", "0", "--stop_stage", "3", "--nj", "2", "--corpus_dir", str(corpus),
            "--num_utts_per_shard", "2", *extra]  # fmt: skip
    s0, _ = run_recipe(recipe, work, *opts)
    data = s0 / "data"
    assert json.loads((data / "train" / "global_cmvn").read_text())["frame_num"] > 0
    units = (data / "dict" / "units.txt").read_text().splitlines()
    assert units[:3] == ["<blank> 0", "<unk> 1", "<sos/eos> 2"]
    return data


def _shard_keys(s0: Path) -> list[str]:
    """Keys in data/train's shards, in order (shard paths are relative to the recipe dir)."""
    keys = []
    for shard in (s0 / "data" / "train" / "shards.list").read_text().split():
        with tarfile.open(s0 / shard) as tar:
            keys += [m.name.rsplit(".", 1)[0] for m in tar.getmembers() if m.name.endswith(".txt")]
    return keys


@needs_espeak
def test_aishell_run_sh_stages_0_to_3(aishell, tmp_path):
    data = _stages_0_to_3("aishell", tmp_path, aishell["data"].parent)
    units = {line.split()[0] for line in (data / "dict" / "units.txt").read_text().splitlines()}
    assert {"今", "天", "北", "京"} <= units  # characters
    train = [k for s, _, k, t in sorted(AISHELL) if s == "train" and t]
    assert _shard_keys(data.parent) == train


@needs_espeak
def test_wenetspeech_run_sh_stages_0_to_3(wenetspeech, tmp_path):
    data = _stages_0_to_3("wenetspeech", tmp_path, wenetspeech["corpus"])
    assert (data / "train").resolve() == (data / "train_s").resolve()
    keys = _shard_keys(data.parent)
    assert keys == [f"{WS_A[0]}_S00000", f"{WS_A[0]}_S00001"]
    # the shards hold the segments cut out of the opus recording
    shard = (data / "train" / "shards.list").read_text().split()[0]
    with tarfile.open(data.parent / shard) as tar:
        wav = tar.extractfile(f"{keys[0]}.wav").read()
    audio, sr = sf.read(io.BytesIO(wav), dtype="float32")
    assert sr == SR and abs(len(audio) - len(wenetspeech["sources"][keys[0]])) <= SR // 100
