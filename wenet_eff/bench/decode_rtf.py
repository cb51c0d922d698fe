"""Decoding real-time factor of a model config on this machine (Python eager, CPU).

    python -m wenet_eff.bench.decode_rtf --model u2pp_conformer --threads 2

RTF = processing time / audio time, per decoding method, with the thread count stated. With
no checkpoint the weights are random: the encoder and the CTC search cost are representative;
attention search is bounded by the encoder length (random weights rarely emit eos), so it is
reported only with `--checkpoint`. Writes JSON and prints a table.
"""

from __future__ import annotations

import argparse
import time

import torch

from wenet_eff.bench.common import add_model_args, build_bench_model, environment, write_json


def _time(fn, repeats: int) -> float:
    fn()  # warm-up: allocator, thread pool
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def run(args: argparse.Namespace) -> dict:
    cfg, model = build_bench_model(args)
    model.eval()
    frames = int(args.seconds * 100)
    feats = torch.randn(args.batch_size, frames, cfg.model.input_dim)
    lens = torch.full((args.batch_size,), frames)
    audio = args.batch_size * args.seconds
    methods = ["ctc_greedy_search", "ctc_prefix_beam_search", "attention_rescoring"]
    if args.checkpoint:
        methods.append("attention")
    rows = []
    with torch.inference_mode():
        enc = _time(lambda: model.encoder(feats, lens), args.repeats)
        rows.append({"stage": "encoder", "seconds": enc, "rtf": enc / audio})
        for chunk in args.chunks:
            t = _time(lambda c=chunk: model.encoder(feats, lens, c, -1), args.repeats)
            rows.append(
                {"stage": f"encoder chunk={chunk} (masked)", "seconds": t, "rtf": t / audio}
            )
        for method in methods:
            t = _time(
                lambda m=method: model.decode(
                    [m], feats, lens, beam_size=args.beam_size, ctc_weight=0.3, reverse_weight=0.3
                ),
                args.repeats,
            )
            rows.append({"stage": method, "seconds": t, "rtf": t / audio})
    return {
        "model": cfg.model.name,
        "params": model.num_params(),
        "batch_size": args.batch_size,
        "utterance_seconds": args.seconds,
        "beam_size": args.beam_size,
        "random_weights": not args.checkpoint,
        "results": rows,
        **environment(),
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_model_args(p, "bench_results/decode_rtf.json")
    p.add_argument("--batch_size", type=int, default=1)
    p.add_argument("--seconds", type=float, default=10.0, help="length of each utterance")
    p.add_argument("--beam_size", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--chunks", type=int, nargs="*", default=[16])
    args = p.parse_args(argv)
    result = run(args)
    params = result["params"]["total"] / 1e6
    print(
        f"decode RTF: {result['model']} ({params:.1f}M params), {args.threads} threads, "
        f"batch {args.batch_size} x {args.seconds:g} s, beam {args.beam_size}"
        + (" [random weights]" if result["random_weights"] else "")
    )
    print(f"{'stage':<32}{'seconds':>10}{'RTF':>10}")
    for row in result["results"]:
        print(f"{row['stage']:<32}{row['seconds']:>10.3f}{row['rtf']:>10.4f}")
    write_json(result, args.out)
    return result


if __name__ == "__main__":
    main()
