"""Audio reading, segments, channels, error reasons, resampling and speed perturbation."""

import numpy as np
import pytest
import soundfile as sf

from wenet_eff.data.audio import AudioError, load_audio, load_audio_bytes, resample, speed_perturb


def peak_hz(wav: np.ndarray, sr: int) -> float:
    spectrum = np.abs(np.fft.rfft(wav * np.hanning(len(wav))))
    return float(np.argmax(spectrum) * sr / len(wav))


def test_load_wav_is_float32_mono_in_range(tmp_path, tone):
    data = tone(tmp_path / "a.wav", 0.5, subtype="PCM_16")
    wav, sr = load_audio(tmp_path / "a.wav")
    assert sr == 16000 and wav.dtype == np.float32 and wav.shape == (8000,)
    assert np.abs(wav).max() <= 1.0
    np.testing.assert_allclose(wav, data[:, 0], atol=1 / 32768)


def test_flac_and_bytes(tmp_path, tone):
    data = tone(tmp_path / "a.flac", 0.3, sr=8000)
    wav, sr = load_audio(tmp_path / "a.flac")
    assert sr == 8000
    np.testing.assert_allclose(wav, data[:, 0], atol=1 / 32768)
    same, _ = load_audio_bytes((tmp_path / "a.flac").read_bytes(), "a")
    np.testing.assert_array_equal(same, wav)


def test_multichannel_gives_the_mean_of_its_channels(tmp_path, tone):
    data = tone(tmp_path / "st.wav", 0.25, channels=3, subtype="FLOAT")
    wav, _ = load_audio(tmp_path / "st.wav")
    np.testing.assert_allclose(wav, data.mean(axis=1), atol=1e-7)


def test_segment_reads_exact_samples(tmp_path, tone):
    data = tone(tmp_path / "a.wav", 1.0, subtype="FLOAT")
    wav, _ = load_audio(tmp_path / "a.wav", start=0.25, end=0.5)
    np.testing.assert_array_equal(wav, data[4000:8000, 0])
    tail, _ = load_audio(tmp_path / "a.wav", start=0.9)
    np.testing.assert_array_equal(tail, data[14400:, 0])
    head, _ = load_audio(tmp_path / "a.wav", end=2.0)  # end past the file: clipped
    assert head.shape == (16000,)


def test_float_file_is_clipped(tmp_path):
    sf.write(tmp_path / "loud.wav", np.array([0.5, 2.0, -3.0], np.float32), 16000, subtype="FLOAT")
    wav, _ = load_audio(tmp_path / "loud.wav")
    np.testing.assert_array_equal(wav, [0.5, 1.0, -1.0])


@pytest.mark.parametrize(
    "name, make, reason",
    [
        ("missing.wav", None, "missing_file"),
        ("corrupt.wav", lambda p: p.write_bytes(b"RIFF\x00\x01garbage" * 10), "bad_audio"),
        ("zero_bytes.wav", lambda p: p.write_bytes(b""), "bad_audio"),
        ("empty.wav", lambda p: sf.write(p, np.zeros(0, np.float32), 16000), "empty_audio"),
        (
            "nan.wav",
            lambda p: sf.write(p, np.array([0.1, np.nan], np.float32), 16000, subtype="FLOAT"),
            "bad_audio",
        ),
    ],
)
def test_bad_files_raise_audio_error_with_reason(tmp_path, name, make, reason):
    path = tmp_path / name
    if make:
        make(path)
    with pytest.raises(AudioError) as info:
        load_audio(path)
    assert info.value.reason == reason
    assert str(path) in str(info.value)


def test_empty_segment(tmp_path, tone):
    tone(tmp_path / "a.wav", 0.5)
    for start, end in [(0.6, None), (0.3, 0.3)]:
        with pytest.raises(AudioError) as info:
            load_audio(tmp_path / "a.wav", start=start, end=end)
        assert info.value.reason == "empty_audio"


@pytest.mark.parametrize("sr_in, sr_out", [(48000, 16000), (8000, 16000), (22050, 16000)])
def test_resample_changes_length_by_ratio_and_keeps_pitch(sr_in, sr_out):
    n = sr_in  # 1 s
    wav = (0.5 * np.sin(2 * np.pi * 1000 * np.arange(n) / sr_in)).astype(np.float32)
    out = resample(wav, sr_in, sr_out)
    assert out.dtype == np.float32
    assert abs(len(out) - n * sr_out / sr_in) <= 1
    assert peak_hz(out, sr_out) == pytest.approx(1000, abs=2)
    assert resample(wav, sr_in, sr_in) is wav


@pytest.mark.parametrize("speed", [0.9, 1.1])
def test_speed_perturb_changes_tempo_and_pitch(speed):
    sr = 16000
    wav = (0.5 * np.sin(2 * np.pi * 500 * np.arange(sr) / sr)).astype(np.float32)
    out = speed_perturb(wav, sr, speed)
    assert abs(len(out) - sr / speed) <= 1
    assert peak_hz(out, sr) == pytest.approx(500 * speed, abs=3)


def test_speed_one_is_identity_and_bad_speed_rejected():
    wav = np.zeros(100, np.float32)
    assert speed_perturb(wav, 16000, 1.0) is wav
    with pytest.raises(ValueError, match="speed"):
        speed_perturb(wav, 16000, 0.0)


def test_real_8k_recording(real_8k):
    wav, sr = load_audio(real_8k)
    assert sr == 8000 and len(wav) > 8000 and np.abs(wav).max() > 0.05
    up = resample(wav, sr, 16000)
    assert abs(len(up) - 2 * len(wav)) <= 1
