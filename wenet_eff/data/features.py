"""Kaldi log-mel filterbank features with WeNet's conventions.

Three implementations of Kaldi's algorithm, chosen by `data.feature_backend`:
- `kaldi_native_fbank` (default): kaldi-native-fbank, also the streaming session's online
  extractor;
- `torchaudio`: `torchaudio.compliance.kaldi.fbank`, as WeNet's own data pipeline computes it;
- `kaldifeat`: `kaldifeat.Fbank`, where that package is installed.
All three see the same int16-range samples with the same (seeded) dither, and agree up to
float32 rounding (tests/gpu/test_feature_backends.py states the tolerance). Audio is read by
`data.audio` for every backend: torchaudio >= 2.9 reads files through TorchCodec, which neither
this project nor the GPU image installs.
"""

from __future__ import annotations

import importlib
from types import ModuleType

import kaldi_native_fbank as knf
import numpy as np
import torch

FEATURE_BACKENDS = ("kaldi_native_fbank", "torchaudio", "kaldifeat")
# the module each backend needs; kaldi-native-fbank is a requirement, imported above
_BACKEND_MODULES = {"torchaudio": "torchaudio.compliance.kaldi", "kaldifeat": "kaldifeat"}

# WeNet feeds int16-range samples to the Kaldi fbank (torchaudio's kaldi.fbank on wav * 2**15).
INT16_SCALE = 32768.0


def num_frames(
    num_samples: int, sample_rate: int, frame_length: int = 25, frame_shift: int = 10
) -> int:
    """Frames Kaldi produces with snip_edges for `num_samples` (frame length/shift in ms)."""
    window = int(sample_rate * frame_length / 1000)
    shift = int(sample_rate * frame_shift / 1000)
    if num_samples < window:
        return 0
    return 1 + (num_samples - window) // shift


def feature_backend(name: str) -> ModuleType | None:
    """The module behind feature backend `name` (None for the default kaldi_native_fbank).

    Raises:
        ValueError: `name` is not a backend, or its package does not import here; the message
            names `data.feature_backend`, the reason and what to do.
    """
    if name not in FEATURE_BACKENDS:
        raise ValueError(f"data.feature_backend={name!r} is not one of {FEATURE_BACKENDS}")
    if name == "kaldi_native_fbank":
        return None
    try:
        return importlib.import_module(_BACKEND_MODULES[name])
    except Exception as exc:  # a wheel built for another torch fails with OSError/RuntimeError
        raise ValueError(
            f"data.feature_backend={name}: {name} does not import here "
            f"({type(exc).__name__}: {exc}); install {name} built for torch {torch.__version__}, "
            "or use data.feature_backend=kaldi_native_fbank (the default)"
        ) from exc


def compute_fbank(
    wav: np.ndarray,
    sample_rate: int,
    num_mel_bins: int = 80,
    frame_length: int = 25,
    frame_shift: int = 10,
    dither: float = 0.0,
    rng: np.random.Generator | None = None,
    backend: str = "kaldi_native_fbank",
) -> torch.Tensor:
    """Log-mel filterbank of a waveform.

    Kaldi defaults (povey window, snip_edges, pre-emphasis 0.97, DC removal, 20 Hz low cut)
    with WeNet's energy_floor 0.0 and int16 sample scale.

    Args:
        wav: (N,) float32 samples in [-1, 1].
        sample_rate: Hz.
        num_mel_bins: output dimension D.
        frame_length: window length in ms.
        frame_shift: hop in ms.
        dither: std of Gaussian noise added in the int16 sample domain (0: none).
        rng: noise source for dither, so features are reproducible under a seed
            (None: a fresh unseeded generator).
        backend: one of FEATURE_BACKENDS (`data.feature_backend`).

    Returns:
        (T, D) float32, T = `num_frames(N, sample_rate, frame_length, frame_shift)` (may be 0).
    """
    samples = np.asarray(wav, dtype=np.float32) * INT16_SCALE
    if dither > 0.0:
        # Dither here rather than in the extractor, whose internal RNG cannot be seeded.
        noise = (rng or np.random.default_rng()).standard_normal(samples.shape[0], dtype=np.float32)
        samples += dither * noise
    module = feature_backend(backend)
    if module is None:
        extractor = fbank_extractor(sample_rate, num_mel_bins, frame_length, frame_shift)
        extractor.accept_waveform(float(sample_rate), samples)
        extractor.input_finished()
        return read_frames(extractor, 0, extractor.num_frames_ready)
    if num_frames(len(samples), sample_rate, frame_length, frame_shift) == 0:
        return torch.zeros(0, num_mel_bins)
    if backend == "torchaudio":
        # WeNet's processor.compute_fbank, dither applied above
        return module.fbank(
            torch.from_numpy(samples).unsqueeze(0),
            num_mel_bins=num_mel_bins,
            frame_length=frame_length,
            frame_shift=frame_shift,
            dither=0.0,
            energy_floor=0.0,
            sample_frequency=sample_rate,
        )
    return _kaldifeat_fbank(module, sample_rate, num_mel_bins, frame_length, frame_shift)(
        torch.from_numpy(samples)
    )


def _kaldifeat_fbank(
    kaldifeat: ModuleType, sample_rate: int, num_mel_bins: int, frame_length: int, frame_shift: int
):
    """A kaldifeat.Fbank with the options of `fbank_extractor`."""
    opts = kaldifeat.FbankOptions()
    opts.frame_opts.samp_freq = float(sample_rate)
    opts.frame_opts.frame_length_ms = float(frame_length)
    opts.frame_opts.frame_shift_ms = float(frame_shift)
    opts.frame_opts.dither = 0.0
    opts.frame_opts.snip_edges = True
    opts.mel_opts.num_bins = num_mel_bins
    opts.energy_floor = 0.0
    return kaldifeat.Fbank(opts)


def fbank_extractor(
    sample_rate: int, num_mel_bins: int = 80, frame_length: int = 25, frame_shift: int = 10
) -> knf.OnlineFbank:
    """A kaldi-native-fbank online extractor with the options of `compute_fbank` (no dither).

    Feed it int16-range samples (`wav * INT16_SCALE`) in pieces of any size: the frames equal
    those of `compute_fbank` on the whole waveform (the streaming session relies on this).
    """
    opts = knf.FbankOptions()
    opts.frame_opts.samp_freq = float(sample_rate)
    opts.frame_opts.frame_length_ms = float(frame_length)
    opts.frame_opts.frame_shift_ms = float(frame_shift)
    opts.frame_opts.dither = 0.0
    opts.frame_opts.snip_edges = True
    opts.mel_opts.num_bins = num_mel_bins
    opts.energy_floor = 0.0
    return knf.OnlineFbank(opts)


def read_frames(extractor: knf.OnlineFbank, start: int, end: int) -> torch.Tensor:
    """Frames [start, end) of an online extractor as a (end - start, D) float32 tensor."""
    # This binding only exposes per-frame reads; the loop costs ~5% of the extraction itself.
    dim = extractor.dim
    feats = np.empty((max(end - start, 0), dim), dtype=np.float32)
    for i in range(start, end):
        feats[i - start] = extractor.get_frame(i)
    return torch.from_numpy(feats)
