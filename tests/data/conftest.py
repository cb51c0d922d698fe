"""Fixtures for the data tests: small synthetic wavs, a real 8 kHz recording, a data.list corpus,
char units, configs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from omegaconf import DictConfig, OmegaConf

from wenet_eff.data.dataset import DataConfig
from wenet_eff.data.tokenizer import CharTokenizer, char_units_from_texts, write_units

REAL_8K = Path("/usr/share/asterisk/sounds/en/hello-world.wav")  # asterisk-core-sounds-en-wav
WORDS = "the quick brown fox jumps over a lazy dog while seven zebras play in warm weather".split()


def write_tone(
    path: Path,
    seconds: float,
    sr: int = 16000,
    freq: float = 440.0,
    channels: int = 1,
    seed: int = 0,
    subtype: str | None = None,
) -> np.ndarray:
    """Write a sine + light noise (channel c > 0 gets 2**c times the frequency); returns (N, C)."""
    n = int(round(seconds * sr))
    t = np.arange(n) / sr
    noise = np.random.default_rng(seed).standard_normal((n, channels))
    data = np.stack([0.3 * np.sin(2 * np.pi * freq * 2**c * t) for c in range(channels)], axis=1)
    data = (data + 0.02 * noise).astype(np.float32)
    sf.write(path, data, sr, subtype=subtype)
    return data


@dataclass
class Corpus:
    """A directory of good utterances with its data.list, units.txt and tokenizer."""

    root: Path
    entries: list[dict]
    units: Path
    tokenizer: CharTokenizer

    @property
    def keys(self) -> list[str]:
        return [e["key"] for e in self.entries]

    def write_list(self, entries: list[dict], name: str = "data.list") -> Path:
        path = self.root / name
        path.write_text("".join(json.dumps(e) + "\n" for e in entries), encoding="utf-8")
        return path


def sentence(i: int) -> str:
    rng = np.random.default_rng(1000 + i)
    return " ".join(rng.choice(WORDS, size=int(rng.integers(2, 5))))


@pytest.fixture
def corpus(tmp_path: Path) -> Corpus:
    """12 utterances of 0.4-1.5 s (38-148 frames) with English text; char units of the texts."""
    entries = []
    for i in range(12):
        wav = tmp_path / f"utt{i:02d}.wav"
        write_tone(wav, 0.4 + 0.1 * i, freq=200.0 + 50 * i, seed=i)
        entries.append({"key": f"utt{i:02d}", "wav": str(wav), "txt": sentence(i)})
    units = tmp_path / "units.txt"
    write_units(units, char_units_from_texts(WORDS + [sentence(0)], normalize="english"))
    return Corpus(tmp_path, entries, units, CharTokenizer(units, normalize="english"))


@pytest.fixture
def real_8k() -> Path:
    """A real 8 kHz speech recording ("hello world", 2.8 s); skips when it is not installed."""
    if not REAL_8K.exists():
        pytest.skip(f"{REAL_8K} missing: install asterisk-core-sounds-en-wav")
    return REAL_8K


@pytest.fixture
def tone():
    """`write_tone(path, seconds, sr=16000, freq=440, channels=1, seed=0, subtype=None)`."""
    return write_tone


@pytest.fixture
def make_cfg():
    """`make_cfg(**overrides) -> DictConfig` (see `small_data_cfg`)."""
    return small_data_cfg


def small_data_cfg(**overrides) -> DictConfig:
    """A small-batch DataConfig without randomness unless asked for; `a__b=v` sets a.b."""
    cfg = OmegaConf.structured(DataConfig)
    base = {
        "num_workers": 0,
        "batch_size": 4,
        "shuffle_size": 6,
        "sort_size": 4,
        "dither": 0.0,
        "spec_aug": False,
        "filter": {"max_length": 400, "min_length": 10},
    }
    cfg = OmegaConf.merge(cfg, base)
    for name, value in overrides.items():
        OmegaConf.update(cfg, name.replace("__", "."), value, merge=False)
    return cfg
