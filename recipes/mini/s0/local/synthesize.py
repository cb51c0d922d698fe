"""Synthesise the mini corpus: plan who says what in which split, then run the TTS engines.

The plan is deterministic in `--seed`: sentences are shuffled and cut into test / dev / train
sentence sets (no sentence in two sets); train and dev utterances use the training voices
(weighted), test utterances alternate between the held-out voices (never in train or dev) and
the training voices. Each utterance gets its own tempo, pitch, "tape speed" (tempo and pitch
together, as sox `speed`), gain, edge silence and, sometimes, light white noise at 20-40 dB SNR.
Output is 16 kHz mono 16-bit PCM.

Restartable: an utterance whose wav exists is not synthesised again.

Writes OUT_DIR/wav/<key>.wav and the index files OUT_DIR/{wav.scp,text,utt2voice,utt2split,
utt2dur,utt2prosody} (Kaldi style, `key value` per line, sorted by key).

Usage: synthesize.py --sentences sentences.tsv --nj 2 --num_test 200 --num_dev 150 OUT_DIR
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from dataclasses import dataclass
from multiprocessing import Pool

import numpy as np
import soundfile as sf
from generate_sentences import Sentence, read_sentences
from kaldi_files import write_table
from tqdm import tqdm
from voices import HELD_OUT_VOICES, Prosody, Voice, available_voices, synthesize

from wenet_eff.data.audio import resample, speed_perturb

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class Job:
    """One utterance to synthesise, with every random choice already drawn."""

    key: str
    split: str
    voice: Voice
    text: str
    prompt: str
    prosody: Prosody
    tape: float  # resampling speed factor: tempo and pitch together
    peak: float  # output peak amplitude in (0, 1)
    snr_db: float | None  # white noise level; None: clean
    pad: tuple[float, float]  # silence before / after, seconds
    seed: int  # noise generator seed


def plan_corpus(
    sentences: list[Sentence], voices: tuple[Voice, ...], num_test: int, num_dev: int, seed: int
) -> list[Job]:
    """Assign each sentence to a split, a voice and its prosody (see module docstring).

    Raises:
        ValueError: too few sentences, or a held-out voice is unavailable.
    """
    if num_test + num_dev >= len(sentences):
        raise ValueError(
            f"{len(sentences)} sentences cannot fill {num_test} test + {num_dev} dev + train"
        )
    held_out = [v for v in voices if v.name in HELD_OUT_VOICES]
    train_voices = [v for v in voices if v.name not in HELD_OUT_VOICES]
    if len(held_out) != len(HELD_OUT_VOICES):
        raise ValueError(f"held-out voices {HELD_OUT_VOICES} are not all available")
    rng = random.Random(seed)
    order = list(range(len(sentences)))
    rng.shuffle(order)
    weights = [v.weight for v in train_voices]
    jobs = []
    for rank, index in enumerate(order):
        split = "test" if rank < num_test else "dev" if rank < num_test + num_dev else "train"
        if split == "test" and rank % 2 == 0:
            voice = held_out[(rank // 2) % len(held_out)]
        else:
            voice = rng.choices(train_voices, weights=weights)[0]
        jobs.append(_draw_job(rng, f"{voice.name}-{index:05d}", split, voice, sentences[index]))
    return sorted(jobs, key=lambda job: job.key)


def _draw_job(rng: random.Random, key: str, split: str, voice: Voice, sentence: Sentence) -> Job:
    return Job(
        key=key,
        split=split,
        voice=voice,
        text=sentence.text,
        prompt=sentence.prompt,
        prosody=Prosody(tempo=round(rng.uniform(0.85, 1.2), 3), pitch=rng.randint(30, 70)),
        tape=round(rng.uniform(0.94, 1.06), 3),
        peak=round(rng.uniform(0.1, 0.9), 3),
        snr_db=round(rng.uniform(20.0, 40.0), 1) if rng.random() < 0.35 else None,
        pad=(round(rng.uniform(0.05, 0.25), 2), round(rng.uniform(0.05, 0.25), 2)),
        seed=rng.getrandbits(31),
    )


def render(job: Job) -> np.ndarray:
    """Synthesise `job` and post-process it to 16 kHz float32 (N,) in [-peak, peak]."""
    wav, sr = synthesize(job.voice, job.prompt, job.prosody)
    wav = speed_perturb(resample(wav, sr, SAMPLE_RATE), SAMPLE_RATE, job.tape)
    wav = wav / np.abs(wav).max() * job.peak
    rng = np.random.default_rng(job.seed)
    before, after = (round(p * SAMPLE_RATE) for p in job.pad)
    wav = np.concatenate([np.zeros(before, np.float32), wav, np.zeros(after, np.float32)])
    if job.snr_db is not None:
        power = np.mean(np.square(wav[before : len(wav) - after]))
        noise = rng.standard_normal(wav.shape[0]) * np.sqrt(power / 10 ** (job.snr_db / 10))
        wav = wav + noise.astype(np.float32)
    return np.clip(wav, -1.0, 1.0).astype(np.float32)


def _run_job(args: tuple[Job, str]) -> tuple[str, float, str]:
    """Worker: (key, duration in s, error message or "") for one job; skips existing wavs."""
    job, path = args
    try:
        if os.path.isfile(path):
            return job.key, sf.info(path).duration, ""
        wav = render(job)
        tmp = path + ".tmp.wav"
        sf.write(tmp, wav, SAMPLE_RATE, subtype="PCM_16")
        os.replace(tmp, path)
        return job.key, wav.shape[0] / SAMPLE_RATE, ""
    except (RuntimeError, OSError, ValueError) as exc:
        return job.key, 0.0, str(exc)


def run_jobs(jobs: list[Job], out_dir: str, nj: int) -> dict[str, float]:
    """Synthesise `jobs` with `nj` processes into OUT_DIR/wav; returns {key: duration}.

    Failed utterances are reported on stderr (key and reason) and left out.
    """
    wav_dir = os.path.join(out_dir, "wav")
    os.makedirs(wav_dir, exist_ok=True)
    work = [(job, os.path.join(wav_dir, f"{job.key}.wav")) for job in jobs]
    durations: dict[str, float] = {}
    failures = []
    with Pool(nj) as pool:
        results = pool.imap_unordered(_run_job, work, chunksize=8)
        for key, duration, error in tqdm(results, total=len(work), desc="synthesis", unit="utt"):
            if error:
                failures.append(f"{key}: {error}")
            else:
                durations[key] = duration
    for failure in failures:
        print(f"synthesis failed: {failure}", file=sys.stderr)
    if failures:
        print(f"{len(failures)} of {len(jobs)} utterances failed (see above)", file=sys.stderr)
    return durations


def write_index(jobs: list[Job], durations: dict[str, float], out_dir: str) -> None:
    """Kaldi-style index files for the synthesised utterances (absolute wav paths)."""
    wav_dir = os.path.abspath(os.path.join(out_dir, "wav"))
    kept = [job for job in jobs if job.key in durations]
    tables = {
        "wav.scp": {j.key: os.path.join(wav_dir, f"{j.key}.wav") for j in kept},
        "text": {j.key: j.text for j in kept},
        "utt2voice": {j.key: j.voice.name for j in kept},
        "utt2split": {j.key: j.split for j in kept},
        "utt2dur": {j.key: f"{durations[j.key]:.3f}" for j in kept},
        "utt2prosody": {j.key: _describe_prosody(j) for j in kept},
    }
    for name, table in tables.items():
        write_table(os.path.join(out_dir, name), table)


def _describe_prosody(job: Job) -> str:
    return (
        f"tempo={job.prosody.tempo} pitch={job.prosody.pitch} tape={job.tape} peak={job.peak} "
        f"snr_db={job.snr_db}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", required=True, help="TSV from generate_sentences.py")
    parser.add_argument("--num_test", type=int, default=200, help="test-only sentences")
    parser.add_argument("--num_dev", type=int, default=150, help="dev-only sentences")
    parser.add_argument("--max_utts", type=int, default=0, help="use only the first N (trials)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--nj", type=int, default=2, help="parallel synthesis processes")
    parser.add_argument("out_dir")
    args = parser.parse_args()
    voices = available_voices()
    if not any(v.engine == "piper" for v in voices):
        print("piper voice package not installed: synthesising without piper", file=sys.stderr)
    sentences = read_sentences(args.sentences)
    jobs = plan_corpus(sentences, voices, args.num_test, args.num_dev, args.seed)
    if args.max_utts:
        jobs = random.Random(args.seed).sample(jobs, min(args.max_utts, len(jobs)))
        jobs.sort(key=lambda job: job.key)
    start = time.time()
    durations = run_jobs(jobs, args.out_dir, args.nj)
    elapsed = time.time() - start
    write_index(jobs, durations, args.out_dir)
    hours = sum(durations.values()) / 3600
    print(
        f"{args.out_dir}: {len(durations)} utterances, {hours:.2f} h of audio from "
        f"{len({j.voice.name for j in jobs})} voices in {elapsed:.0f} s with {args.nj} processes "
        f"(wav/, wav.scp, text, utt2voice, utt2split, utt2dur, utt2prosody)",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
