"""The C++ runtime on bad input, as the Python side handles it: the WAV reader averages the
channels of a multi-channel file and refuses a truncated data chunk (truncated_audio, both
durations) exactly as wenet_eff.data.audio does; decoder_main refuses every bad flag value
(gflags types and validators), keys that hold whitespace and empty lists, naming them."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import soundfile as sf

from tests.bad_audio import piped_wav, stereo_silent_left, truncated_wav
from wenet_eff.data.audio import load_audio
from wenet_eff.export.cpp import decoder_main


@pytest.mark.parametrize("channels, subtype", [(2, "PCM_16"), (3, "PCM_24"), (2, "FLOAT")])
def test_read_wav_averages_channels_as_python_does(runtime, tmp_path, channels, subtype):
    rng = np.random.default_rng(channels)
    data = rng.uniform(-0.9, 0.9, (4000, channels))
    data[:, 0] = 0  # a silent first channel: the mean is not silence
    path = tmp_path / "multi.wav"
    sf.write(path, data, 16000, subtype=subtype)
    samples, rate = runtime.read_wav(str(path))
    expected, _ = load_audio(path)
    assert rate == 16000 and np.abs(samples).max() > 0.2
    np.testing.assert_array_equal(samples, expected)
    stereo_silent_left(tmp_path / "st.wav")
    np.testing.assert_array_equal(runtime.read_wav(str(tmp_path / "st.wav"))[0],
                                  load_audio(tmp_path / "st.wav")[0])  # fmt: skip


def test_read_wav_refuses_a_truncated_data_chunk(runtime, tmp_path):
    path = truncated_wav(tmp_path / "cut.wav")
    with pytest.raises(RuntimeError) as info:
        runtime.read_wav(str(path))
    message = str(info.value)
    assert str(path) in message and "truncated_audio" in message
    assert "header says 2.83 s, the file holds 1.41 s" in message


def test_read_wav_of_a_wav_written_to_a_pipe_reads_to_the_end(runtime, tmp_path):
    samples, _ = runtime.read_wav(str(piped_wav(tmp_path / "piped.wav")))
    assert samples.shape == (16000,)
    np.testing.assert_array_equal(samples, load_audio(tmp_path / "piped.wav")[0])


def _decoder_main(*flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(decoder_main()), *flags], capture_output=True, text=True)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--beam_size", "10abc"], "illegal value '10abc' specified for int32 flag 'beam_size'"),
        (["--ctc_weight", "1.5x"], "illegal value '1.5x' specified for double flag 'ctc_weight'"),
        (["--chunk_size", "abc"], "illegal value 'abc' specified for int32 flag 'chunk_size'"),
        (["--continuous_decoding=maybe"], "illegal value 'maybe' specified for bool flag"),
        (["--continuous_decoding", "maybe"], "unexpected argument 'maybe'"),
        (["--threads", "-3"], "--threads=-3: must be >= 1"),
        (["--beam_size", "0"], "--beam_size=0: must be >= 1"),
        (["--ctc_weight", "1.5"], "--ctc_weight=1.5: must be in [0, 1]"),
        (["--reverse_weight", "nan"], "--reverse_weight=nan: must be in [0, 1]"),
        (["--chunk_size", "-2"], "--chunk_size=-2: must be -1 (full context), 0"),
        (["--num_left_chunks", "-5"], "--num_left_chunks=-5: must be -1 (all)"),
        (["--lm_weight", "inf"], "--lm_weight=inf: must be a finite number >= 0"),
        (["--min_token_logp", "0.5"], "--min_token_logp=0.5: must be a log probability <= 0"),
        (["--rule2_min_trailing_silence_ms", "0"], "--rule2_min_trailing_silence_ms=0: must be"),
        (["--warmup", "-1"], "--warmup=-1: must be >= 0"),
        (["--mode", "beam"], "mode 'beam' unknown (attention_rescoring, ctc_prefix_beam_search"),
        (["--chunk_sise", "4"], "unknown command line flag 'chunk_sise'"),
    ],
)
def test_decoder_main_refuses_bad_flags_naming_them(tmp_path, flags, message):
    """Each bad value stops decoder_main before anything is loaded, naming the flag and value
    (no libtorch stack trace); the hand-written parser took '10abc' as 10 and 'maybe' as false."""
    proc = _decoder_main("--model_dir", str(tmp_path), "--wav_scp", str(tmp_path / "x"), *flags)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Exception raised from" not in proc.stderr


def test_decoder_main_help_and_required_flags(tmp_path):
    proc = _decoder_main("--help")
    assert proc.returncode == 0
    for flag in ("model_dir", "data_list", "wav_scp", "chunk_size", "beam_size", "lm",
                 "context_path", "continuous_decoding", "rtf_json"):  # fmt: skip
        assert f"-{flag} (" in proc.stdout
    assert 'default: "attention_rescoring"' in proc.stdout and "-helpxml (" not in proc.stdout
    assert "--model_dir is required" in _decoder_main("--wav_scp", "x").stderr
    proc = _decoder_main("--model_dir", str(tmp_path))
    assert proc.returncode != 0 and "give exactly one of --wav_scp and --data_list" in proc.stderr
    flagfile = tmp_path / "decode.flags"  # WeNet users keep their options in one
    flagfile.write_text(f"--model_dir={tmp_path}\n--beam_size=0\n")
    proc = _decoder_main(f"--flagfile={flagfile}")
    assert proc.returncode != 0 and "--beam_size=0: must be >= 1" in proc.stderr


@pytest.mark.parametrize(
    "name, lines, message",
    [
        ("data.list", ['{"key": "ok", "wav": "a.wav"}', '{"key": "a b", "wav": "a.wav"}'],
         'data.list:2: key "a b" contains whitespace'),
        ("data.list", ['{"key": "a\\tb", "wav": "a.wav"}'], 'key "a\\tb" contains whitespace'),
        ("data.list", ['{"key": "a\\u3000b", "wav": "a.wav"}'], "key \"a\u3000b\" contains"),
        ("data.list", ['{"key": "", "wav": "a.wav"}'], "data.list:1: empty key"),
        ("wav.scp", ["ok a.wav", "a\u3000b a.wav"], 'wav.scp:2: key "a\u3000b" contains'),
        ("data.list", [], "data.list: no utterances"),
        ("wav.scp", ["", "  "], "wav.scp: no utterances"),
    ],
)  # fmt: skip
def test_decoder_main_refuses_bad_keys_and_empty_lists(tmp_path, name, lines, message):
    """A key that the "key text" output would split stops the run naming the file and line (the
    whole list is checked before the model loads); an empty list is an error, not 0 decoded."""
    path = tmp_path / name
    path.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    flag = "--data_list" if name == "data.list" else "--wav_scp"
    proc = _decoder_main("--model_dir", str(tmp_path / "no_model"), flag, str(path))
    assert proc.returncode != 0
    assert message in proc.stderr


def test_decoder_main_downmixes_and_skips_truncated(runtime, dense_fp32, tmp_path):
    """A stereo file whose channel 0 is silent decodes as the mean of its channels (counted), not
    as silence; a truncated wav is skipped naming the key and both durations."""
    stereo_silent_left(tmp_path / "stereo.wav", seconds=2.0)
    mean, _ = load_audio(tmp_path / "stereo.wav")
    sf.write(tmp_path / "mean.wav", mean, 16000, subtype="FLOAT")
    sf.write(tmp_path / "silent.wav", np.zeros_like(mean), 16000, subtype="FLOAT")
    truncated_wav(tmp_path / "cut.wav")
    keys = ["stereo", "mean", "silent", "cut"]
    scp = tmp_path / "wav.scp"
    scp.write_text("".join(f"{k} {tmp_path / k}.wav\n" for k in keys))
    proc = _decoder_main("--model_dir", str(dense_fp32), "--wav_scp", str(scp), "--mode",
                         "ctc_greedy_search", "--rtf_json", str(tmp_path / "rtf.json"))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    texts = dict((line.split(" ", 1) + [""])[:2] for line in proc.stdout.splitlines())
    assert list(texts) == ["stereo", "mean", "silent"]
    assert texts["stereo"] == texts["mean"] != texts["silent"]
    assert "downmixed 1 multi-channel files to mono (channels averaged)" in proc.stderr
    assert "skipped cut: " in proc.stderr and "truncated_audio" in proc.stderr
    assert "header says 2.83 s, the file holds 1.41 s" in proc.stderr
    rtf = json.loads((tmp_path / "rtf.json").read_text())
    assert (rtf["utterances"], rtf["skipped"], rtf["downmixed"]) == (3, 1, 1)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c.update(format="wenet_eff.weights/1"), "format is not wenet_eff.weights/2"),
        (
            lambda c: c["graphs"][0]["constants"][0].__setitem__(1, len(c["tensors"])),
            "which is not listed",
        ),
    ],
    ids=["old_format", "tensor_out_of_range"],
)
def test_model_refuses_a_weight_index_it_cannot_follow(runtime, dense_fp32, tmp_path, edit,
                                                       message):  # fmt: skip
    """A weights.json of another format version, or one whose graph names a tensor it does not
    list, is refused at load naming weights.json (no graph is handed a wrong constant)."""
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    for f in dense_fp32.iterdir():
        (model_dir / f.name).symlink_to(f)
    content = json.loads((dense_fp32 / "weights.json").read_text())
    edit(content)
    (model_dir / "weights.json").unlink()
    (model_dir / "weights.json").write_text(json.dumps(content))
    with pytest.raises(RuntimeError) as info:
        runtime.Model(str(model_dir))
    assert "weights.json" in str(info.value) and message in str(info.value)


@pytest.mark.parametrize("index", [-1, 10**6, 1.5])
def test_python_loader_refuses_a_weight_index_it_cannot_follow(dense_fp32, tmp_path, index):
    """export.weights.load_graph (the Python loader of the same directory) refuses what the C++
    runtime refuses; a negative index would otherwise pick the last tensor."""
    from wenet_eff.export.weights import load_graph, read_weights

    content, tensors = read_weights(dense_fp32)
    content["graphs"][0]["constants"][0][1] = index
    with pytest.raises(ValueError, match="which is not listed") as info:
        load_graph(dense_fp32, content["graphs"][0]["file"], (content, tensors))
    assert "weights.json" in str(info.value)
