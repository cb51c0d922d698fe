"""Recipe test helpers: espeak-ng speech, corpora in official layouts, run.sh in a copy."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf

from wenet_eff.data.audio import resample

SR = 16000
REPO = Path(__file__).resolve().parents[2]


def speech(text: str, voice: str, work: Path) -> np.ndarray:
    """`text` spoken by espeak-ng `voice`, as 16 kHz float32 samples (N,)."""
    raw = work / "espeak.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(raw), text], check=True)
    wav, sr = sf.read(raw, dtype="float32")
    return resample(wav, sr, SR)


def write_librispeech_subset(subset: Path, utts: dict[str, str], voices: dict[str, str]) -> None:
    """LibriSpeech layout: subset/<reader>/<chapter>/<key>.flac + <reader>-<chapter>.trans.txt.

    Args:
        utts: key (`reader-chapter-utt`) -> upper-case transcript.
        voices: reader -> espeak-ng voice.
    """
    for key, text in utts.items():
        reader, chapter, _ = key.split("-")
        chapter_dir = subset / reader / chapter
        chapter_dir.mkdir(parents=True, exist_ok=True)
        with open(chapter_dir / f"{reader}-{chapter}.trans.txt", "a") as f:
            f.write(f"{key} {text}\n")
        wav = speech(text.lower(), voices[reader], subset)
        sf.write(chapter_dir / f"{key}.flac", wav, SR, subtype="PCM_16")


def run_recipe(recipe: str, work: Path, *args: str) -> tuple[Path, str]:
    """Copy recipes/<recipe>/s0 (run.sh, path.sh, local/, conf/; tools/ linked) into work/s0
    once and run `run.sh args` there; path.sh finds the repository through the tools link.
    Returns the copy and stdout + stderr (asserts exit 0)."""
    s0 = work / "s0"
    if not s0.exists():
        s0.mkdir(parents=True)
        for name in ("run.sh", "path.sh", "local", "conf"):
            src = REPO / "recipes" / recipe / "s0" / name
            (shutil.copytree if src.is_dir() else shutil.copy)(src, s0 / name)
        (s0 / "tools").symlink_to(REPO / "tools")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("MAIN_ROOT", None)
    proc = subprocess.run(
        ["bash", "run.sh", *args], cwd=s0, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return s0, proc.stdout + proc.stderr
