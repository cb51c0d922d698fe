"""The C++ runtime (runtime/): its ctest unit tests, fbank against kaldi-native-fbank, CTC
search against the Python search, the decoder against Python eager decoding and onnxruntime,
and decoder_main on good and bad input."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.runtime.conftest import export
from wenet_eff.data.features import compute_fbank
from wenet_eff.decode.ctc import CtcPrefixBeam
from wenet_eff.export.cpp import BUILD_DIR, decoder_main


def test_ctest_unit_tests(runtime):
    proc = subprocess.run(["ctest", "--output-on-failure"], cwd=BUILD_DIR, capture_output=True,
                          text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "100% tests passed" in proc.stdout


def test_fbank_matches_kaldi_native_fbank(runtime, speech):
    """Same frames; entries within 1e-3 except near-empty mel bins, where kaldi-native-fbank's
    single-precision FFT itself is off by more (our FFT runs in double)."""
    diffs = []
    for _, _, wav in speech:
        ours = runtime.fbank(wav, 16000)
        ref = compute_fbank(wav, 16000).numpy()
        assert ours.shape == ref.shape
        diffs.append(np.abs(ours - ref).ravel())
    d = np.concatenate(diffs)
    assert np.quantile(d, 0.9999) < 1e-3
    assert d.max() < 0.05


def test_read_wav_equals_soundfile(runtime, speech):
    _, path, wav = speech[0]
    samples, rate = runtime.read_wav(str(path))
    assert rate == 16000
    np.testing.assert_array_equal(samples, wav)
    with pytest.raises(RuntimeError, match="missing.wav"):
        runtime.read_wav(str(path.parent / "missing.wav"))


def test_ctc_prefix_beam_search_equals_python(runtime):
    g = torch.Generator().manual_seed(0)
    # 2,000 frames create more than 2^16 prefix-trie nodes: the search compacts its trie
    for frames, vocab, beam in [(30, 12, 4), (80, 40, 10), (2000, 30, 10)]:
        logp = torch.log_softmax(3 * torch.randn(frames, vocab, generator=g), -1)
        search = CtcPrefixBeam(beam)
        search.advance(logp)
        expected = search.nbest()
        got = runtime.ctc_prefix_beam_search(logp.numpy(), beam)
        assert [list(t) for t, _ in got] == [h.tokens for h in expected]
        np.testing.assert_allclose([s for _, s in got], [h.score for h in expected], atol=1e-9)
        tokens, _ = runtime.ctc_greedy_search(logp.numpy())
        best = logp.argmax(-1).tolist()
        collapsed = [t for i, t in enumerate(best) if t != 0 and (i == 0 or best[i - 1] != t)]
        assert list(tokens) == collapsed


def _eager_scores(runtime, exp: Path, wavs, chunk: int, mode: str, int8: bool = False):
    """Per utterance, {tokens: score} of the eager model's CTC prefix-beam n-best (beam 10),
    scored as `mode` ranks them (CTC, or the rescoring total with ctc_weight and reverse_weight
    0.3), on the C++ front end's features (checked against kaldi-native-fbank above): the
    streaming chunks of the exported step (4 frames, 2 left chunks) or full context; `int8`:
    with the export's int8 layers (export.int8)."""
    from wenet_eff.decode.attention import attention_rescoring
    from wenet_eff.decode.ctc import ctc_prefix_beam_search
    from wenet_eff.export.int8 import quantize_int8
    from wenet_eff.export.modules import prepare_for_export
    from wenet_eff.model import load_model

    _, model = load_model(exp / "train.yaml", exp / "model.pt")
    model = prepare_for_export(model)
    if int8:
        quantize_int8(model)
    scores = []
    with torch.inference_mode():
        for wav in wavs:
            feats = torch.from_numpy(runtime.fbank(wav, 16000)).unsqueeze(0)
            if chunk > 0:
                out, mask = model.encoder.forward_chunk_by_chunk(feats, chunk, 2)
            else:
                out, mask = model.encoder(feats, torch.tensor([feats.size(1)]))
            nbest = ctc_prefix_beam_search(model.ctc.log_softmax(out)[0], 10)
            if mode == "attention_rescoring":
                nbest = [attention_rescoring(model, [[h]], out, mask, 0.3, 0.3)[0] for h in nbest]
            scores.append({tuple(h.tokens): h.score for h in nbest})
    return scores


