"""Streaming latency: per-chunk compute, first-partial and final latency, RTF per chunk size.

    python -m wenet_eff.bench.streaming_latency --config exp/mini_streaming/train.yaml \
        --checkpoint exp/mini_streaming/avg_2.pt --data_list data/test/data.list --num_utts 30

Each utterance goes through a `StreamingSession` in pieces of `--piece_ms` (100 ms) as a live
microphone would deliver them. The compute of each call is measured for real; the arrival of
the pieces is simulated (piece i arrives at (i + 1) * piece_ms of audio time, and a call starts
when both its piece has arrived and the previous call has finished), so the benchmark runs as
fast as the machine allows and still reports what a live user would see:

- chunk ms: audio per chunk (chunk x 40 ms for 4x subsampling of 10 ms frames);
- per-chunk compute ms: features + encoder chunk + CTC prefix beam, per decoded chunk;
- first-partial latency: from the end of the audio frames behind the first recognised token to
  the moment that token is shown (buffering until its chunk is complete, plus compute; the
  model's own emission delay is not included, as it cannot be measured without alignments);
- final latency: from the end of the audio to the rescored final result (the last chunk,
  attention rescoring, and any backlog);
- RTF: total compute / audio time, with the thread count stated.

Full context (chunk -1) shows nothing before the end: its first token appears with the final
result, so its first-partial latency is the time from that token's audio to the end, plus compute.
Without --data_list the input is noise (`--seconds` each) and the weights may be random: the
compute figures hold, the latencies of tokens do not mean much. Writes JSON and prints a table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

from wenet_eff.bench.common import add_model_args, build_bench_model, environment, write_json
from wenet_eff.data.audio import load_audio, to_sample_rate
from wenet_eff.decode.streaming import EndpointConfig, StreamingSession


def _load_wavs(cfg, data_list: str, num_utts: int, seconds: float) -> list[tuple[str, np.ndarray]]:
    """(key, float32 waveform at the model's rate) per utterance."""
    rate = cfg.data.sample_rate
    if not data_list:
        rng = np.random.default_rng(0)
        n = int(seconds * rate)
        return [
            (f"noise{i}", (0.1 * rng.standard_normal(n)).astype(np.float32))
            for i in range(num_utts)
        ]
    wavs = []
    with open(data_list, encoding="utf-8") as f:
        for line in f:
            if len(wavs) >= num_utts:
                break
            entry = json.loads(line)
            wav, sr = load_audio(entry["wav"], entry.get("start"), entry.get("end"))
            wav = to_sample_rate(wav, sr, rate, cfg.data.min_sample_rate, entry["wav"])
            wavs.append((entry["key"], wav))
    if not wavs:
        raise ValueError(f"{data_list}: no utterances")
    return wavs


def _stream_one(session: StreamingSession, wav: np.ndarray, rate: int, piece_ms: int) -> dict:
    """Stream one utterance on a simulated real-time clock; figures in seconds."""
    session.reset()
    piece = int(rate * piece_ms / 1000)
    duration = len(wav) / rate
    clock = 0.0  # when the device is next free (audio time axis)
    compute = 0.0
    chunk_seconds: list[float] = []
    first_partial = None
    frames_before = 0
    opts = session.fbank_opts
    frame_shift, frame_length = opts[3] / 1000, opts[2] / 1000
    sub = session.model.encoder.embed.subsampling_rate

    def heard(frame: int) -> float:
        """Audio time of the last input sample behind encoder frame `frame`."""
        end = (frame * sub + session.context - 1) * frame_shift + frame_length
        return min(end, duration)

    for i, start in enumerate(range(0, len(wav), piece)):
        arrival = min((i + 1) * piece, len(wav)) / rate
        t0 = time.perf_counter()
        result = session.accept_waveform(wav[start : start + piece])
        spent = time.perf_counter() - t0
        clock = max(clock, arrival) + spent
        compute += spent
        new_chunks = (result.frames - frames_before) // max(session.chunk_size, 1)
        if new_chunks > 0:
            chunk_seconds.extend([spent / new_chunks] * new_chunks)
        frames_before = result.frames
        if first_partial is None and result.tokens:
            first_partial = clock - heard(result.token_frames[0])
    t0 = time.perf_counter()
    final = session.finalize()
    spent = time.perf_counter() - t0
    compute += spent
    clock = max(clock, duration) + spent
    final_latency = clock - duration
    if first_partial is None:  # nothing shown before the end (full context): the final result
        first_partial = clock - heard(final.token_frames[0]) if final.tokens else final_latency
    return {
        "seconds": duration,
        "compute": compute,
        "chunk_compute": chunk_seconds,
        "first_partial": first_partial,
        "final": final_latency,
        "tokens": final.tokens,
    }


def _summary(values: list[float]) -> dict:
    if not values:
        return {"mean": 0.0, "p50": 0.0, "p90": 0.0}
    ordered = sorted(values)
    return {
        "mean": statistics.fmean(ordered),
        "p50": ordered[len(ordered) // 2],
        "p90": ordered[min(int(0.9 * len(ordered)), len(ordered) - 1)],
    }


def run(args: argparse.Namespace) -> dict:
    cfg, model = build_bench_model(args)
    model.eval()
    wavs = _load_wavs(cfg, args.data_list, args.num_utts, args.seconds)
    frame_ms = model.encoder.embed.subsampling_rate * cfg.data.frame_shift
    rows = []
    for chunk in args.chunks:
        session = StreamingSession(
            model,
            chunk_size=chunk,
            num_left_chunks=args.num_left_chunks,
            beam_size=args.beam_size,
            sample_rate=cfg.data.sample_rate,
            num_mel_bins=cfg.data.num_mel_bins,
            frame_length=cfg.data.frame_length,
            frame_shift=cfg.data.frame_shift,
            endpoint=EndpointConfig(rules=[]),
        )
        # warm-up (allocator, thread pool) on the first second of the first utterance
        _stream_one(session, wavs[0][1][: cfg.data.sample_rate], cfg.data.sample_rate, 100)
        per_utt = [
            _stream_one(session, wav, cfg.data.sample_rate, args.piece_ms) for _, wav in wavs
        ]
        audio = sum(u["seconds"] for u in per_utt)
        chunk_compute = [s for u in per_utt for s in u["chunk_compute"]]

        def ms(values: list[float]) -> dict:
            return {k: v * 1000 for k, v in _summary(values).items()}

        rows.append(
            {
                "chunk": chunk,
                "chunk_ms": chunk * frame_ms if chunk > 0 else None,
                "chunk_compute_ms": ms(chunk_compute),
                "first_partial_ms": ms([u["first_partial"] for u in per_utt]),
                "final_ms": ms([u["final"] for u in per_utt]),
                "rtf": sum(u["compute"] for u in per_utt) / audio,
                "audio_seconds": audio,
                "hypotheses": {key: u["tokens"] for (key, _), u in zip(wavs, per_utt, strict=True)},
            }
        )
    return {
        "model": cfg.model.name,
        "params": model.num_params(),
        "utterances": len(wavs),
        "piece_ms": args.piece_ms,
        "num_left_chunks": args.num_left_chunks,
        "beam_size": args.beam_size,
        "random_weights": not args.checkpoint,
        "data_list": args.data_list or None,
        "results": rows,
        **environment(),
    }


def print_table(result: dict) -> None:
    print(
        f"streaming latency: {result['model']}, {result['utterances']} utterances, "
        f"{result['piece_ms']} ms pieces, {result['threads']} threads, beam {result['beam_size']}"
        + (" [random weights]" if result["random_weights"] else "")
    )
    print(
        f"{'chunk':>6}{'chunk ms':>10}{'compute/chunk ms':>18}{'first partial ms':>18}"
        f"{'(p90)':>8}{'final ms':>10}{'(p90)':>8}{'RTF':>8}"
    )
    for row in result["results"]:
        name = str(row["chunk"]) if row["chunk"] > 0 else "full"
        chunk_ms = f"{row['chunk_ms']:.0f}" if row["chunk_ms"] else "-"
        compute = f"{row['chunk_compute_ms']['mean']:.1f}" if row["chunk"] > 0 else "-"
        first, final = row["first_partial_ms"], row["final_ms"]
        print(
            f"{name:>6}{chunk_ms:>10}{compute:>18}{first['p50']:>18.0f}{first['p90']:>8.0f}"
            f"{final['p50']:>10.0f}{final['p90']:>8.0f}{row['rtf']:>8.4f}"
        )


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_model_args(p, "bench_results/streaming_latency.json")
    p.add_argument("--data_list", default="", help="data.list of the utterances (default: noise)")
    p.add_argument("--num_utts", type=int, default=20)
    p.add_argument("--seconds", type=float, default=5.0, help="noise length without --data_list")
    p.add_argument("--chunks", type=int, nargs="+", default=[4, 8, 16, -1])
    p.add_argument("--num_left_chunks", type=int, default=-1)
    p.add_argument("--piece_ms", type=int, default=100, help="audio per accept_waveform call")
    p.add_argument("--beam_size", type=int, default=10)
    args = p.parse_args(argv)
    result = run(args)
    print_table(result)
    write_json(result, args.out)
    return result


if __name__ == "__main__":
    main()
