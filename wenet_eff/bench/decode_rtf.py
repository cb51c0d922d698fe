"""Decoding real-time factor of a model config on this machine (Python eager; exported).

    python -m wenet_eff.bench.decode_rtf --model u2pp_conformer --threads 2
    python -m wenet_eff.bench.decode_rtf --model paper_dense_225m --device cuda --exported

RTF = processing time / audio time, per decoding method, with the thread count stated. With
no checkpoint the weights are random: the encoder and the CTC search cost are representative;
attention search is bounded by the encoder length (random weights rarely emit eos), so it is
reported only with `--checkpoint`. `--exported` adds the full-context encoder + CTC head
exported as the runtime's `encoder_full` graph (torch.export at this batch size, compiled with
AOTInductor for `--device`; the compile time is reported). Writes JSON and prints a table.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from functools import partial

import torch

from wenet_eff.bench.common import (
    add_device_arg,
    add_model_args,
    build_bench_model,
    environment,
    mean_seconds,
    write_json,
)
from wenet_eff.export.modules import EncoderFull, prepare_for_export
from wenet_eff.model import DECODE_METHODS
from wenet_eff.nn.attention import MultiHeadedAttention


def exported_encoder(model: torch.nn.Module, feats: torch.Tensor) -> tuple[object, float]:
    """(the AOTInductor-compiled full-context encoder + CTC head for inputs shaped like
    `feats (B, T, F)`, any B and T, on feats' device; seconds the export and compile took)."""
    start = time.perf_counter()
    module = EncoderFull(prepare_for_export(model)).eval()
    for layer in module.modules():  # the fused softmax kernel, as the runtime's .pt2 graphs
        if isinstance(layer, MultiHeadedAttention):
            layer.fused_softmax = True
    embed = module.embed  # the shortest input that gives an encoder frame, as export/package.py
    frames = torch.export.Dim.AUTO(min=embed.right_context + 1 + embed.subsampling_rate)
    # any batch size too, traced at 2 (1 would specialise): every run compiles the same graph,
    # so Inductor's caches serve a second batch size
    dynamic = {"feats": {0: torch.export.Dim("batch", min=1, max=1024), 1: frames}}
    example = feats[:1].expand(2, -1, -1).contiguous()
    ep = torch.export.export(module, (example,), dynamic_shapes=dynamic, strict=False)
    with tempfile.TemporaryDirectory() as tmp:
        path = torch._inductor.aoti_compile_and_package(ep, package_path=f"{tmp}/encoder.pt2")
        runner = torch._inductor.aoti_load_package(path)
    return runner, time.perf_counter() - start


def run(args: argparse.Namespace) -> dict:
    cfg, model = build_bench_model(args)
    model.eval()
    frames = int(args.seconds * 100)
    feats = torch.randn(args.batch_size, frames, cfg.model.input_dim, device=args.device)
    lens = torch.full((args.batch_size,), frames, device=args.device)
    audio = args.batch_size * args.seconds
    _time = partial(mean_seconds, device=args.device)
    methods = list(args.methods)
    if args.checkpoint and "attention" not in methods:
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
        compile_seconds = None
        if args.exported:
            runner, compile_seconds = exported_encoder(model, feats)
            t = _time(lambda: runner(feats), args.repeats)
            rows.append(
                {"stage": "exported encoder+ctc (AOTInductor)", "seconds": t, "rtf": t / audio}
            )
    return {
        "model": cfg.model.name,
        "params": model.num_params(),
        "batch_size": args.batch_size,
        "utterance_seconds": args.seconds,
        "beam_size": args.beam_size,
        "random_weights": not args.checkpoint,
        "export_compile_seconds": compile_seconds,
        "results": rows,
        **environment(args.device),
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_model_args(p, "bench_results/decode_rtf.json")
    add_device_arg(p)
    p.add_argument("--batch_size", type=int, default=1)
    p.add_argument("--seconds", type=float, default=10.0, help="length of each utterance")
    p.add_argument("--beam_size", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--chunks", type=int, nargs="*", default=[16])
    p.add_argument("--exported", action="store_true", help="also the AOTInductor encoder")
    p.add_argument(
        "--methods",
        nargs="*",
        choices=DECODE_METHODS,
        default=["ctc_greedy_search", "ctc_prefix_beam_search", "attention_rescoring"],
        help="decoding methods to time (attention joins with --checkpoint)",
    )
    args = p.parse_args(argv)
    result = run(args)
    params = result["params"]["total"] / 1e6
    print(
        f"decode RTF: {result['model']} ({params:.1f}M params), "
        f"{result.get('device', f'{args.threads} threads')}, "
        f"batch {args.batch_size} x {args.seconds:g} s, beam {args.beam_size}"
        + (" [random weights]" if result["random_weights"] else "")
    )
    print(f"{'stage':<38}{'seconds':>10}{'RTF':>10}")
    for row in result["results"]:
        print(f"{row['stage']:<38}{row['seconds']:>10.3f}{row['rtf']:>10.4f}")
    if result["export_compile_seconds"] is not None:
        print(f"export + AOTInductor compile: {result['export_compile_seconds']:.1f} s")
    write_json(result, args.out)
    return result


if __name__ == "__main__":
    main()
