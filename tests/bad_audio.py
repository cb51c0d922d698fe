"""Audio files that used to be read wrong, written for the Python and C++ runtime tests alike:
a stereo wav whose first channel is silent, and a wav whose data chunk is cut short."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000


def stereo_silent_left(path: Path, seconds: float = 0.8) -> np.ndarray:
    """A 16-bit stereo wav whose channel 0 is silent and channel 1 a tone; returns (N, 2)."""
    t = np.arange(round(seconds * SR)) / SR
    data = np.stack([np.zeros_like(t), 0.5 * np.sin(2 * np.pi * 440 * t)], axis=1)
    sf.write(path, data, SR, subtype="PCM_16")
    return sf.read(path, dtype="float32")[0]


def truncated_wav(path: Path, declared: float = 2.83, held: float = 1.41) -> Path:
    """A 16-bit mono wav whose header declares `declared` s and whose data stops after `held` s."""
    t = np.arange(round(declared * SR)) / SR
    buffer = io.BytesIO()
    sf.write(buffer, 0.3 * np.sin(2 * np.pi * 300 * t), SR, format="WAV", subtype="PCM_16")
    path.write_bytes(buffer.getvalue()[: 44 + 2 * round(held * SR)])
    return path


def piped_wav(path: Path, seconds: float = 1.0) -> Path:
    """A whole 16-bit mono wav with the sizes a writer to a pipe leaves (0xFFFFFFFF)."""
    wav = truncated_wav(path, seconds, seconds).read_bytes()
    path.write_bytes(wav[:4] + b"\xff\xff\xff\xff" + wav[8:40] + b"\xff\xff\xff\xff" + wav[44:])
    return path
