"""MoE cost benchmark: Dense-225M vs MoE-1B vs Dense-1B RTF, and MoE dispatch vs a full scan.

    python -m wenet_eff.bin.benchmark moe_rtf --threads 2
    python -m wenet_eff.bin.benchmark moe_rtf --device cuda --frames 1000 16000 --models

Everything runs on `--device` (CUDA times include the queued GPU work); `--models` with no
name measures the dispatch alone.

1. Dispatch: one MoE layer per `--shapes` entry (default the paper shape, d=576 with 2048
   units, and mini_moe's, d=144 with 288 units; 8 experts, top-2) on batches of `--frames`
   frames (default 1,000): our
   sort-once dispatch against the per-expert full scan (`torch.where` over all frames for each
   expert, as WeNet does), inference and training (forward+backward); and, for inference,
   against running every expert on every frame (the export fallback). The matmul roofline
   (FLOPs of the k active experts / the measured GEMM peak) says how much room is left.
2. Models (random weights, batch 1, `--seconds` of audio, threads stated):
   - ctc_greedy: encoder (full context) + CTC head + argmax;
   - streaming: chunk-by-chunk encoder with caches (each of `--chunks` frames, all left
     context) + CTC;
   - attention_rescoring: encoder + CTC + both decoders scoring a fixed n-best of `--nbest`
     hypotheses of `--hyp_len` tokens (fixed so random weights do not change the work; the
     CTC prefix search itself is model-independent Python and left out).
   Active FLOPs are counted with FlopCounterMode (encoder + CTC), so the table shows the RTF
   ratio to Dense-225M next to the FLOPs ratio, and their quotient: the MoE overhead.
3. Expert usage of the MoE model on the benchmark audio (fraction of frames per expert).
4. Streaming weight traffic: batch-1 chunks are small, so each chunk step reads the weights it
   uses from memory. Per model and chunk size: the experts a chunk touches (mean over chunks
   and layers), the encoder weight bytes read per chunk, the measured read bandwidth, and the
   RTF that reading alone costs (the floor no kernel can beat at batch 1). For MoE models,
   the bandwidth-only RTF ratio to the first model: its measured RTF plus the extra bytes'
   reading time (the extra compute left out).
5. With `--streams B...`: B streams at their own positions stepping together through the
   export's batched chunk step, eager (`bench.moe_streams`), the models interleaved: encoder ms
   per step and per stream chunk, active FLOPs per step, the time and FLOP ratios to the first
   model and their quotient (MoE at a serving batch), and the experts a step touches per layer.
Writes JSON and prints tables.
"""

from __future__ import annotations

import argparse
import gc
from functools import partial

import torch

from wenet_eff.bench.common import add_device_arg, environment, mean_seconds, write_json
from wenet_eff.bench.model_info import flops_per_second
from wenet_eff.bench.moe_streams import measure_streams
from wenet_eff.bench.sections import moe_streams as streams_table
from wenet_eff.config import load_config
from wenet_eff.decode.attention import attention_rescoring
from wenet_eff.decode.ctc import Hypothesis
from wenet_eff.model import build_model
from wenet_eff.nn.moe import MoEFFNLayer, moe_layers, naive_moe

MODELS = ("paper_dense_225m", "paper_moe_1b", "paper_dense_1b")


def all_experts_moe(layer: MoEFFNLayer, xs: torch.Tensor) -> torch.Tensor:
    """Every expert on every frame, outputs weighted by the sparse routing weights: what an
    export without data-dependent shapes computes (WeNet's runtime export does this)."""
    shape = xs.shape
    x = xs.reshape(-1, shape[-1])
    _, top_ids, weights = layer.route(x)
    dense_weights = x.new_zeros(x.shape[0], layer.n_expert).scatter(1, top_ids, weights)
    out = sum(dense_weights[:, e, None] * expert(x) for e, expert in enumerate(layer.experts))
    return out.reshape(shape)


