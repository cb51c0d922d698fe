"""Make the recipe helpers importable: `tools/` scripts and the mini recipe's `local/` modules
import their siblings by name, as they do when run as scripts (path.sh puts tools/ on the path).
Fixture: a Kaldi data dir of espeak-ng speech, for the tools' command lines."""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / "tools"
MINI_LOCAL = REPO / "recipes" / "mini" / "s0" / "local"

for _path in (TOOLS, MINI_LOCAL):
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))


@dataclass
class SpokenDir:
    """A Kaldi data dir of espeak-ng speech: `wav.scp`, `text` (u1..u3, one 16 kHz wav each),
    and `segments` over one recording `rec` (u1, u2 and u3 one after another) in `seg/`."""

    root: Path
    texts: dict[str, str]
    audio: dict[str, np.ndarray]  # key -> 16 kHz samples
    segments: dict[str, tuple[float, float]]  # key -> (start, end) s in rec


@pytest.fixture(scope="session")
def spoken_dir(tmp_path_factory) -> SpokenDir:
    """Three short utterances spoken by espeak-ng (skips without it)."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("needs espeak-ng")
    from tests.recipes.helpers import SR, speech

    root = tmp_path_factory.mktemp("spoken")
    texts = {"u1": "GOOD MORNING", "u2": "THE CAT SAT", "u3": "HELLO WORLD"}
    audio = {key: speech(text.lower(), "en", root) for key, text in texts.items()}
    for key, wav in audio.items():
        sf.write(root / f"{key}.wav", wav, SR, subtype="PCM_16")
    (root / "wav.scp").write_text("".join(f"{k}\t{root / k}.wav\n" for k in texts))
    (root / "text").write_text("".join(f"{k} {t}\n" for k, t in texts.items()))
    seg = root / "seg"
    seg.mkdir()
    sf.write(seg / "rec.wav", np.concatenate(list(audio.values())), SR, subtype="PCM_16")
    segments, start = {}, 0.0
    for key, wav in audio.items():
        segments[key] = (start, start + len(wav) / SR)
        start += len(wav) / SR
    (seg / "wav.scp").write_text(f"rec {seg / 'rec.wav'}\n")
    (seg / "text").write_text((root / "text").read_text())
    (seg / "segments").write_text(
        "".join(f"{k} rec {s:.4f} {e:.4f}\n" for k, (s, e) in segments.items())
    )
    return SpokenDir(root, texts, audio, segments)
