"""Audio I/O: read wav/flac (whole file or a segment) as float32 mono, resample, speed perturb.

Multi-channel audio is downmixed to mono by averaging its channels (as `sox -c 1` and
`ffmpeg -ac 1` do; the C++ runtime's reader does the same), so a recording whose first channel
is silent is not read as silence. A WAV whose data chunk is cut short (its header declares more
audio than the file holds: a partial copy or an interrupted write) is refused as
`truncated_audio`, as the C++ runtime refuses it, rather than read in part against the whole
transcript.
"""

from __future__ import annotations

import io
import os
import struct
from collections.abc import Callable
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr

# Skip reasons an AudioError can carry; the dataset counts skipped utterances by these names.
MISSING_FILE = "missing_file"
BAD_AUDIO = "bad_audio"
EMPTY_AUDIO = "empty_audio"
SAMPLE_RATE_TOO_LOW = "sample_rate_too_low"
TRUNCATED_AUDIO = "truncated_audio"

# A WAV data chunk size of 0xFFFFFFFF is what a writer to a pipe leaves (it cannot seek back to
# fill it in): the data runs to the end of the file.
_UNKNOWN_WAV_SIZE = 0xFFFFFFFF

# on_downmix(num_channels): told when a multi-channel file was averaged to mono.
DownmixFn = Callable[[int], None]


class AudioError(Exception):
    """An audio file cannot be used; `reason`: one of the skip reasons above."""

    def __init__(self, path: str, reason: str, detail: str) -> None:
        super().__init__(f"{path}: {detail}")
        self.path = path
        self.reason = reason


def load_audio(
    path: str | os.PathLike,
    start: float | None = None,
    end: float | None = None,
    on_downmix: DownmixFn | None = None,
) -> tuple[np.ndarray, int]:
    """Read an audio file (anything libsndfile reads: wav, flac, ...) as float32 mono.

    Args:
        path: the audio file.
        start: segment start in seconds (None: beginning of the file).
        end: segment end in seconds (None: end of the file). Only the segment's frames are read.
        on_downmix: called with the number of channels when a multi-channel file is averaged.

    Returns:
        (wav (N,) float32 in [-1, 1], the mean of the channels of a multi-channel file;
        sample rate in Hz).

    Raises:
        AudioError: the file is missing, unreadable, corrupt, truncated, empty, or the segment
            is empty.
    """
    label = os.fspath(path)
    if not os.path.isfile(label):
        raise AudioError(label, MISSING_FILE, "no such audio file")
    with open(label, "rb") as f:
        _check_wav_length(f, label)
    return _read(label, label, start, end, on_downmix)


def load_audio_bytes(
    data: bytes,
    name: str,
    start: float | None = None,
    end: float | None = None,
    on_downmix: DownmixFn | None = None,
) -> tuple[np.ndarray, int]:
    """Like `load_audio` for an encoded file held in memory (e.g. a tar shard member `name`)."""
    stream = io.BytesIO(data)
    _check_wav_length(stream, name)
    return _read(stream, name, start, end, on_downmix)


def _check_wav_length(f: BinaryIO, label: str) -> None:
    """Refuse a RIFF/WAVE file whose data chunk declares more bytes than the file holds (other
    formats pass: libsndfile reports their damage itself). Leaves `f` at its start.

    Raises:
        AudioError: (truncated_audio) naming both durations.
    """
    size = f.seek(0, io.SEEK_END)
    f.seek(0)
    header = f.read(12)
    byte_rate, pos = 0, 12
    while header[:4] == b"RIFF" and header[8:12] == b"WAVE" and pos + 8 <= size:
        f.seek(pos)
        chunk, chunk_size = struct.unpack("<4sI", f.read(8))
        if chunk == b"fmt " and len(fmt := f.read(12)) == 12:
            byte_rate = struct.unpack("<I", fmt[8:12])[0]  # bytes per second
        elif chunk == b"data":
            held = size - pos - 8
            if chunk_size > held and chunk_size != _UNKNOWN_WAV_SIZE and byte_rate > 0:
                raise AudioError(
                    label,
                    TRUNCATED_AUDIO,
                    f"truncated WAV: its header says {chunk_size / byte_rate:.2f} s, the file "
                    f"holds {held / byte_rate:.2f} s (a partial copy or an interrupted write; "
                    "copy or write it again)",
                )
            break
        pos += 8 + chunk_size + (chunk_size & 1)
    f.seek(0)


def _read(
    source: str | io.BytesIO,
    label: str,
    start: float | None,
    end: float | None,
    on_downmix: DownmixFn | None,
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
    if data.shape[1] > 1:
        wav = data.mean(axis=1, dtype=np.float32)
        if on_downmix is not None:
            on_downmix(data.shape[1])
    else:
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
