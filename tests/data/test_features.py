"""Fbank: agreement with an independent numpy Kaldi fbank, frame counts, dither determinism."""

import numpy as np
import pytest
import soundfile as sf
import torch

from wenet_eff.data.features import compute_fbank, num_frames

# Max |difference| of log-mel energies: the extractor runs in float32, the reference in float64.
LOG_MEL_ATOL = 2e-3


def kaldi_fbank_reference(
    wav: np.ndarray, sr: int, num_mel_bins: int = 80, frame_length: int = 25, frame_shift: int = 10
) -> np.ndarray:
    """Kaldi's fbank (snip_edges, DC removal, pre-emphasis 0.97, povey window, power spectrum,
    HTK-mel triangles from 20 Hz to Nyquist, log floored at FLT_EPSILON) in float64 numpy."""
    x = np.asarray(wav, dtype=np.float64) * 32768.0
    win, hop = int(sr * frame_length / 1000), int(sr * frame_shift / 1000)
    count = 1 + (len(x) - win) // hop
    frames = np.stack([x[i * hop : i * hop + win] for i in range(count)])
    frames -= frames.mean(axis=1, keepdims=True)
    frames[:, 1:] -= 0.97 * frames[:, :-1].copy()
    frames[:, 0] *= 1 - 0.97
    frames *= (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / (win - 1))) ** 0.85
    n_fft = 1 << (win - 1).bit_length()
    power = np.abs(np.fft.rfft(frames, n=n_fft)) ** 2

    def mel(f):
        return 1127.0 * np.log(1.0 + f / 700.0)

    lo, hi = mel(20.0), mel(sr / 2)
    delta = (hi - lo) / (num_mel_bins + 1)
    bin_mel = mel(np.arange(n_fft // 2 + 1) * sr / n_fft)
    left = lo + delta * np.arange(num_mel_bins)[:, None]
    rising = (bin_mel - left) / delta
    falling = (left + 2 * delta - bin_mel) / delta
    weights = np.clip(np.minimum(rising, falling), 0.0, None)
    return np.log(np.maximum(power @ weights.T, np.finfo(np.float32).eps))


def test_matches_numpy_kaldi_reference():
    rng = np.random.default_rng(0)
    t = np.arange(8000) / 16000
    wav = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(8000)).astype(np.float32)
    feats = compute_fbank(wav, 16000)
    assert feats.dtype == torch.float32 and feats.shape == (48, 80)
    np.testing.assert_allclose(feats.numpy(), kaldi_fbank_reference(wav, 16000), atol=LOG_MEL_ATOL)


def test_matches_reference_on_real_speech_8k(real_8k):
    wav, sr = sf.read(real_8k, dtype="float32")
    feats = compute_fbank(wav, sr, num_mel_bins=40)
    np.testing.assert_allclose(feats.numpy(), kaldi_fbank_reference(wav, sr, 40), atol=LOG_MEL_ATOL)


@pytest.mark.parametrize("n", [0, 399, 400, 401, 559, 560, 16000, 16123])
def test_frame_count_snip_edges(n):
    expected = 0 if n < 400 else 1 + (n - 400) // 160
    assert num_frames(n, 16000) == expected
    assert compute_fbank(np.zeros(n, np.float32), 16000).shape == (expected, 80)


def test_options_change_shape():
    wav = np.random.default_rng(1).standard_normal(8000).astype(np.float32) * 0.1
    feats = compute_fbank(wav, 8000, num_mel_bins=40, frame_length=50, frame_shift=20)
    assert feats.shape == (num_frames(8000, 8000, 50, 20), 40) == (48, 40)


def test_dither_is_reproducible_under_a_seed():
    wav = np.zeros(4000, np.float32)  # silence: dither is all there is
    a = compute_fbank(wav, 16000, dither=1.0, rng=np.random.default_rng(3))
    b = compute_fbank(wav, 16000, dither=1.0, rng=np.random.default_rng(3))
    c = compute_fbank(wav, 16000, dither=1.0, rng=np.random.default_rng(4))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, c)
    assert torch.equal(compute_fbank(wav, 16000), compute_fbank(wav, 16000))
