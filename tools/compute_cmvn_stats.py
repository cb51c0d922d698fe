#!/usr/bin/env python3
"""Global CMVN statistics (WeNet's JSON `global_cmvn`) of the training features; WeNet's command
line.

Usage: compute_cmvn_stats.py --num_workers 16 --train_config conf/train.yaml \
           --in_scp data/train/wav.scp --out_cmvn data/train/global_cmvn
       compute_cmvn_stats.py [--train_config conf/train.yaml] --in_data_list data/train/data.list \
           --out_cmvn data/train/global_cmvn [--num_workers 2] [--max_utts N]

The utterances: a Kaldi `wav.scp` (`--in_scp`; a value `path,start,end` is a segment in
seconds, as in WeNet) or a data.list (`--in_data_list`, whose `start`/`end` cut segments). The
features are computed exactly as training computes them, with the `data` settings of
`--train_config` (ours, a recipe's Hydra config or a WeNet train.yaml: `load_config`; without it
the packaged defaults): audio resampled to `data.sample_rate` and refused below
`data.min_sample_rate` by `wenet_eff.data.audio.to_sample_rate`, then
`wenet_eff.data.features.compute_fbank` with `data.num_mel_bins`, `data.frame_length`,
`data.frame_shift` and no dither. Utterances that cannot be used are skipped, counted and named
with the reason on stderr.
"""

from __future__ import annotations

import argparse
import sys

import torch
from kaldi_files import read_table
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from wenet_eff.config import load_config, schema
from wenet_eff.data.audio import AudioError, load_audio, to_sample_rate
from wenet_eff.data.cmvn import CmvnStats
from wenet_eff.data.features import compute_fbank
from wenet_eff.data.sources import read_data_list


class UtteranceStats(Dataset):
    """Item i: (key, CmvnStats of utterance i's features, or the error message).

    Args:
        entries: validated data.list entries.
        fbank_opts: `compute_fbank` keyword arguments (num_mel_bins, frame_length, frame_shift).
        sample_rate: Hz the features are computed at (data.sample_rate).
        min_sample_rate: audio below this rate is skipped (data.min_sample_rate).
    """

    def __init__(
        self, entries: list[dict], fbank_opts: dict, sample_rate: int, min_sample_rate: int
    ) -> None:
        self.entries = entries
        self.fbank_opts = fbank_opts
        self.sample_rate = sample_rate
        self.min_sample_rate = min_sample_rate

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> tuple[str, CmvnStats | str]:
        entry = self.entries[index]
        try:
            wav, sr = load_audio(entry["wav"], entry.get("start"), entry.get("end"))
            wav = to_sample_rate(wav, sr, self.sample_rate, self.min_sample_rate, entry["wav"])
        except AudioError as exc:
            return entry["key"], f"{exc.reason}: {exc}"
        feats = compute_fbank(wav, self.sample_rate, **self.fbank_opts)
        if feats.shape[0] == 0:
            return entry["key"], f"too_short: {entry['wav']}: too short for one feature frame"
        stats = CmvnStats()
        stats.add(feats)
        return entry["key"], stats


def compute_stats(
    entries: list[dict],
    fbank_opts: dict,
    num_workers: int = 0,
    sample_rate: int = 16000,
    min_sample_rate: int = 16000,
) -> tuple[CmvnStats, list[str]]:
    """Accumulate the statistics of `entries` (see `UtteranceStats` for the arguments).

    Workers return per-utterance statistics, not features, so little crosses processes.

    Returns:
        (stats, `key: reason: detail` messages of skipped utterances).
    """
    loader = DataLoader(
        UtteranceStats(entries, fbank_opts, sample_rate, min_sample_rate),
        batch_size=None,
        num_workers=num_workers,
        collate_fn=lambda item: item,
    )
    total = CmvnStats()
    skipped = []
    for key, stats in tqdm(loader, total=len(entries), desc="cmvn", unit="utt"):
        if isinstance(stats, str):
            skipped.append(f"{key}: {stats}")
        else:
            total.merge(stats)
    return total, skipped


def read_scp(path: str) -> list[dict]:
    """The utterances of a Kaldi `wav.scp` as data.list-style entries (`key`, `wav`, and
    `start`/`end` for WeNet's segmented value `path,start,end`).

    Raises:
        ValueError: a value with another number of commas, or start/end not numbers or not
            0 <= start < end (naming the file and key).
    """
    entries = []
    for key, value in read_table(path).items():
        fields = value.split(",")
        entry = {"key": key, "wav": fields[0]}
        if len(fields) == 3:
            try:
                start, end = float(fields[1]), float(fields[2])
            except ValueError:
                raise ValueError(f"{path}: {key}: start/end are not numbers: {value!r}") from None
            if not 0 <= start < end:
                raise ValueError(f"{path}: {key}: need 0 <= start < end, got {value!r}")
            entry.update(start=start, end=end)
        elif len(fields) != 1:
            raise ValueError(f"{path}: {key}: expected 'path' or 'path,start,end', got {value!r}")
        entries.append(entry)
    return entries


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    inputs = parser.add_mutually_exclusive_group(required=True)
    inputs.add_argument("--in_scp", help="Kaldi wav.scp (WeNet's input)")
    inputs.add_argument("--in_data_list", help="data.list (start/end: segments)")
    parser.add_argument("--out_cmvn", default="global_cmvn")
    parser.add_argument(
        "--train_config", default="", help="its data settings (ours or WeNet's train.yaml)"
    )
    parser.add_argument("--num_workers", type=int, default=0)
    parser.add_argument("--max_utts", type=int, default=0, help="use only the first N (0: all)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    try:
        data = (load_config(args.train_config) if args.train_config else schema()).data
        entries = read_scp(args.in_scp) if args.in_scp else read_data_list(args.in_data_list)
    except (OSError, ValueError) as exc:
        sys.exit(f"compute_cmvn_stats: {exc}")
    if args.max_utts:
        entries = entries[: args.max_utts]
    fbank_opts = {k: data[k] for k in ("num_mel_bins", "frame_length", "frame_shift")}
    stats, skipped = compute_stats(
        entries, fbank_opts, args.num_workers, data.sample_rate, data.min_sample_rate
    )
    for message in skipped:
        print(f"compute_cmvn_stats: skipped {message}", file=sys.stderr)
    if stats.frame_num == 0:
        sys.exit(f"{args.in_scp or args.in_data_list}: no usable utterance, {args.out_cmvn} not "
                 "written")  # fmt: skip
    stats.write(args.out_cmvn)
    print(
        f"{args.out_cmvn}: {stats.frame_num} frames ({fbank_opts['num_mel_bins']} mel bins at "
        f"{data.sample_rate} Hz) from {len(entries) - len(skipped)} utterances "
        f"({len(skipped)} skipped)",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
