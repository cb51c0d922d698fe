"""Audio I/O: read wav/flac (whole file or a segment) as float32 mono, resample, speed perturb."""

from __future__ import annotations

import io
import os

import numpy as np
import soundfile as sf
import soxr

# Skip reasons an AudioError can carry; the dataset counts skipped utterances by these names.
MISSING_FILE = "missing_file"
BAD_AUDIO = "bad_audio"
EMPTY_AUDIO = "empty_audio"
SAMPLE_RATE_TOO_LOW = "sample_rate_too_low"


class AudioError(Exception):
    """An audio file cannot be used; `reason`: one of the skip reasons above."""

    def __init__(self, path: str, reason: str, detail: str) -> None:
        super().__init__(f"{path}: {detail}")
        self.path = path
        self.reason = reason


def load_audio(
    path: str | os.PathLike, start: float | None = None, end: float | None = None
) -> tuple[np.ndarray, int]:
    """Read an audio file (anything libsndfile reads: wav, flac, ...) as float32 mono.

    Args:
        path: the audio file.
        start: segment start in seconds (None: beginning of the file).
        end: segment end in seconds (None: end of the file). Only the segment's frames are read.

    Returns:
        (wav (N,) float32 in [-1, 1], first channel of a multi-channel file; sample rate in Hz).

    Raises:
        AudioError: the file is missing, unreadable, corrupt, empty, or the segment is empty.
    """
    label = os.fspath(path)
    if not os.path.isfile(label):
        raise AudioError(label, MISSING_FILE, "no such audio file")
    return _read(label, label, start, end)


def load_audio_bytes(
    data: bytes, name: str, start: float | None = None, end: float | None = None
) -> tuple[np.ndarray, int]:
    """Like `load_audio` for an encoded file held in memory (e.g. a tar shard member `name`)."""
    return _read(io.BytesIO(data), name, start, end)


def _read(
    source: str | io.BytesIO, label: str, start: float | None, end: float | None
) -> tuple[np.ndarray, int]:
    try:
        with sf.SoundFile(source) as f:
            sr = f.samplerate
            total = f.frames
            first = 0 if start is None else max(0, round(start * sr))
            last = total if end is None else min(total, round(end * sr))
            if total == 0:
                raise AudioError(label, EMPTY_AUDIO, "audio has 0 samples")
            if last <= first:
                raise AudioError(
                    label, EMPTY_AUDIO, f"segment [{start}, {end}] s is empty ({total} samples)"
                )
            f.seek(first)
            data = f.read(last - first, dtype="float32", always_2d=True)
    except AudioError:
        raise
    except (sf.LibsndfileError, RuntimeError, ValueError, OSError) as exc:
        raise AudioError(label, BAD_AUDIO, f"cannot decode audio ({exc})") from exc
    wav = np.ascontiguousarray(data[:, 0])
    if wav.size == 0:
        raise AudioError(label, EMPTY_AUDIO, "no samples could be read")
    if not np.isfinite(wav).all():
        raise AudioError(label, BAD_AUDIO, "audio contains NaN or infinite samples")
    # Float files may exceed full scale; int PCM is already within [-1, 1).
    np.clip(wav, -1.0, 1.0, out=wav)
    return wav, sr


def resample(wav: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample `wav (N,)` from `sr_in` to `sr_out` Hz with soxr; returns (≈N*sr_out/sr_in,)."""
    if sr_in == sr_out:
        return wav
    return soxr.resample(wav, sr_in, sr_out).astype(np.float32, copy=False)


def to_sample_rate(
    wav: np.ndarray, sr: int, sample_rate: int, min_sample_rate: int, label: str
) -> np.ndarray:
    """Resample `wav (N,)` from `sr` to `sample_rate` Hz, as features are computed everywhere.

    Audio below `min_sample_rate` is refused rather than upsampled: upsampling adds no band,
    so the model would see features unlike its training data.

    Raises:
        AudioError: `sr < min_sample_rate` (reason sample_rate_too_low), naming `label`.
    """
    if sr < min_sample_rate:
        raise AudioError(
            label, SAMPLE_RATE_TOO_LOW, f"{sr} Hz is below min_sample_rate {min_sample_rate} Hz"
        )
    return resample(wav, sr, sample_rate)


def speed_perturb(wav: np.ndarray, sr: int, speed: float) -> np.ndarray:
    """Play `wav (N,)` `speed` times faster, changing tempo and pitch like sox `speed`.

    The samples are reinterpreted as recorded at `sr*speed` and resampled back to `sr`,
    so the output has ≈N/speed samples at the same sample rate.
    """
    if speed <= 0:
        raise ValueError(f"speed must be > 0, got {speed}")
    if speed == 1.0:
        return wav
    return soxr.resample(wav, sr * speed, sr).astype(np.float32, copy=False)
