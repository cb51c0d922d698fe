"""Kaldi log-mel filterbank features through kaldi-native-fbank, with WeNet's conventions."""

from __future__ import annotations

import kaldi_native_fbank as knf
import numpy as np
import torch

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


def compute_fbank(
    wav: np.ndarray,
    sample_rate: int,
    num_mel_bins: int = 80,
    frame_length: int = 25,
    frame_shift: int = 10,
    dither: float = 0.0,
    rng: np.random.Generator | None = None,
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

    Returns:
        (T, D) float32, T = `num_frames(N, sample_rate, frame_length, frame_shift)` (may be 0).
    """
    samples = np.asarray(wav, dtype=np.float32) * INT16_SCALE
    if dither > 0.0:
        # Dither here rather than in the extractor, whose internal RNG cannot be seeded.
        noise = (rng or np.random.default_rng()).standard_normal(samples.shape[0], dtype=np.float32)
        samples += dither * noise
    extractor = fbank_extractor(sample_rate, num_mel_bins, frame_length, frame_shift)
    extractor.accept_waveform(float(sample_rate), samples)
    extractor.input_finished()
    return read_frames(extractor, 0, extractor.num_frames_ready)


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
