"""The mini recipe's corpus plan and a tiny real synthesis run with espeak-ng."""

from __future__ import annotations

import os
import shutil
from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf
from generate_sentences import generate_sentences
from synthesize import SAMPLE_RATE, plan_corpus, run_jobs, write_index
from voices import HELD_OUT_VOICES, VOICES, Prosody, Voice, piper_available, synthesize

ESPEAK = Voice("espeak-en-us", "espeak", "en-us")


def test_plan_holds_out_voices_and_sentences():
    sentences = generate_sentences(400, seed=2)
    jobs = plan_corpus(sentences, VOICES, num_test=60, num_dev=40, seed=9)
    assert jobs == plan_corpus(sentences, VOICES, num_test=60, num_dev=40, seed=9)
    by_split = {s: [j for j in jobs if j.split == s] for s in ("train", "dev", "test")}
    assert [len(by_split[s]) for s in ("train", "dev", "test")] == [300, 40, 60]
    texts = {s: {j.text for j in js} for s, js in by_split.items()}
    assert not texts["test"] & texts["train"] and not texts["dev"] & texts["train"]
    voices = {s: {j.voice.name for j in js} for s, js in by_split.items()}
    assert not set(HELD_OUT_VOICES) & (voices["train"] | voices["dev"])
    assert set(HELD_OUT_VOICES) <= voices["test"] and voices["test"] - set(HELD_OUT_VOICES)
    assert len({j.key for j in jobs}) == len(jobs)


def test_plan_needs_enough_sentences():
    with pytest.raises(ValueError, match="cannot fill"):
        plan_corpus(generate_sentences(10, seed=1), VOICES, num_test=6, num_dev=4, seed=1)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
def test_tiny_espeak_run_writes_16k_mono_speech(tmp_path):
    sentences = generate_sentences(4, seed=8)
    plan = plan_corpus(sentences, VOICES, num_test=1, num_dev=1, seed=3)
    jobs = [replace(job, voice=ESPEAK) for job in plan]
    durations = run_jobs(jobs, str(tmp_path), nj=1)
    assert sorted(durations) == sorted(job.key for job in jobs)
    for job in jobs:
        path = tmp_path / "wav" / f"{job.key}.wav"
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.subtype) == (SAMPLE_RATE, 1, "PCM_16")
        wav, _ = sf.read(path)
        assert info.duration == pytest.approx(durations[job.key], abs=1e-3)
        assert 0.5 < info.duration < 10
        assert np.sqrt(np.mean(wav**2)) > 0.01 and np.abs(wav).max() <= job.peak + 0.1
    mtimes = {p: os.path.getmtime(p) for p in (tmp_path / "wav").iterdir()}
    assert run_jobs(jobs, str(tmp_path), nj=1) == durations  # restart: nothing redone
    assert mtimes == {p: os.path.getmtime(p) for p in (tmp_path / "wav").iterdir()}
    write_index(jobs, durations, str(tmp_path))
    scp = (tmp_path / "wav.scp").read_text().splitlines()
    assert [line.split()[0] for line in scp] == sorted(job.key for job in jobs)


def _installed(voice: Voice) -> bool:
    if voice.engine == "piper":
        return piper_available()
    program = {"flite": "flite", "festival": "text2wave", "espeak": "espeak-ng"}[voice.engine]
    return shutil.which(program) is not None


@pytest.mark.parametrize(
    "name", ["flite-kal16", "festival-ked", "festival-slt-hts", "espeak-en-us-f2", "piper-joe"]
)
def test_each_engine_speaks(name):
    voice = next(v for v in VOICES if v.name == name)
    if not _installed(voice):
        pytest.skip(f"{voice.engine} voice {voice.model} not installed")
    slow, fast = (synthesize(voice, "press one for sales.", Prosody(t, 40)) for t in (0.8, 1.25))
    (wav, sr), (fast_wav, _) = slow, fast
    assert sr >= 8000 and wav.dtype == np.float32 and wav.ndim == 1
    assert 0.5 < wav.shape[0] / sr < 5 and np.sqrt(np.mean(wav**2)) > 0.01
    assert fast_wav.shape[0] < wav.shape[0]  # the tempo control reaches the engine


def test_espeak_speaker_pool_holds_the_test_variant_out():
    names = [v.name for v in VOICES]
    assert len(names) == len(set(names))
    espeak = [v for v in VOICES if v.engine == "espeak" and v.name not in HELD_OUT_VOICES]
    assert len(espeak) > 300  # accents x variants: many speakers, not a handful
    assert not any(v.model.endswith("+f5") for v in espeak)
