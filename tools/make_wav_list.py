"""A `data.list` whose audio is all plain 16-bit WAV files, for readers of WAV only (the C++
runtime's decoder_main).

Usage: make_wav_list.py [--num_threads 2] [--resample 16000] data.list wav_dir out.list

An entry that already is a whole `.wav` file at the rate is kept as it is. Any other (FLAC,
Opus, ..., a segment with `start`/`end`, another sample rate) is written to `wav_dir/KEY.wav`
(mono 16-bit PCM at `--resample` Hz, the segment cut out, several channels averaged and counted;
written to a temporary name and renamed) and listed with that path. A multi-channel WAV kept as it
is, decoder_main downmixes the same way. Utterances whose audio cannot be read, or whose key holds
whitespace (it would split in the result file), are left out, counted and named on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import soundfile as sf
from make_shard_list import encode_wav
from tqdm import tqdm

from wenet_eff.data.audio import AudioError
from wenet_eff.data.sources import key_problem, read_data_list


def _usable_as_is(entry: dict, sample_rate: int) -> bool:
    if "start" in entry or "end" in entry or not entry["wav"].lower().endswith(".wav"):
        return False
    try:
        info = sf.info(entry["wav"])
    except (sf.LibsndfileError, RuntimeError, OSError):
        return False  # converting reports the error with the key
    return info.samplerate == sample_rate and info.format == "WAV"


def convert(entry: dict, wav_dir: str, sample_rate: int, downmixed: list[str]) -> dict | str:
    """The entry, with its audio as a WAV file; or "key: reason" when it cannot be used. The
    key of an entry whose audio had several channels (averaged) is appended to `downmixed`."""
    if problem := key_problem(entry["key"]):
        return problem
    if _usable_as_is(entry, sample_rate):
        return entry
    try:
        data = encode_wav(entry, sample_rate, lambda _: downmixed.append(entry["key"]))
    except AudioError as exc:
        return f"{entry['key']}: {exc}"
    path = os.path.join(wav_dir, f"{entry['key']}.wav")
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
    out = {k: v for k, v in entry.items() if k not in ("start", "end")}
    out["wav"] = os.path.abspath(path)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num_threads", type=int, default=1)
    parser.add_argument("--resample", type=int, default=16000, help="Hz")
    parser.add_argument("data_list")
    parser.add_argument("wav_dir")
    parser.add_argument("out_list")
    args = parser.parse_args()
    entries = read_data_list(args.data_list)
    os.makedirs(args.wav_dir, exist_ok=True)
    downmixed: list[str] = []
    with ThreadPoolExecutor(args.num_threads) as pool:
        jobs = pool.map(convert, entries, [args.wav_dir] * len(entries),
                        [args.resample] * len(entries), [downmixed] * len(entries))  # fmt: skip
        results = list(tqdm(jobs, total=len(entries), desc="wav", unit="utt"))
    kept = [r for r in results if isinstance(r, dict)]
    skipped = [r for r in results if isinstance(r, str)]
    tmp = f"{args.out_list}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(e, ensure_ascii=False) + "\n" for e in kept)
    os.replace(tmp, args.out_list)
    converted = sum(
        r is not e for r, e in zip(results, entries, strict=True) if isinstance(r, dict)
    )
    print(
        f"{args.out_list}: {len(kept)} utterances ({converted} written as WAV under "
        f"{args.wav_dir}), {len(skipped)} skipped",
        file=sys.stderr,
    )
    for message in skipped[:10]:
        print(f"  skipped {message}", file=sys.stderr)
    if downmixed:
        print(f"  downmixed {len(downmixed)} multi-channel files to mono (channels averaged), "
              f"e.g. {', '.join(downmixed[:5])}", file=sys.stderr)  # fmt: skip


if __name__ == "__main__":
    main()
