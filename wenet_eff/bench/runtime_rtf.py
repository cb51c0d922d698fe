"""Runtime benchmark: the same model and wavs through Python eager, the C++ runtime and
onnxruntime; full context and chunk-by-chunk streaming; kernel paths fp32, bf16, int8 and
compressed models exported packed; dense and MoE.

    python -m wenet_eff.bin.benchmark runtime_rtf \\
        --model dense=exp/mini/train.yaml:exp/mini/avg_2.pt \\
        --model moe=exp/mini_moe/train.yaml:exp/mini_moe/avg_2.pt \\
        --data data/test/data.list --num_utts 100 --chunk_size 16 --num_left_chunks 4 --threads 1 \\
        --precisions fp32 bf16 int8 packed:qat_int4

For each model and precision the model is exported (wenet_eff.export.package) into
`--work_dir/<name>_<precision>` (kept and reused unless `--reexport`):
  - fp32, bf16, int8: the float model's graphs on that kernel path (export.kernels) and its
    weights; fp32 and int8 also as .onnx (int8: onnxruntime's dynamic quantization);
  - packed:<config>: the model under the compress config (wenet_eff/conf/compress/), exported
    as trained (export.packed: the integer codes and scales QAT learned, packed at their bit
    width), with the kernel paths a compressed model gets (fp32 + int8, + bf16 for sub-channel
    groups); the runtime picks one for this CPU. From a float checkpoint the quantizers derive
    their state from the weights (post-training quantization), which is what speed and size
    need; for WER give the QAT run's checkpoint (`--model NAME=train.yaml:avg.pt` of a
    compress=<config> fine-tune, with `--precisions packed:<config>`).
Then every engine decodes the same utterances with attention rescoring, one utterance at a
time, in one process:
  - eager: wenet_eff.decode.streaming.StreamingSession on the PyTorch model (for packed rows the
    fake-quant model, whose weights the packed graphs reproduce bit for bit), kaldi-native-fbank
    features, Python CTC prefix beam search;
  - cpp: the C++ runtime through its pybind11 module (runtime/, the code decoder_main runs):
    its own fbank, the AOTInductor graphs of the kernel path it chose, C++ search and rescoring;
  - onnx: onnxruntime on the .onnx graphs with the Python search (wenet_eff.export.onnx_runtime;
    fp32 and int8 rows).
RTF = decode time / audio time (threads stated; features included), of the fastest of
`--repeats` passes per engine, the engines taking turns (every pass is kept in the JSON, as
`rtf_passes`). Reported per row: RTF, the encoder graphs' share (C++ and onnxruntime time
them), WER against the references, agreement with eager (identical transcripts, WER
difference), and for the C++ rows the kernel path it ran, the runtime directory's size (what a
device downloads: graphs, weights, meta.json, units; the .onnx files not counted; for a
packed row also the size of the file `bin.pack` writes for the same model, the ratio's
reference), the encoder output's relative difference from eager, and the memory a process
holds once the model is loaded (RSS after load minus before, measured in a fresh process).
Ratios within the run: cpp/eager, cpp/onnx, and each precision's speed-up over
fp32 (whole decode and encoder alone). Writes JSON and prints the tables.

Speed at other model sizes: CHECKPOINT `random` builds the config's model with seeded random
weights, and `--override model=u2pp_conformer` (any config override, applied to every model)
changes its shape; with random weights the search is meaningless, so read the speed, not the
WER:

    python -m wenet_eff.bin.benchmark runtime_rtf --model u2pp=exp/mini/train.yaml:random \\
        --override model=u2pp_conformer --precisions fp32 int8 packed:qat_int4 ...
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jiwer
import numpy as np
import torch

from wenet_eff.bench.common import environment, write_json
from wenet_eff.data.audio import load_audio, to_sample_rate
from wenet_eff.export.int8 import cpu_info

ENGINES = ("eager", "cpp", "onnx")
DECODER_PIECES = ("encoder_chunk", "encoder_full", "decoder")  # what a decoder loads
FLOAT_PRECISIONS = ("fp32", "bf16", "int8")


def precision_arg(text: str) -> str:
    """--precisions entry: fp32, bf16, int8 or packed:<compress config>."""
    if text in FLOAT_PRECISIONS or (text.startswith("packed:") and text.partition(":")[2]):
        return text
    raise argparse.ArgumentTypeError(
        f"'{text}': choose fp32, bf16, int8 or packed:<compress config>, e.g. packed:qat_int4"
    )


def _load_utts(data_list: str, num_utts: int, rate: int, min_rate: int) -> list[dict]:
    utts = []
    with open(data_list, encoding="utf-8") as f:
        for line in f:
            if len(utts) >= num_utts:
                break
            entry = json.loads(line)
            wav, sr = load_audio(entry["wav"], entry.get("start"), entry.get("end"))
            wav = to_sample_rate(wav, sr, rate, min_rate, entry["wav"])
            utts.append({"key": entry["key"], "wav": wav, "txt": entry.get("txt", "")})
    if not utts:
        raise ValueError(f"{data_list}: no utterances")
    return utts


def _wer(refs: list[str], hyps: list[str]) -> float:
    pairs = [(r, h) for r, h in zip(refs, hyps, strict=True) if r.strip()]
    if not pairs:
        return float("nan")
    return 100.0 * jiwer.wer([r for r, _ in pairs], [h if h else "<empty>" for _, h in pairs])


def _decode_all(decode, utts: list[dict]) -> tuple[list[str], float, float | None]:
    """texts, total seconds, seconds in the encoder graphs (None when not measured)."""
    decode(utts[0]["wav"])  # warm-up (allocator, thread pool, lazy initialisation)
    texts, encoder, start = [], 0.0, time.perf_counter()
    for u in utts:
        text, seconds = decode(u["wav"])
        texts.append(text)
        encoder = None if seconds is None or encoder is None else encoder + seconds
    return texts, time.perf_counter() - start, encoder


def _time_engines(decoders: dict, engines: list[str], utts: list[dict], repeats: int) -> dict:
    """{engine: (texts, seconds, encoder seconds or None, [seconds of every pass])}.

    The engines take turns, `repeats` passes each (engine A, B, C, A, B, C, ...), and each keeps
    its fastest pass, so a burst of load on a shared machine hits one pass of every engine
    rather than all passes of one. Every pass must give the same transcripts."""
    passes: dict[str, list] = {e: [] for e in engines}
    for _ in range(repeats):
        for engine in engines:
            passes[engine].append(_decode_all(decoders[engine], utts))
    out = {}
    for engine, runs in passes.items():
        texts = runs[0][0]
        if any(r[0] != texts for r in runs[1:]):
            raise RuntimeError(f"{engine}: the transcripts differ between passes")
        _, seconds, encoder = min(runs, key=lambda r: r[1])
        out[engine] = (texts, seconds, encoder, [r[1] for r in runs])
    return out


def _text_and_encoder_seconds(result: dict) -> tuple[str, float]:
    return result["text"], result["encoder_seconds"]


def _eager_decoder(model, tokenizer, chunk: int, left: int, args, data_cfg):
    from wenet_eff.decode.streaming import StreamingSession

    session = StreamingSession(
        model,
        tokenizer,
        chunk_size=chunk,
        num_left_chunks=left,
        beam_size=args.beam_size,
        ctc_weight=args.ctc_weight,
        reverse_weight=args.reverse_weight,
        sample_rate=data_cfg.sample_rate,
        num_mel_bins=data_cfg.num_mel_bins,
        frame_length=data_cfg.frame_length,
        frame_shift=data_cfg.frame_shift,
    )

    @torch.inference_mode()
    def decode(wav: np.ndarray) -> tuple[str, None]:
        session.reset()
        session.accept_waveform(wav)
        return session.finalize().text, None

    return decode


def _served(model, config: str, precision: str, overrides: list[str], engines: list[str]):
    """(the model a precision serves, its config, export keyword arguments, formats): a packed
    precision applies its compress config to a copy of the float model (quantizer state from
    the weights); the float ones export the model on that kernel path (.onnx too where the
    onnx engine runs)."""
    from wenet_eff import compress
    from wenet_eff.config import load_config

    if precision.startswith("packed:"):
        name = precision.partition(":")[2]
        cfg = load_config(config, [*overrides, f"compress={name}"])
        if not compress.is_compressed(cfg):
            raise ValueError(f"--precisions {precision}: compress={name} compresses nothing")
        served = compress.apply(copy.deepcopy(model), cfg).eval()
        return served, cfg, {}, ("pt2",)
    formats = ("pt2", "onnx") if precision != "bf16" and "onnx" in engines else ("pt2",)
    return model, None, {"precisions": (precision,)}, formats


def packed_file_bytes(served, cfg) -> int | None:
    """Bytes of the file `bin.pack` writes for the compressed model `served` (None without
    quantized layers: bin.pack packs QAT models; N:M float masks are folded)."""
    from wenet_eff.compress import quant_layers
    from wenet_eff.compress.pack import save_packed

    if not quant_layers(served):
        return None
    with tempfile.TemporaryDirectory() as tmp:
        return save_packed(served, cfg, Path(tmp) / "packed.pt")["file_bytes"]


_RSS = """
import sys, torch
from wenet_eff.export.cpp import load_runtime
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
rt = load_runtime()
rt.set_num_threads(int(sys.argv[2]))
before = rss()
model = rt.Model(sys.argv[1])
print(before, rss())
"""


@torch.no_grad()
def encoder_rel_error(rt, model_dir: Path, precision: str, eager_model, utts: list[dict],
                      data_cfg) -> float:  # fmt: skip
    """Largest relative difference (norm) between the full-context encoder output of the
    graph the C++ runtime runs (kernel path `precision`, loaded in Python with the same
    weights) and the eager model's, over the first 5 utterances (the C++ front end's
    features)."""
    from wenet_eff.export.modules import EncoderFull
    from wenet_eff.export.package import graph_file
    from wenet_eff.export.weights import load_graph

    graph = load_graph(model_dir, graph_file("encoder_full", precision, "pt2"))
    eager = EncoderFull(eager_model).eval()
    worst = 0.0
    for u in utts[:5]:
        feats = rt.fbank(u["wav"], data_cfg.sample_rate, data_cfg.num_mel_bins,
                         data_cfg.frame_length, data_cfg.frame_shift)  # fmt: skip
        feats = torch.from_numpy(feats).unsqueeze(0)
        ref = eager(feats)[1]
        worst = max(worst, float((graph(feats)[1] - ref).norm() / ref.norm()))
    return worst


def rss_after_load(model_dir: Path, threads: int) -> float:
    """MB a fresh process gains by loading the model in the C++ runtime (weights, folded
    constants, graphs)."""
    proc = subprocess.run([sys.executable, "-c", _RSS, str(model_dir), str(threads)],
                          capture_output=True, text=True, check=True)  # fmt: skip
    before, after = map(float, proc.stdout.split())
    return after - before


def run(args: argparse.Namespace) -> dict:
    from wenet_eff.bench.model_info import flops_per_second
    from wenet_eff.config import load_config
    from wenet_eff.data.tokenizer import build_tokenizer
    from wenet_eff.export.cpp import load_runtime
    from wenet_eff.export.modules import prepare_for_export
    from wenet_eff.export.onnx_runtime import OnnxDecoder
    from wenet_eff.export.package import export_model, runtime_bytes
    from wenet_eff.model import build_model, load_model

    torch.set_num_threads(args.threads)
    rt = load_runtime()
    rt.set_num_threads(args.threads)
    work = Path(args.work_dir)
    rows, utts, audio, flops = [], None, 0.0, {}
    if args.repeats < 1:
        raise ValueError(f"--repeats {args.repeats}: at least one pass")
    if args.mode != "attention_rescoring" and "eager" in args.engines:
        raise ValueError(
            f"--mode {args.mode}: the eager engine decodes with attention rescoring only "
            "(use --engines cpp onnx)"
        )
    for spec in args.model:
        name, paths = spec.split("=", 1)
        config, checkpoint = paths.split(":", 1)
        if checkpoint == "random":  # speed only: the config's model with seeded weights
            cfg = load_config(config, args.override)
            torch.manual_seed(0)
            model = build_model(cfg).eval()
        else:
            cfg, model = load_model(config, checkpoint, args.override)
        tokenizer = build_tokenizer(cfg.tokenizer)
        f = flops_per_second(copy.deepcopy(model), 10.0, cfg.model.input_dim)
        flops[name] = f["encoder"] + f["ctc"]
        if utts is None:
            utts = _load_utts(
                args.data, args.num_utts, cfg.data.sample_rate, cfg.data.min_sample_rate
            )
        refs = [u["txt"] for u in utts]
        audio = sum(len(u["wav"]) for u in utts) / cfg.data.sample_rate
        for precision in args.precisions:
            served, served_cfg, export_args, formats = _served(
                model, config, precision, args.override, args.engines
            )
            model_dir = work / f"{name}_{precision.replace(':', '_')}"
            if args.reexport or not (model_dir / "meta.json").exists():
                print(f"exporting {name} {precision} to {model_dir} ...", flush=True)
                export_model(copy.deepcopy(served), cfg, model_dir, str(cfg.tokenizer.units),
                             args.chunk_size, args.num_left_chunks, formats=formats,
                             pieces=DECODER_PIECES, jobs=args.jobs, **export_args)  # fmt: skip
            meta = json.loads((model_dir / "meta.json").read_text())
            eager_model = prepare_for_export(copy.deepcopy(served))
            cpp_model = rt.Model(str(model_dir))
            print(f"  {name} {precision}: kernel path {cpp_model.precision} "
                  f"({cpp_model.precision_reason})", flush=True)  # fmt: skip
            size = {"dir_mb": runtime_bytes(model_dir) / 1e6,
                    "rss_mb": rss_after_load(model_dir, args.threads),
                    "kernel_path": cpp_model.precision,
                    "kernel_reason": cpp_model.precision_reason,
                    "encoder_rel_error": encoder_rel_error(rt, model_dir, cpp_model.precision,
                                                           eager_model, utts, cfg.data),
                    "layer_paths": meta["kernel_paths"][cpp_model.precision]["layers"]}  # fmt: skip
            pack_bytes = packed_file_bytes(served, served_cfg) if served_cfg else None
            if pack_bytes:  # the runtime directory against bin.pack's file
                size["pack_mb"] = pack_bytes / 1e6
            engines = [e for e in args.engines if e != "onnx" or "onnx" in formats]
            for chunk in (-1, args.chunk_size):
                left = args.num_left_chunks if chunk > 0 else -1
                common = {
                    "mode": args.mode,
                    "beam_size": args.beam_size,
                    "ctc_weight": args.ctc_weight,
                    "reverse_weight": args.reverse_weight,
                }
                cpp = rt.Decoder(cpp_model, chunk_size=chunk, **common)
                decoders = {
                    "eager": _eager_decoder(eager_model, tokenizer, chunk, left, args, cfg.data),
                    "cpp": lambda wav, d=cpp: _text_and_encoder_seconds(d.decode(wav)),
                }
                if "onnx" in engines:
                    onnx = OnnxDecoder(model_dir, chunk_size=chunk, threads=args.threads,
                                       precision=precision, **common)  # fmt: skip
                    decoders["onnx"] = lambda wav, d=onnx: _text_and_encoder_seconds(d.decode(wav))
                timed = _time_engines(decoders, engines, utts, args.repeats)
                texts = {engine: t[0] for engine, t in timed.items()}
                for engine in engines:
                    _, seconds, encoder, passes = timed[engine]
                    row = {
                        "model": name,
                        "precision": precision,
                        "chunk": chunk,
                        "engine": engine,
                        "rtf": seconds / audio,
                        "rtf_passes": [p / audio for p in passes],
                        "wer": _wer(refs, texts[engine]),
                        **(size if engine == "cpp" else {}),
                    }
                    if encoder is not None:
                        row["encoder_rtf"] = encoder / audio
                    if "eager" in texts and engine != "eager":
                        same = sum(
                            a == b for a, b in zip(texts[engine], texts["eager"], strict=True)
                        )
                        row["identical"] = same / len(utts)
                        row["wer_diff"] = row["wer"] - _wer(refs, texts["eager"])
                    rows.append(row)
                    print(
                        f"  {name:<6} {precision:<5} chunk {chunk:>3} {engine:<5} "
                        f"RTF {row['rtf']:.4f}  WER {row['wer']:.2f}",
                        flush=True,
                    )
    return {
        "environment": {**environment(), "cpu_info": cpu_info(), "cpu_features": rt.cpu_features()},
        "threads": args.threads,
        "mode": args.mode,
        "overrides": args.override,
        "utterances": len(utts),
        "repeats": args.repeats,
        "audio_seconds": audio,
        "chunk_size": args.chunk_size,
        "num_left_chunks": args.num_left_chunks,
        "active_flops_per_second": flops,
        "rows": rows,
        "ratios": _ratios(rows, flops),
    }


def _find(rows, **key) -> dict | None:
    for r in rows:
        if all(r.get(k) == v for k, v in key.items()):
            return r
    return None


def _ratios(rows: list[dict], flops: dict[str, float]) -> list[dict]:
    """Per (model, precision, chunk): cpp/eager and cpp/onnx RTF; per (model, precision other
    than fp32, chunk, engine): the speed-up over fp32 (whole decode and encoder alone) and the
    relative WER change; per model after the first (the dense reference) and row: the
    encoder-time ratio to the reference (the whole decode's where the engine does not time
    its encoder) over the ratio of active encoder + CTC FLOPs, minus 1 (the MoE overhead beyond
    its active FLOPs)."""
    out = []
    reference = next(iter(flops), None)
    for r in rows:
        if r["model"] == reference:
            continue
        ref = _find(rows, model=reference, precision=r["precision"], chunk=r["chunk"],
                    engine=r["engine"])  # fmt: skip
        if ref:
            flops_ratio = flops[r["model"]] / flops[reference]
            timed = "encoder_rtf" if "encoder_rtf" in r and "encoder_rtf" in ref else "rtf"
            out.append(
                {
                    "model": r["model"],
                    "reference": reference,
                    "precision": r["precision"],
                    "chunk": r["chunk"],
                    "engine": r["engine"],
                    "kind": "flops",
                    "timed": "encoder" if timed == "encoder_rtf" else "decode",
                    "rtf_ratio": r[timed] / ref[timed],
                    "flops_ratio": flops_ratio,
                    "overhead": r[timed] / ref[timed] / flops_ratio - 1,
                }
            )
    for r in rows:
        if r["engine"] != "cpp":
            continue
        key = {"model": r["model"], "precision": r["precision"], "chunk": r["chunk"]}
        eager = _find(rows, engine="eager", **key)
        onnx = _find(rows, engine="onnx", **key)
        out.append(
            {
                **key,
                "kind": "engines",
                "cpp_over_eager": r["rtf"] / eager["rtf"] if eager else None,
                "cpp_over_onnx": r["rtf"] / onnx["rtf"] if onnx else None,
            }
        )
    for r in rows:
        if r["precision"] == "fp32":
            continue
        fp32 = _find(rows, model=r["model"], precision="fp32", chunk=r["chunk"], engine=r["engine"])
        if fp32:
            encoder = "encoder_rtf" in r and "encoder_rtf" in fp32
            out.append(
                {
                    "model": r["model"],
                    "precision": r["precision"],
                    "chunk": r["chunk"],
                    "engine": r["engine"],
                    "kind": "precision",
                    "speedup": fp32["rtf"] / r["rtf"],
                    "encoder_speedup": fp32["encoder_rtf"] / r["encoder_rtf"] if encoder else None,
                    "size_ratio": fp32["dir_mb"] / r["dir_mb"] if "dir_mb" in r else None,
                    "wer_rel_change": (r["wer"] - fp32["wer"]) / fp32["wer"] if fp32["wer"] else 0,
                }
            )
    return out


def main(argv: list[str] | None = None) -> dict:
    from wenet_eff.bench.sections import runtime_rtf

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--model",
        action="append",
        required=True,
        help="NAME=CONFIG:CHECKPOINT (repeatable): dense=exp/mini/train.yaml:exp/mini/avg_2.pt",
    )
    p.add_argument("--data", required=True, help="data.list of the test wavs")
    p.add_argument("--num_utts", type=int, default=100)
    p.add_argument("--chunk_size", type=int, default=16)
    p.add_argument("--num_left_chunks", type=int, default=4)
    p.add_argument(
        "--precisions",
        nargs="+",
        default=["fp32", "int8"],
        type=precision_arg,
        help="fp32, bf16, int8 (the float model on that kernel path) and packed:<compress "
        "config> (the model under it, exported packed; the runtime picks the kernel path)",
    )
    p.add_argument("--engines", nargs="+", default=list(ENGINES), choices=list(ENGINES))
    p.add_argument(
        "--mode",
        default="attention_rescoring",
        choices=["attention_rescoring", "ctc_prefix_beam_search", "ctc_greedy_search"],
        help="decoding mode of the C++ and onnxruntime engines (eager: attention_rescoring)",
    )
    p.add_argument(
        "--override",
        nargs="*",
        default=[],
        help="config overrides for every model (model=u2pp_conformer with CHECKPOINT random)",
    )
    p.add_argument("--beam_size", type=int, default=10)
    p.add_argument("--ctc_weight", type=float, default=0.3)
    p.add_argument("--reverse_weight", type=float, default=0.5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="passes per engine, taken in turns; each row keeps its engine's fastest pass",
    )
    p.add_argument("--work_dir", default="exp/runtime_bench", help="exported model dirs")
    p.add_argument("--reexport", action="store_true", help="export again even if present")
    p.add_argument("--jobs", type=int, default=1, help="graphs compiled at once (export)")
    p.add_argument("--out", default="bench_results/runtime_rtf.json")
    args = p.parse_args(argv)
    result = run(args)
    write_json(result, args.out)
    print(runtime_rtf(result))
    return result


if __name__ == "__main__":
    main()
