"""The small corpus `make gpu-check` trains on, made here: the GPU machine has no TTS engine.

    python tools/gpu_data.py [--num_utts 100] [--seed 0] .gpu_data

Writes OUT/wav/<key>.wav (espeak-ng speech: random sentences over a small vocabulary, voices,
speeds and pitches drawn per utterance, 16 kHz 16-bit), OUT/train.list (all but the last tenth)
and OUT/cv.list (data.list lines whose wav paths are relative to the repository root, where
the check runs), OUT/units.txt (characters) and OUT/global_cmvn (kaldi-native-fbank, the
packaged data defaults). About 6 MB for 100 utterances. Restartable: a wav that exists is
kept.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

import soundfile as sf

from wenet_eff.data.audio import resample
from wenet_eff.data.cmvn import CmvnStats
from wenet_eff.data.features import compute_fbank
from wenet_eff.data.tokenizer import char_units_from_texts, write_units

SR = 16000
WORDS = (
    "the a red green blue small big cat dog bird fish tree house car road river city morning "
    "evening light water stone paper music voice window garden runs walks sings reads opens "
    "sees finds brings keeps quickly slowly today again under over near with"
).split()
VOICES = ("en", "en-us", "en-gb-x-rp", "en+f3", "en+m3")


def synthesize(text: str, voice: str, speed: int, pitch: int, path: Path) -> None:
    """espeak-ng speech of `text` as a 16 kHz 16-bit mono wav at `path`."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        cmd = ["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", str(raw), text]
        subprocess.run(cmd, check=True, capture_output=True)
        wav, sr = sf.read(raw, dtype="float32")
    sf.write(path, resample(wav, sr, SR), SR, subtype="PCM_16")


def make(out: Path, num_utts: int, seed: int) -> None:
    rng = random.Random(seed)
    (out / "wav").mkdir(parents=True, exist_ok=True)
    entries, stats = [], CmvnStats()
    for i in range(num_utts):
        key = f"gpu{i:04d}"
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 7)))
        voice, speed, pitch = rng.choice(VOICES), rng.randint(130, 200), rng.randint(30, 70)
        wav = out / "wav" / f"{key}.wav"
        if not wav.exists():
            synthesize(text, voice, speed, pitch, wav)
        samples, _ = sf.read(wav, dtype="float32")
        stats.add(compute_fbank(samples, SR))
        entries.append({"key": key, "wav": os.path.relpath(wav), "txt": text})
    cv = max(1, num_utts // 10)
    for name, part in (("train.list", entries[:-cv]), ("cv.list", entries[-cv:])):
        lines = "".join(json.dumps(e) + "\n" for e in part)
        (out / name).write_text(lines, encoding="utf-8")
    texts = [e["txt"] for e in entries]
    write_units(out / "units.txt", char_units_from_texts(texts, normalize="english"))
    stats.write(out / "global_cmvn")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--num_utts", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("out", type=Path, help="output folder (ignored by git: .gpu_data)")
    args = p.parse_args()
    if args.num_utts < 2:
        sys.exit("gpu_data: --num_utts must be >= 2 (train and cv)")
    make(args.out, args.num_utts, args.seed)
    size = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"gpu_data: {args.num_utts} utterances in {args.out} ({size / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
