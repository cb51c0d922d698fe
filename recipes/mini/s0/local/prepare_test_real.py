"""Decode the Asterisk prompt recordings of test_real to 16 kHz mono 16-bit wavs.

Prefers the G.722 files (wideband, 16 kHz; decoded with ffmpeg); a prompt with only the 8 kHz
wav is upsampled to 16 kHz with soxr, and `utt2source` says which one each utterance used.
Prompts longer than `--max_duration` seconds (long IVR monologues) are dropped and counted.

Reads IN_DIR/{text,names} from asterisk_prompts.py; writes DATA_DIR/{wav.scp,text,utt2dur,
utt2source} and the wavs under WAV_DIR.

Usage: prepare_test_real.py --nj 2 data/local/test_real data/local/test_real/wav data/test_real
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import soundfile as sf
from asterisk_prompts import DEFAULT_SOUNDS
from kaldi_files import read_table, write_table

from wenet_eff.data.audio import AudioError, load_audio, resample

SAMPLE_RATE = 16000


def source_of(name: str, sounds_dir: str) -> str:
    """ "g722" when the prompt has a G.722 file, else "wav8k" (the 8 kHz wav)."""
    return "g722" if os.path.isfile(os.path.join(sounds_dir, name + ".g722")) else "wav8k"


def decode(name: str, sounds_dir: str, out_path: str) -> None:
    """Write prompt `name` as a 16 kHz wav at `out_path`, from the source `source_of` picks.

    Raises:
        RuntimeError: the file cannot be decoded.
    """
    tmp = out_path + ".tmp.wav"
    if source_of(name, sounds_dir) == "g722":
        g722 = os.path.join(sounds_dir, name + ".g722")
        cmd = ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "g722", "-i", g722,
               "-ar", str(SAMPLE_RATE), "-ac", "1", "-c:a", "pcm_s16le", tmp]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{g722}: ffmpeg failed: {proc.stderr.strip()[-300:]}")
    else:
        try:
            wav, sr = load_audio(os.path.join(sounds_dir, name + ".wav"))
        except AudioError as exc:
            raise RuntimeError(str(exc)) from exc
        sf.write(tmp, resample(wav, sr, SAMPLE_RATE), SAMPLE_RATE, subtype="PCM_16")
    os.replace(tmp, out_path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sounds_dir", default=DEFAULT_SOUNDS)
    parser.add_argument("--max_duration", type=float, default=20.0, help="seconds")
    parser.add_argument("--nj", type=int, default=2)
    parser.add_argument("--max_utts", type=int, default=0, help="only the first N prompts (0: all)")
    parser.add_argument("in_dir", help="holds text and names from asterisk_prompts.py")
    parser.add_argument("wav_dir")
    parser.add_argument("data_dir")
    args = parser.parse_args()
    texts = read_table(os.path.join(args.in_dir, "text"))
    if args.max_utts > 0:
        texts = dict(sorted(texts.items())[: args.max_utts])
    names = read_table(os.path.join(args.in_dir, "names"))
    os.makedirs(args.wav_dir, exist_ok=True)
    os.makedirs(args.data_dir, exist_ok=True)
    paths = {key: os.path.abspath(os.path.join(args.wav_dir, f"{key}.wav")) for key in texts}

    def work(key: str) -> float:
        if not os.path.isfile(paths[key]):
            decode(names[key], args.sounds_dir, paths[key])
        return sf.info(paths[key]).duration

    with ThreadPoolExecutor(args.nj) as pool:
        durations = dict(zip(texts, pool.map(work, texts), strict=True))
    kept = sorted(key for key, dur in durations.items() if dur <= args.max_duration)
    sources = {key: source_of(names[key], args.sounds_dir) for key in kept}
    files = {
        "wav.scp": paths,
        "text": texts,
        "utt2dur": {key: f"{durations[key]:.3f}" for key in kept},
        "utt2source": sources,
    }
    for name, table in files.items():
        write_table(os.path.join(args.data_dir, name), table, kept)
    hours = sum(durations[key] for key in kept) / 3600
    print(
        f"{args.data_dir}/{{wav.scp,text,utt2dur,utt2source}}: {len(kept)} utterances, "
        f"{hours:.3f} h (sources: {dict(Counter(sources.values()))}); "
        f"{len(durations) - len(kept)} longer than {args.max_duration:g} s dropped",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
