"""A held-out domain for adaptation experiments: one voice never heard in training speaking a
small adaptation set (training sentences), a dev set and a test set (dev/test sentences).

Sentence indices come from the keys of DATA/{train,dev,test}/text (`<voice>-<index>`), so
the adaptation set says only sentences the base model was trained on, and the domain's test
set only sentences it never trained on; the voice is what is new. Prosody, tape speed, gain,
silence and noise are drawn per utterance as for the corpus (synthesize.py).

Writes OUT/synth/wav/*.wav and OUT/{adapt,dev,test}/{wav.scp,text,utt2dur,data.list}.

Usage: make_domain.py --sentences data/local/sentences.tsv --data data --voice flite-awb \
    --num_adapt 300 --num_dev 50 --num_test 300 data/domain_flite-awb
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys

from generate_sentences import read_sentences
from kaldi_files import read_table, write_table
from synthesize import _draw_job, run_jobs, write_index
from voices import available_voices


def sentence_indices(data_dir: str, split: str) -> list[int]:
    """The sentence indices of DATA/split (the numeric suffix of its keys), sorted."""
    keys = read_table(os.path.join(data_dir, split, "text"))
    return sorted({int(key.rsplit("-", 1)[1]) for key in keys})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", required=True)
    parser.add_argument("--data", required=True, help="the corpus data dir (train/dev/test)")
    parser.add_argument("--voice", required=True, help="a voice name from voices.py")
    parser.add_argument("--num_adapt", type=int, default=300)
    parser.add_argument("--num_dev", type=int, default=50)
    parser.add_argument("--num_test", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--nj", type=int, default=2)
    parser.add_argument("out_dir")
    args = parser.parse_args()
    voices = {v.name: v for v in available_voices()}
    if args.voice not in voices:
        sys.exit(f"unknown voice '{args.voice}' (known: {', '.join(sorted(voices))})")
    voice = voices[args.voice]
    trained = (
        read_table(os.path.join(args.data, "train", "utt2voice"))
        if os.path.exists(os.path.join(args.data, "train", "utt2voice"))
        else {}
    )
    if args.voice in set(trained.values()):
        sys.exit(f"voice '{args.voice}' is in the training data: not a held-out domain")
    sentences = read_sentences(args.sentences)
    rng = random.Random(args.seed)
    train_ids = sentence_indices(args.data, "train")
    held_ids = sentence_indices(args.data, "dev") + sentence_indices(args.data, "test")
    rng.shuffle(train_ids)
    rng.shuffle(held_ids)
    if args.num_adapt > len(train_ids) or args.num_dev + args.num_test > len(held_ids):
        sys.exit(
            f"asked for {args.num_adapt} adaptation and {args.num_dev}+{args.num_test} held-out "
            f"sentences; there are {len(train_ids)} and {len(held_ids)}"
        )
    plan = {
        "adapt": train_ids[: args.num_adapt],
        "dev": held_ids[: args.num_dev],
        "test": held_ids[args.num_dev : args.num_dev + args.num_test],
    }
    jobs = [
        _draw_job(rng, f"{voice.name}-{split}-{i:05d}", split, voice, sentences[i])
        for split, ids in plan.items()
        for i in ids
    ]
    synth = os.path.join(args.out_dir, "synth")
    durations = run_jobs(jobs, synth, args.nj)
    write_index(jobs, durations, synth)
    wav_dir = os.path.abspath(os.path.join(synth, "wav"))
    for split in plan:
        kept = [j for j in jobs if j.split == split and j.key in durations]
        out = os.path.join(args.out_dir, split)
        os.makedirs(out, exist_ok=True)
        wavs = {j.key: os.path.join(wav_dir, f"{j.key}.wav") for j in kept}
        write_table(os.path.join(out, "wav.scp"), wavs)
        write_table(os.path.join(out, "text"), {j.key: j.text for j in kept})
        write_table(os.path.join(out, "utt2dur"), {j.key: f"{durations[j.key]:.3f}" for j in kept})
        with open(os.path.join(out, "data.list"), "w", encoding="utf-8") as f:
            for j in kept:
                f.write(json.dumps({"key": j.key, "wav": wavs[j.key], "txt": j.text}) + "\n")
        hours = sum(durations[j.key] for j in kept) / 3600
        print(f"{out}: {len(kept)} utterances, {hours * 60:.1f} min", file=sys.stderr)


if __name__ == "__main__":
    main()
