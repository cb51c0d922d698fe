"""data.feature_backend=torchaudio (WeNet's kaldi.fbank) and kaldifeat give kaldi-native-fbank's
features, where they import (the GPU image has torchaudio 2.11).

Stated tolerance, on log-mel energies of real speech: max |difference| 0.01, mean 1e-4 (all three
run Kaldi's algorithm in float32; measured with torch 2.11 + torchaudio 2.11 on espeak-ng
speech: max 4.3e-3, mean 1.1e-5, the largest at a few low-energy bins)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.recipes.helpers import SR, speech
from wenet_eff.data.features import compute_fbank

pytestmark = pytest.mark.gpu
MAX_ABS, MEAN_ABS = 0.01, 1e-4


def _waveforms(tmp_path: Path) -> list[np.ndarray]:
    """A tone in noise and real speech at 16 kHz: espeak-ng's where installed, else the
    utterances `make gpu-data` carries."""
    rng = np.random.default_rng(0)
    t = np.arange(SR) / SR
    tone = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(SR)).astype(np.float32)
    if shutil.which("espeak-ng"):
        return [tone, speech("the quick brown fox jumps over the lazy dog", "en", tmp_path)]
    wavs = sorted(Path(".gpu_data/wav").glob("*.wav"))[:3]
    assert wavs, "no speech: install espeak-ng, or run make gpu-data and carry .gpu_data"
    return [tone, *(sf.read(w, dtype="float32")[0] for w in wavs)]


@pytest.mark.parametrize("backend", ["torchaudio", "kaldifeat"])
@pytest.mark.parametrize("num_mel_bins", [80, 40])
def test_backend_matches_kaldi_native_fbank(tmp_path, backend, num_mel_bins):
    pytest.importorskip(backend)
    for wav in _waveforms(tmp_path):
        ours = compute_fbank(wav, SR, num_mel_bins)
        theirs = compute_fbank(wav, SR, num_mel_bins, backend=backend)
        assert theirs.shape == ours.shape
        diff = (theirs - ours).abs()
        assert diff.max() <= MAX_ABS and diff.mean() <= MEAN_ABS, (diff.max(), diff.mean())


@pytest.mark.parametrize("backend", ["torchaudio", "kaldifeat"])
def test_backend_dither_is_the_seeded_one(backend):
    pytest.importorskip(backend)
    wav = np.zeros(SR, np.float32)  # silence: dither alone decides the features
    ours = compute_fbank(wav, SR, dither=1.0, rng=np.random.default_rng(3))
    theirs = compute_fbank(wav, SR, dither=1.0, rng=np.random.default_rng(3), backend=backend)
    assert (theirs - ours).abs().max() <= MAX_ABS
