"""Global CMVN statistics (WeNet's JSON `global_cmvn`) of the fbank features of a data.list.

Usage: compute_cmvn_stats.py --in_data_list data/train/data.list --out_cmvn data/train/global_cmvn \
           [--num_workers 2] [--max_utts N] [--num_mel_bins 80 --frame_length 25 --frame_shift 10]
           [--sample_rate 16000 --min_sample_rate 16000]

Features are computed exactly as training computes them: audio resampled to `--sample_rate`
(`data.sample_rate`) and refused below `--min_sample_rate` (`data.min_sample_rate`) by
`wenet_eff.data.audio.to_sample_rate`, then `wenet_eff.data.features.compute_fbank` without
dither. Utterances that cannot be used are skipped, counted and named with the reason on stderr.
"""

from __future__ import annotations

import argparse
import sys

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--in_data_list", required=True)
    parser.add_argument("--out_cmvn", required=True)
    parser.add_argument("--num_workers", type=int, default=0)
    parser.add_argument("--max_utts", type=int, default=0, help="use only the first N (0: all)")
    parser.add_argument("--num_mel_bins", type=int, default=80)
    parser.add_argument("--frame_length", type=int, default=25, help="ms")
    parser.add_argument("--frame_shift", type=int, default=10, help="ms")
    parser.add_argument("--sample_rate", type=int, default=16000, help="Hz, data.sample_rate")
    parser.add_argument(
        "--min_sample_rate", type=int, default=16000, help="Hz, data.min_sample_rate"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    entries = read_data_list(args.in_data_list)
    if args.max_utts:
        entries = entries[: args.max_utts]
    fbank_opts = {
        "num_mel_bins": args.num_mel_bins,
        "frame_length": args.frame_length,
        "frame_shift": args.frame_shift,
    }
    stats, skipped = compute_stats(
        entries, fbank_opts, args.num_workers, args.sample_rate, args.min_sample_rate
    )
    for message in skipped:
        print(f"compute_cmvn_stats: skipped {message}", file=sys.stderr)
    if stats.frame_num == 0:
        sys.exit(f"{args.in_data_list}: no usable utterance, {args.out_cmvn} not written")
    stats.write(args.out_cmvn)
    print(
        f"{args.out_cmvn}: {stats.frame_num} frames from {len(entries) - len(skipped)} "
        f"utterances ({len(skipped)} skipped)",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