def gemm_peak_gflops(size: int = 1536, repeats: int = 5, device: str = "cpu") -> float:
    """Measured fp32 GEMM throughput (GFLOP/s) of a square `size` matmul, best of `repeats`."""
    a, b = torch.randn(size, size, device=device), torch.randn(size, size, device=device)
    best = min(mean_seconds(lambda: a @ b, 1, device) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def read_bandwidth_gb_s(megabytes: int = 512, repeats: int = 3, device: str = "cpu") -> float:
    """Measured memory read bandwidth (GB/s): summing a tensor far larger than the caches."""
    x = torch.ones(megabytes * 2**20 // 4, device=device)
    best = min(mean_seconds(x.sum, 1, device) for _ in range(repeats))
    return x.numel() * 4 / best / 1e9


@torch.inference_mode()
def cold_gemm_gb_s(
    rows: int, dim: int, units: int, megabytes: int = 256, device: str = "cpu"
) -> float:
    """Weight GB/s of a `rows`-row linear (dim -> units) whose weight is not in cache: many
    distinct weights in turn, as a streaming chunk step meets them."""
    n = min(max(2, megabytes * 2**20 // (dim * units * 4)), 256)
    weights = [torch.randn(units, dim, device=device) for _ in range(n)]
    x = torch.randn(rows, dim, device=device)
    seconds = min(mean_seconds(lambda: [x @ w.t() for w in weights], 1, device) for _ in range(3))
    return dim * units * 4 / (seconds / n) / 1e9


def dispatch(
    dim: int, units: int, frames: int, args: argparse.Namespace, peak_gflops: float
) -> dict:
    """Our MoE dispatch vs the per-expert full scan on one layer of shape (dim, units), on a
    batch of `frames` frames."""
    torch.manual_seed(0)
    layer = MoEFFNLayer(dim, units, 0.0, torch.nn.SiLU(), args.n_expert, args.k)
    # a trained-looking router: larger logits, so routing is decisive
    torch.nn.init.normal_(layer.gate.weight, std=0.5)
    layer = layer.to(args.device)
    x = torch.randn(1, frames, dim, device=args.device)
    assert torch.allclose(layer(x), naive_moe(layer, x), atol=1e-4), "dispatch != reference"
    assert torch.allclose(layer(x), all_experts_moe(layer, x), atol=1e-4), "dispatch != all"
    _time = partial(mean_seconds, device=args.device)
    out = {"dim": dim, "units": units, "frames": frames}
    with torch.inference_mode():
        out["ours_infer_s"] = _time(lambda: layer(x), args.repeats * 5)
        out["scan_infer_s"] = _time(lambda: naive_moe(layer, x), args.repeats * 5)
        out["all_experts_infer_s"] = _time(lambda: all_experts_moe(layer, x), args.repeats * 5)

    def train_step(fn):
        layer.zero_grad(set_to_none=True)
        fn(layer, x).sum().backward()

    out["ours_train_s"] = _time(lambda: train_step(MoEFFNLayer.__call__), args.repeats * 5)
    out["scan_train_s"] = _time(lambda: train_step(naive_moe), args.repeats * 5)
    out["infer_speedup"] = out["scan_infer_s"] / out["ours_infer_s"]
    out["infer_speedup_vs_all_experts"] = out["all_experts_infer_s"] / out["ours_infer_s"]
    out["train_speedup"] = out["scan_train_s"] / out["ours_train_s"]
    # the k active experts' two matmuls: what any dispatch must compute
    out["active_gflop"] = frames * args.k * 2 * 2 * dim * units / 1e9
    out["matmul_floor_s"] = out["active_gflop"] / peak_gflops
    return out


def _nbytes(params) -> int:
    return sum(p.numel() * p.element_size() for p in params)


@torch.inference_mode()
def streaming_traffic(model, feats: torch.Tensor, chunk: int) -> dict:
    """Encoder weight bytes one chunk step reads at batch 1 (experts: only those given frames).

    Args:
        model: the model (eval mode).
        feats: (1, T, input_dim) features, streamed chunk by chunk with all left context.
        chunk: encoder frames per chunk.
    Returns:
        `chunks` (steps), `n_expert` and `experts_touched_mean` (experts with frames, mean over
        steps and MoE layers; None for a dense model), `bytes_per_chunk` (mean).
    """
    layers = [m for _, m in moe_layers(model.encoder)]
    touched, expert_bytes_read, steps = [], [0], [0]

    def count_step(*_):
        steps[0] += 1

    def count_experts(layer, *_):
        n = int((layer.usage > 0).sum())
        touched.append(n)
        expert_bytes_read[0] += n * _nbytes(layer.experts[0].parameters())

    hooks = [model.encoder.embed.register_forward_hook(count_step)]
    hooks += [m.register_forward_hook(count_experts) for m in layers]
    try:
        model.encoder.forward_chunk_by_chunk(feats, chunk, -1)
    finally:
        for h in hooks:
            h.remove()
    if not steps[0]:
        raise ValueError(f"{feats.size(1)} feature frames make no chunk of {chunk}")
    all_experts = sum(_nbytes(m.experts.parameters()) for m in layers)
    shared = _nbytes(model.encoder.parameters()) - all_experts
    return {
        "chunks": steps[0],
        "n_expert": layers[0].n_expert if layers else None,
        "experts_touched_mean": sum(touched) / len(touched) if touched else None,
        "bytes_per_chunk": shared + expert_bytes_read[0] / steps[0],
    }


def build(name: str, args: argparse.Namespace):
    """(config, model in eval mode with random weights of seed 0) of a packaged model."""
    torch.manual_seed(0)
    cfg = load_config(name, [f"model.vocab_size={args.vocab_size}", *args.override])
    return cfg, build_model(cfg).eval()


@torch.inference_mode()
def model_rtf(name: str, args: argparse.Namespace) -> dict:
    """RTF of one packaged model on `args.seconds` of random features (random weights)."""
    cfg, model = build(name, args)
    flops = flops_per_second(model, args.seconds, cfg.model.input_dim)
    model = model.to(args.device)
    frames = int(args.seconds * 100)
    feats = torch.randn(1, frames, cfg.model.input_dim, device=args.device)
    lens = torch.tensor([frames], device=args.device)
    _time = partial(mean_seconds, device=args.device)
    generator = torch.Generator().manual_seed(1)
    text_ids = model.text_ids()
    nbest = [
        [
            Hypothesis(
                text_ids[
                    torch.randint(len(text_ids), (args.hyp_len,), generator=generator)
                ].tolist()
            )
            for _ in range(args.nbest)
        ]
    ]

    def greedy():
        enc, _ = model.encoder(feats, lens)
        return model.ctc.log_softmax(enc).argmax(-1)

    def streaming(chunk: int):
        enc, _ = model.encoder.forward_chunk_by_chunk(feats, chunk, -1)
        return model.ctc.log_softmax(enc).argmax(-1)

    def rescoring():
        enc, mask = model.encoder(feats, lens)
        model.ctc.log_softmax(enc).argmax(-1)
        return attention_rescoring(model, nbest, enc, mask, 0.3, 0.3)

    times = {"ctc_greedy": _time(greedy, args.repeats)}
    for chunk in args.chunks:
        times[f"streaming_chunk{chunk}"] = _time(lambda c=chunk: streaming(c), args.repeats)
    times["attention_rescoring"] = _time(rescoring, args.repeats)
    traffic = {f"streaming_chunk{c}": streaming_traffic(model, feats, c) for c in args.chunks}
    usage = {}
    if moe_layers(model):
        model.encoder(feats, lens)
        usage = {n: [round(v, 4) for v in u.tolist()] for n, u in model.expert_usage().items()}
    result = {
        "model": name,
        "params": model.num_params(),
        "gflops_per_audio_second": (flops["encoder"] + flops["ctc"]) / 1e9,
        "rtf": {k: t / args.seconds for k, t in times.items()},
        "expert_usage": usage,
        "streaming_traffic": traffic,
    }
    return result


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    device = args.device
    peak = gemm_peak_gflops(args.gemm_size, device=device)
    bandwidth = read_bandwidth_gb_s(args.bandwidth_mb, device=device)
    result = {
        "gemm_peak_gflops": peak,
        "read_bandwidth_gb_s": bandwidth,
        "cold_gemm_gb_s": {
            f"{rows}x{d}x{u}": cold_gemm_gb_s(rows, d, u, args.bandwidth_mb // 2, device)
            for rows in (4, 16, 64)
            for d, u in args.shapes[:1]
        },
        "dispatch": [
            dispatch(d, u, frames, args, peak) for frames in args.frames for d, u in args.shapes
        ],
        "models": [],
        **environment(device),
    }
    for name in args.models:
        result["models"].append(model_rtf(name, args))
        gc.collect()  # free one model (GBs) before building the next
        print(f"  measured {name}", flush=True)
    base = result["models"][0] if result["models"] else None
    for row in result["models"]:
        flops_ratio = row["gflops_per_audio_second"] / base["gflops_per_audio_second"]
        row["flops_ratio"] = flops_ratio
        row["rtf_ratio"] = {k: v / base["rtf"][k] for k, v in row["rtf"].items()}
        row["overhead_vs_flops"] = {k: v / flops_ratio for k, v in row["rtf_ratio"].items()}
        row["seconds_per_tflop"] = {
            k: v / row["gflops_per_audio_second"] * 1e3 for k, v in row["rtf"].items()
        }
        for key, t in row["streaming_traffic"].items():
            # reading the weights once per chunk: the batch-1 floor
            t["weights_floor_rtf"] = (
                t["chunks"] * t["bytes_per_chunk"] / bandwidth / 1e9 / args.seconds
            )
            if t["n_expert"] is None:
                continue
            extra = t["chunks"] * (
                t["bytes_per_chunk"] - base["streaming_traffic"][key]["bytes_per_chunk"]
            )
            # the first model's measured time plus reading the extra bytes (no extra compute)
            t["bandwidth_only_rtf_ratio"] = (
                base["rtf"][key] + extra / bandwidth / 1e9 / args.seconds
            ) / base["rtf"][key]
    if args.streams and args.models:
        built = {name: build(name, args) for name in args.models}
        models = {name: m.to(device) for name, (_, m) in built.items()}
        input_dim = next(iter(built.values()))[0].model.input_dim
        result["streams"] = [
            row
            for chunk in args.chunks
            for batch in args.streams
            for row in measure_streams(
                models,
                input_dim,
                batch,
                chunk,
                args.left_chunks,
                args.stream_rounds,
                args.repeats,
                device,
            )  # fmt: skip
        ]
        del built, models
        gc.collect()
    result["settings"] = {
        k: getattr(args, k)
        for k in (
            "seconds",
            "chunks",
            "nbest",
            "hyp_len",
            "vocab_size",
            "frames",
            "threads",
            "device",
            "streams",
            "left_chunks",
            "stream_rounds",
        )  # fmt: skip
    }
    return result


def print_result(result: dict, args: argparse.Namespace) -> None:
    print(
        f"{result.get('device', f'{args.threads} threads')}: "
        f"fp32 GEMM peak {result['gemm_peak_gflops']:.1f} GFLOP/s, "
        f"memory read {result['read_bandwidth_gb_s']:.1f} GB/s; weight GB/s of linears whose "
        "weights are not in cache (rows x dim x units): "
        + ", ".join(f"{k} {v:.1f}" for k, v in result["cold_gemm_gb_s"].items())
    )
    print(
        f"MoE dispatch, {args.n_expert} experts top-{args.k} "
        "(floor: the active experts' matmuls at the GEMM peak):"
    )
    print(
        f"{'frames':>7} {'d x units':<12}{'mode':<7}{'ours ms':>9}{'full scan ms':>14}"
        f"{'speedup':>9}{'all experts ms':>16}{'floor ms':>10}"
    )
    for d in result["dispatch"]:
        for mode in ("infer", "train"):
            every = (
                f"{d['all_experts_infer_s'] * 1e3:>16.2f}{d['matmul_floor_s'] * 1e3:>10.2f}"
                if mode == "infer"
                else ""
            )
            print(
                f"{d['frames']:>7} {d['dim']}x{d['units']:<8}{mode:<7}"
                f"{d[f'ours_{mode}_s'] * 1e3:>9.2f}"
                f"{d[f'scan_{mode}_s'] * 1e3:>14.2f}{d[f'{mode}_speedup']:>8.2f}x{every}"
            )
    if not result["models"]:
        return
    print(
        f"\nRTF, {args.seconds:g} s of audio, batch 1, {args.threads} threads, random weights "
        f"(rescoring: {args.nbest} x {args.hyp_len}-token n-best):"
    )
    keys = list(result["models"][0]["rtf"])
    head = f"{'model':<18}{'params':>9}{'active':>9}{'GFLOP/s':>9}{'FLOPs x':>9}"
    print(head + "".join(f"{k:>22}" for k in keys))
    for row in result["models"]:
        p = row["params"]
        line = (
            f"{row['model']:<18}{p['total'] / 1e6:>8.1f}M{p['active'] / 1e6:>8.1f}M"
            f"{row['gflops_per_audio_second']:>9.2f}{row['flops_ratio']:>8.2f}x"
        )
        cells = "".join(f"{row['rtf'][k]:>11.4f} ({row['rtf_ratio'][k]:>5.2f}x)  " for k in keys)
        print(line + cells)
    print("RTF ratio / FLOPs ratio (MoE overhead beyond active compute; target <= 1.1):")
    for row in result["models"][1:]:
        cells = ", ".join(f"{k} {v:.2f}" for k, v in row["overhead_vs_flops"].items())
        print(f"  {row['model']}: {cells}")
    names = [r["model"] for r in result["models"]]
    if "paper_moe_1b" in names and "paper_dense_1b" in names:
        moe = result["models"][names.index("paper_moe_1b")]["rtf"]
        big = result["models"][names.index("paper_dense_1b")]["rtf"]
        cells = ", ".join(f"{k} {big[k] / moe[k]:.2f}" for k in moe)
        print(f"RTF Dense-1B / MoE-1B (target >= 2): {cells}")
    for row in result["models"]:
        if row["expert_usage"]:
            usage = row["expert_usage"]
            shares = [max(u) for u in usage.values()]
            print(
                f"expert usage of {row['model']} ({len(usage)} MoE layers, fractions sum to k): "
                f"busiest expert per layer {min(shares):.3f}..{max(shares):.3f} "
                f"(balanced: {args.k / args.n_expert:.3f})"
            )
            for name, u in list(usage.items())[:3]:
                print(f"  {name}: {' '.join(f'{v:.3f}' for v in u)}")
    print(
        f"\nStreaming weight traffic at batch 1 (read bandwidth "
        f"{result['read_bandwidth_gb_s']:.1f} GB/s; floor = reading each chunk's weights once):"
    )
    print(
        f"{'model':<18}{'chunk':>6}{'experts/layer':>15}{'MB/chunk':>10}{'floor RTF':>11}"
        f"{'measured':>10}{'bandwidth-only ratio':>22}{'measured ratio':>16}"
    )
    for row in result["models"]:
        for key, t in row["streaming_traffic"].items():
            touched = t["experts_touched_mean"]
            estimate = t.get("bandwidth_only_rtf_ratio")
            experts = f"{touched:.2f}/{t['n_expert']}" if touched is not None else "-"
            print(
                f"{row['model']:<18}{key.removeprefix('streaming_chunk'):>6}"
                f"{experts:>15}"
                f"{t['bytes_per_chunk'] / 1e6:>10.1f}{t['weights_floor_rtf']:>11.4f}"
                f"{row['rtf'][key]:>10.4f}"
                f"{f'{estimate:.2f}x' if estimate is not None else '-':>22}"
                f"{row['rtf_ratio'][key]:>15.2f}x"
            )
    print(
        "  bandwidth-only ratio (MoE models): the first model's measured RTF plus the time to "
        "read this model's extra bytes (its extra compute left out), over the first model's RTF."
        "\n  The floor holds when the encoder's weights do not fit in the CPU's last-level cache "
        "(true of the paper models, not of mini)."
    )
    if result.get("streams"):
        print("\n" + streams_table(result))


def _shape(text: str) -> tuple[int, int]:
    dim, _, units = text.partition("x")
    if not (dim.isdigit() and units.isdigit()):
        raise argparse.ArgumentTypeError(f"shape '{text}' is not DIMxUNITS, e.g. 576x2048")
    return int(dim), int(units)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--models",
        nargs="*",
        default=list(MODELS),
        help="first one is the baseline; none: dispatch only",
    )
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument(
        "--chunks", type=int, nargs="+", default=[16, 64], help="streaming chunks (encoder frames)"
    )
    p.add_argument("--nbest", type=int, default=10)
    p.add_argument("--hyp_len", type=int, default=60)
    p.add_argument("--vocab_size", type=int, default=5002)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument(
        "--frames", type=int, nargs="+", default=[1000], help="dispatch benchmark batches"
    )
    p.add_argument(
        "--shapes",
        type=_shape,
        nargs="+",
        default=[(576, 2048), (144, 288)],
        help="dispatch layers as DIMxUNITS (default: paper_moe_1b's and mini_moe's)",
    )
    p.add_argument("--n_expert", type=int, default=8)
    p.add_argument("--k", type=int, default=2)
    p.add_argument("--gemm_size", type=int, default=1536, help="square GEMM for the peak")
    p.add_argument(
        "--bandwidth_mb",
        type=int,
        default=512,
        help="tensor read for the memory bandwidth (half of it for the cold-weight probe)",
    )
    p.add_argument(
        "--streams", type=int, nargs="*", default=[], help="batched streaming steps of B streams"
    )
    p.add_argument("--left_chunks", type=int, default=4, help="--streams: cache of left chunks")
    p.add_argument(
        "--stream_rounds", type=int, default=3, help="--streams: rounds of --repeats steps"
    )
    p.add_argument("--override", nargs="*", default=[], help="config overrides for every model")
    p.add_argument("--out", default="bench_results/moe_rtf.json")
    add_device_arg(p)
    args = p.parse_args(argv)
    result = run(args)
    print_result(result, args)
    write_json(result, args.out)
    return result


if __name__ == "__main__":
    main()