@pytest.mark.parametrize("chunk", [4, -1])
def test_decoder_equals_python_eager_and_onnxruntime(runtime, dense_exp, dense_fp32, speech, chunk):
    """The C++ decoder gives the eager model's tokens on the same features: the graphs differ
    from the eager model by float rounding (~1e-6), far below these utterances' decision
    margins. onnxruntime (the same model as .onnx graphs, with the Python fbank) gives the same
    transcripts."""
    from wenet_eff.export.onnx_runtime import OnnxDecoder

    wavs = [w for _, _, w in speech]
    model = runtime.Model(str(dense_fp32))
    for mode in ("ctc_prefix_beam_search", "attention_rescoring"):
        cpp = runtime.Decoder(model, chunk_size=chunk, mode=mode, reverse_weight=0.3)
        got = [cpp.decode(w) for w in wavs]
        eager = _eager_scores(runtime, dense_exp, wavs, chunk, mode)
        assert [r["tokens"] for r in got] == [list(max(s, key=s.get)) for s in eager]
        assert all(r["tokens"] for r in got)
        onnx = OnnxDecoder(dense_fp32, chunk_size=chunk, mode=mode, reverse_weight=0.3)
        assert [onnx.decode(w)["text"] for w in wavs] == [r["text"] for r in got]


def test_streaming_pieces_equal_whole_utterance(runtime, dense_fp32, speech):
    model = runtime.Model(str(dense_fp32))
    dec = runtime.Decoder(model, mode="attention_rescoring")
    wav = speech[1][2]
    whole = dec.decode(wav)["text"]
    dec.reset()
    partials = []
    for start in range(0, len(wav), 1234):
        dec.accept_waveform(wav[start : start + 1234])
        dec.advance()
        partials.append(dec.partial_text())
    dec.input_finished()
    assert dec.finish()["text"] == whole
    assert any(partials)


