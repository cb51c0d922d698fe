"""Pack a `data.list` into tar shards (WeNet's shard format) and list them.

Usage: make_shard_list.py --num_utts_per_shard 1000 --num_threads 2 [--resample 16000] \
           data.list shards_dir shards.list

Each shard `shards_dir/shards_000000000.tar` holds, per utterance, `KEY.txt` (UTF-8 transcript)
then `KEY.wav` (mono 16-bit PCM: several channels are averaged, and counted on stderr; a segment
with `start`/`end` is cut out; resampled to `--resample` Hz unless 0). Utterances whose audio
cannot be read, or whose key holds whitespace (it would split in the text and result files), are
left out, counted and named on stderr. `shards.list` gets one tar path per line (as `shards_dir`
was given). Tars are written to a temporary name and renamed, so a crash never leaves half a
shard.
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
from tqdm import tqdm

from wenet_eff.data.audio import AudioError, DownmixFn, load_audio, resample
from wenet_eff.data.sources import key_problem, read_data_list


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
            if problem := key_problem(entry["key"]):
                skipped.append(problem)
                continue
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
    entries: list[dict], shards_dir: str, per_shard: int, num_threads: int, sample_rate: int
) -> tuple[list[str], list[str], list[str]]:
    """Write all shards with `num_threads` threads; returns (tar paths, skipped messages, keys
    downmixed to mono)."""
    if per_shard < 1:
        raise ValueError(f"--num_utts_per_shard must be >= 1, got {per_shard}")
    os.makedirs(shards_dir, exist_ok=True)
    chunks = [entries[i : i + per_shard] for i in range(0, len(entries), per_shard)]
    paths = [os.path.join(shards_dir, f"shards_{i:09d}.tar") for i in range(len(chunks))]
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
    parser.add_argument("--resample", type=int, default=16000, help="Hz; 0 keeps the rate")
    parser.add_argument("data_list")
    parser.add_argument("shards_dir")
    parser.add_argument("shards_list")
    args = parser.parse_args()
    entries = read_data_list(args.data_list)
    paths, skipped, downmixed = make_shards(
        entries, args.shards_dir, args.num_utts_per_shard, args.num_threads, args.resample
    )
    with open(args.shards_list, "w", encoding="utf-8") as f:
        f.writelines(f"{path}\n" for path in paths)
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
