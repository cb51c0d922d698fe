#!/usr/bin/env python3
"""Pack a Kaldi data dir (`wav.scp`, `text` [, `segments`]) into tar shards (WeNet's shard
format) and list them; WeNet's command line.

Usage: make_shard_list.py --num_utts_per_shard 1000 --num_threads 2 [--prefix shards] \
           [--segments segments] [--resample 16000] wav.scp text shards_dir shards.list

Utterances are matched as make_raw_list.py matches them (keys of wav.scp and text, or each
segment's key against text and its recording against wav.scp); those missing on either side
are left out and counted. Each shard `shards_dir/PREFIX_000000000.tar` holds, per utterance,
`KEY.txt` (UTF-8 transcript) then `KEY.wav` (mono 16-bit PCM: several channels are averaged,
and counted on stderr; a segment is cut out; resampled to `--resample` Hz unless 0).
Utterances whose audio cannot be read are left out, counted and named on stderr.
`shards.list` gets one tar path per line (as `shards_dir` was given). Tars are written to a
temporary name and renamed, so a crash never leaves half a shard.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor

import soundfile as sf
from make_raw_list import read_kaldi_dir, report_missing
from tqdm import tqdm

from wenet_eff.data.audio import AudioError, DownmixFn, load_audio, resample


def _add_member(tar: tarfile.TarFile, name: str, data: bytes, mtime: float) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = mtime
    tar.addfile(info, io.BytesIO(data))


def encode_wav(entry: dict, sample_rate: int, on_downmix: DownmixFn | None = None) -> bytes:
    """The (segment of the) entry's audio as mono 16-bit PCM wav bytes at `sample_rate` (0: as
    is); `on_downmix` as `load_audio` calls it.

    Raises:
        AudioError: the audio is missing, unreadable, truncated or empty.
    """
    wav, sr = load_audio(entry["wav"], entry.get("start"), entry.get("end"), on_downmix)
    if sample_rate and sr != sample_rate:
        wav, sr = resample(wav, sr, sample_rate), sample_rate
    buffer = io.BytesIO()
    sf.write(buffer, wav, sr, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def write_shard(
    entries: list[dict], tar_path: str, sample_rate: int
) -> tuple[list[str], list[str]]:
    """Write one shard; returns (the messages of the utterances left out (key: reason), the keys
    whose audio had several channels, averaged)."""
    skipped: list[str] = []
    downmixed: list[str] = []
    tmp = f"{tar_path}.tmp{os.getpid()}"
    mtime = time.time()
    with tarfile.open(tmp, "w") as tar:
        for entry in entries:
            try:
                wav_bytes = encode_wav(
                    entry, sample_rate, lambda _, key=entry["key"]: downmixed.append(key)
                )
            except AudioError as exc:
                skipped.append(f"{entry['key']}: {exc}")
                continue
            _add_member(tar, f"{entry['key']}.txt", entry["txt"].encode("utf-8"), mtime)
            _add_member(tar, f"{entry['key']}.wav", wav_bytes, mtime)
    os.replace(tmp, tar_path)
    return skipped, downmixed


def make_shards(
    entries: list[dict],
    shards_dir: str,
    per_shard: int,
    num_threads: int,
    sample_rate: int,
    prefix: str = "shards",
) -> tuple[list[str], list[str], list[str]]:
    """Write all shards `shards_dir/PREFIX_%09d.tar` with `num_threads` threads; returns (tar
    paths, skipped messages, keys downmixed to mono)."""
    if per_shard < 1:
        raise ValueError(f"--num_utts_per_shard must be >= 1, got {per_shard}")
    os.makedirs(shards_dir, exist_ok=True)
    chunks = [entries[i : i + per_shard] for i in range(0, len(entries), per_shard)]
    paths = [os.path.join(shards_dir, f"{prefix}_{i:09d}.tar") for i in range(len(chunks))]
    skipped: list[str] = []
    downmixed: list[str] = []
    with ThreadPoolExecutor(num_threads) as pool:
        jobs = pool.map(write_shard, chunks, paths, [sample_rate] * len(chunks))
        for messages, keys in tqdm(jobs, total=len(chunks), desc="shards", unit="tar"):
            skipped.extend(messages)
            downmixed.extend(keys)
    return paths, skipped, downmixed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num_utts_per_shard", type=int, default=1000)
    parser.add_argument("--num_threads", type=int, default=1)
    parser.add_argument("--prefix", default="shards", help="tar names: PREFIX_000000000.tar")
    parser.add_argument("--segments", help="Kaldi segments file (utt recording start end)")
    parser.add_argument("--resample", type=int, default=16000, help="Hz; 0 keeps the rate")
    parser.add_argument("wav_scp")
    parser.add_argument("text")
    parser.add_argument("shards_dir")
    parser.add_argument("shards_list")
    args = parser.parse_args()
    try:
        entries, missing = read_kaldi_dir(args.wav_scp, args.text, args.segments)
        paths, skipped, downmixed = make_shards(
            entries,
            args.shards_dir,
            args.num_utts_per_shard,
            args.num_threads,
            args.resample,
            args.prefix,
        )
    except ValueError as exc:
        sys.exit(f"make_shard_list: {exc}")
    with open(args.shards_list, "w", encoding="utf-8") as f:
        f.writelines(f"{path}\n" for path in paths)
    report_missing("make_shard_list", missing)
    for message in skipped:
        print(f"make_shard_list: skipped {message}", file=sys.stderr)
    if downmixed:
        print(f"make_shard_list: downmixed {len(downmixed)} multi-channel files to mono "
              f"(channels averaged), e.g. {', '.join(downmixed[:5])}", file=sys.stderr)  # fmt: skip
    print(
        f"{args.shards_list}: {len(paths)} shards in {args.shards_dir} with "
        f"{len(entries) - len(skipped)} utterances ({len(skipped)} skipped)",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