@pytest.mark.parametrize("mode", ["attention_rescoring", "ctc_greedy_search"])
def test_continuous_decoding_closes_segments_at_endpoints(
    runtime, dense_fp32, speech, mode, tmp_path
):
    """With every frame silent (blank_threshold 0) and rule 1 at 3 chunks of silence, a segment
    closes after every 3rd chunk step; each segment then decodes exactly as its own audio does
    in a fresh decoder (fresh caches, the same fbank frames), and the whole text joins them."""
    model = runtime.Model(str(dense_fp32))
    chunks = 3
    frame_ms = model.frame_shift_ms * model.subsampling_rate
    dec = runtime.Decoder(
        model, mode=mode, continuous_decoding=True, blank_threshold=0.0,
        rule1_min_trailing_silence_ms=int(chunks * model.chunk_size * frame_ms),
        rule2_min_trailing_silence_ms=10**6,
    )  # fmt: skip
    wav = np.concatenate([speech[0][2], speech[1][2]])
    result = dec.decode(wav)
    segments = result["segments"]
    stride = model.subsampling_rate * model.chunk_size  # feature frames per chunk step
    context = model.chunk_window - (model.chunk_size - 1) * model.subsampling_rate
    shift = int(16000 * model.frame_shift_ms / 1000)
    frames = (len(wav) - 400) // shift + 1  # 25 ms windows
    full_steps = (frames - model.chunk_window) // stride + 1
    steps = full_steps + (frames - full_steps * stride >= context)  # a short last chunk
    assert len(segments) == -(-steps // chunks) >= 3  # the last one may be shorter
    assert segments[-1]["end"] == pytest.approx(len(wav) / 16000)
    alone = runtime.Decoder(model, mode=mode)
    for i, seg in enumerate(segments):
        first = i * chunks * stride
        assert seg["start"] == pytest.approx(first * model.frame_shift_ms / 1000)
        if i + 1 < len(segments):  # its steps' frames: 3 windows overlapping by stride
            assert seg["end"] == pytest.approx(
                (first + chunks * stride) * model.frame_shift_ms / 1000
            )
            last = first + (chunks - 1) * stride + model.chunk_window  # frames [first, last)
            piece = wav[first * shift : (last - 1) * shift + 400]
        else:
            piece = wav[first * shift :]
        assert alone.decode(piece)["tokens"] == seg["tokens"], i
    assert result["tokens"] == [t for seg in segments for t in seg["tokens"]]
    assert result["text"] == " ".join(seg["text"] for seg in segments if seg["text"])
    assert any(seg["text"] for seg in segments)
    # without continuous decoding the same rules end nothing: one segment, the whole input
    whole = runtime.Decoder(
        model, mode=mode, blank_threshold=0.0, rule1_min_trailing_silence_ms=1
    ).decode(wav)  # fmt: skip
    assert len(whole["segments"]) == 1 and whole["tokens"] == alone.decode(wav)["tokens"]
    # decoder_main: the same segments, "key start end text"
    sf.write(tmp_path / "two.wav", wav, 16000, subtype="PCM_16")
    (tmp_path / "wav.scp").write_text(f"two {tmp_path / 'two.wav'}\n")
    rule1 = str(int(chunks * model.chunk_size * frame_ms))
    proc = subprocess.run(
        [str(decoder_main()), "--model_dir", str(dense_fp32), "--wav_scp",
         str(tmp_path / "wav.scp"), "--mode", mode, "--continuous_decoding=true",
         "--blank_threshold", "0", "--rule1_min_trailing_silence_ms", rule1,
         "--rule2_min_trailing_silence_ms", str(10**6), "--segments", str(tmp_path / "segments")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"two {result['text']}".strip()
    expected = [f"two {s['start']:.2f} {s['end']:.2f} {s['text']}" for s in segments if s["text"]]
    assert (tmp_path / "segments").read_text().splitlines() == expected
    with pytest.raises(ValueError, match="blank_threshold"):
        runtime.Decoder(model, blank_threshold=1.5)
    with pytest.raises(ValueError, match="rule times must be > 0"):
        runtime.Decoder(model, continuous_decoding=True, rule1_min_trailing_silence_ms=0)
    with pytest.raises(ValueError, match="needs a streaming chunk size"):
        runtime.Decoder(model, chunk_size=-1, continuous_decoding=True)


@pytest.mark.parametrize("chunk", [4, -1])
def test_audio_shorter_than_one_encoder_frame_decodes_to_nothing(runtime, dense_fp32, chunk):
    """0.05 s (3 feature frames) and 0.1 s (8 frames, one encoder frame: below the rescoring
    decoder's two) decode without error in both runtimes."""
    from wenet_eff.export.onnx_runtime import OnnxDecoder

    model = runtime.Model(str(dense_fp32))
    cpp = runtime.Decoder(model, chunk_size=chunk, mode="attention_rescoring")
    onnx = OnnxDecoder(dense_fp32, chunk_size=chunk, mode="attention_rescoring")
    for seconds in (0.05, 0.1):
        wav = 0.1 * np.random.default_rng(0).standard_normal(int(16000 * seconds))
        wav = wav.astype(np.float32)
        assert cpp.decode(wav)["text"] == onnx.decode(wav)["text"]
    assert onnx.decode(wav[:800])["tokens"] == []


def test_decoder_rejects_options_that_do_not_fit(runtime, dense_fp32):
    model = runtime.Model(str(dense_fp32))
    with pytest.raises(ValueError, match="exported for 4 / 2"):
        runtime.Decoder(model, chunk_size=8)
    with pytest.raises(ValueError, match="mode 'beam'"):
        runtime.Decoder(model, mode="beam")
    with pytest.raises(RuntimeError, match="meta.json"):
        runtime.Model(str(dense_fp32.parent))


def test_decoder_main(runtime, dense_fp32, speech, tmp_path):
    """key text lines and the RTF line; a missing file and a wrong sample rate are skipped with
    their keys (bad flags: test_bad_input.py)."""
    bad_rate = tmp_path / "8k.wav"
    sf.write(bad_rate, np.zeros(8000, np.float32), 8000)
    entries = [{"key": n, "wav": str(p)} for n, p, _ in speech[:3]]
    entries += [
        {"key": "gone", "wav": str(tmp_path / "gone.wav")},
        {"key": "rate8k", "wav": str(bad_rate)},
    ]
    data_list = tmp_path / "data.list"
    data_list.write_text("".join(json.dumps(e) + "\n" for e in entries))
    cmd = [str(decoder_main()), "--model_dir", str(dense_fp32), "--data_list", str(data_list),
           "--threads", "1", "--rtf_json", str(tmp_path / "rtf.json")]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split(" ", 1)[0] for line in lines] == [e["key"] for e in entries[:3]]
    assert "skipped gone" in proc.stderr and "skipped rate8k" in proc.stderr
    assert "8000 Hz" in proc.stderr
    assert "RTF: " in proc.stderr and "threads 1" in proc.stderr
    rtf = json.loads((tmp_path / "rtf.json").read_text())
    assert rtf["utterances"] == 3 and rtf["skipped"] == 2 and rtf["rtf"] > 0
    model = runtime.Model(str(dense_fp32))
    dec = runtime.Decoder(model, mode="attention_rescoring")
    first = f"{speech[0][0]} {dec.decode(speech[0][2])['text']}".strip()
    assert lines[0].strip() == first
    scp = tmp_path / "wav.scp"
    scp.write_text(f"{speech[0][0]} {speech[0][1]}\n")
    proc = subprocess.run(cmd[:3] + ["--wav_scp", str(scp), "--chunk_size", "-1"],
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.startswith(speech[0][0])
    # segments: an end alone starts at 0; a start alone runs to the end; one outside is skipped
    wav, seconds = speech[1][1], len(speech[1][2]) / 16000
    segments = [
        {"key": "head", "wav": str(wav), "end": 0.8},
        {"key": "tail", "wav": str(wav), "start": seconds - 0.8},
        {"key": "past", "wav": str(wav), "start": seconds + 1, "end": seconds + 2},
    ]
    data_list.write_text("".join(json.dumps(e) + "\n" for e in segments))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert [line.split(" ", 1)[0] for line in proc.stdout.splitlines()] == ["head", "tail"]
    assert "skipped past" in proc.stderr and "outside the audio" in proc.stderr
    rtf = json.loads((tmp_path / "rtf.json").read_text())
    assert abs(rtf["audio_seconds"] - 1.6) < 0.01


@pytest.mark.heavy  # the dense_int8 fixture: four AOTInductor compiles
@pytest.mark.parametrize("chunk", [4, -1])
def test_int8_model_decodes_in_cpp(runtime, dense_exp, dense_int8, speech, tmp_path, chunk):
    """The int8 .pt2 graphs run in the C++ runtime (their integer ops must be linked there) and
    pick what the eager int8 model picks on the same features, up to one activation rounding:
    both multiply the same int8 integers exactly (torch._int_mm) and differ in float rounding
    (~1e-6) only, but an activation that lands on the other side of a rounding boundary moves
    this tiny model's log posteriors by up to ~0.1 (as 1e-5 feature noise does), which can
    swap near-tied hypotheses. So the C++ result must be in the eager n-best within 0.5 of
    its best score (a wrong integer product or scale misses by far more). decoder_main prints
    what the pybind Decoder gives."""
    wavs = [w for _, _, w in speech]
    model = runtime.Model(str(dense_int8))
    for mode in ("ctc_prefix_beam_search", "attention_rescoring"):
        dec = runtime.Decoder(model, chunk_size=chunk, mode=mode, reverse_weight=0.3)
        got = [dec.decode(w) for w in wavs]
        eager = _eager_scores(runtime, dense_exp, wavs, chunk, mode, int8=True)
        for result, scores in zip(got, eager, strict=True):
            assert result["tokens"]
            assert scores.get(tuple(result["tokens"]), -np.inf) >= max(scores.values()) - 0.5
    texts = [r["text"] for r in got]
    scp = tmp_path / "wav.scp"
    scp.write_text("".join(f"{n} {p}\n" for n, p, _ in speech))
    proc = subprocess.run(
        [str(decoder_main()), "--model_dir", str(dense_int8), "--wav_scp", str(scp),
         "--chunk_size", str(chunk), "--reverse_weight", "0.3", "--threads", "1"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert [line.strip() for line in proc.stdout.splitlines()] == [
        f"{n} {t}".strip() for (n, _, _), t in zip(speech, texts, strict=True)
    ]
    assert "RTF: " in proc.stderr


def test_onnx_decoder_runs_the_int8_graphs_when_asked(dense_exp, speech, tmp_path):
    """OnnxDecoder(precision="int8") runs onnxruntime's quantized graphs (NAME.int8.onnx), as
    `runtime_rtf --engines onnx --precisions int8` asks: its encoder output is near the float
    graphs' but not equal to it; a directory without them is named, and so is a precision
    that has no .onnx graphs."""
    import shutil

    from wenet_eff.export.onnx_runtime import OnnxDecoder

    out = export(dense_exp, "onnx_int8", "--precisions", "fp32", "int8", "--formats", "onnx",
                 "--pieces", "encoder_full", "decoder")  # fmt: skip
    fp32 = OnnxDecoder(out, chunk_size=-1)
    int8 = OnnxDecoder(out, chunk_size=-1, precision="int8")
    assert (fp32.precision, int8.precision) == ("fp32", "int8")
    for _, _, wav in speech:
        feats = compute_fbank(wav, 16000).numpy()
        out32, out8 = fp32._encode(feats)[1], int8._encode(feats)[1]
        rel = np.linalg.norm(out8 - out32) / np.linalg.norm(out32)
        # onnxruntime's dynamic int8 (per-tensor activations) on this random tiny model: ~0.11
        # measured; a float graph gives 0, a wrong scale or graph a difference near 1
        assert 0 < rel < 0.3, rel
        assert int8.decode(wav)["tokens"]
    float_only = tmp_path / "float_only"
    shutil.copytree(out, float_only)
    for path in float_only.glob("*.int8.onnx"):
        path.unlink()
    with pytest.raises(FileNotFoundError, match=r"encoder_full\.int8\.onnx: not exported"):
        OnnxDecoder(float_only, chunk_size=-1, precision="int8")
    with pytest.raises(ValueError, match="precision 'bf16': the .onnx graphs are fp32 or int8"):
        OnnxDecoder(out, chunk_size=-1, precision="bf16")
