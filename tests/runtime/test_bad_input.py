"""The C++ runtime on bad input, as the Python side handles it: the WAV reader averages the
channels of a multi-channel file and refuses a truncated data chunk (truncated_audio, both
durations) exactly as wenet_eff.data.audio does."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from tests.bad_audio import piped_wav, stereo_silent_left, truncated_wav
from wenet_eff.data.audio import load_audio


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
