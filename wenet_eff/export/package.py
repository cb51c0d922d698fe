"""Write a runtime model directory: AOTInductor packages, their weights, ONNX models, units
and meta.json.

    model_dir/
      encoder_chunk.pt2   streaming step (chunk_size, num_left_chunks fixed; see modules.py)
      encoder_chunk_batch.pt2  the streaming step for a batch of streams at their own
                          positions (the server's cross-stream batching; .pt2 only)
      encoder_full.pt2    full-context encoder (any length)
      decoder.pt2         attention-rescoring scores of an n-best list
      *.int8.pt2 *.bf16.pt2  the same graphs on the other kernel paths (export.kernels)
      weights.bin/.json   the constants of every graph, once; packed layers as their packed
                          records (export.weights, export.packed): the graphs carry none
      *.onnx              the float graphs for onnxruntime; *.int8.onnx onnxruntime's dynamic
                          quantization of them (MatMulInteger)
      units.txt           the vocabulary (WeNet format)
      meta.json           what the runtime needs: features, subsampling, cache shapes, ids,
                          the kernel paths present and each layer's stored scheme

A compressed model (QAT, N:M) is exported as it was trained: its quantized layers keep the
integer codes, scales and zero points QAT learned, packed at their bit width as `bin.pack`
writes them, and only the graphs unpack them (once, at load). The C++ runtime (runtime/) reads
meta.json, picks the kernel path for its CPU and runs the .pt2 packages through
`torch::inductor::AOTIModelPackageLoader`, handing them the weights of weights.bin;
`wenet_eff.export.onnx_runtime` runs the .onnx files.
"""

from __future__ import annotations

import copy
import json
import logging
import multiprocessing
import pickle
import shutil
import time
import traceback
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch
import torch.nn as nn
from omegaconf import DictConfig

from wenet_eff.export.kernels import PRECISIONS, default_precisions, kernel_meta, lower
from wenet_eff.export.modules import (
    EncoderChunkBatch,
    EncoderChunkStep,
    EncoderFull,
    RescoringDecoder,
    chunk_window,
    prepare_for_export,
)
from wenet_eff.export.packed import packed_tensors, prepare_packed
from wenet_eff.export.weights import compile_package, write_weights
from wenet_eff.nn.attention import MultiHeadedAttention
from wenet_eff.nn.convolution import ConvolutionModule
from wenet_eff.nn.moe import moe_layers

log = logging.getLogger(__name__)

FORMAT_VERSION = 2
PIECES = ("encoder_chunk", "encoder_chunk_batch", "encoder_full", "decoder")
# Most streams the batched streaming step takes in one call. 15: AOTInductor's trace of a
# Conv1d guards on the example batch being below 16 (ATen's kernel choice), which bounds the
# compiled graph's batch, and an MoE model's expert frame counts, to 15 streams (16+ failed:
# "Expected u5 <= 240 but received 304"). The server batches up to this (--batch_max).
CHUNK_BATCH_MAX = 15
# the shortest utterance (feature frames) the full-context graph accepts: one encoder frame
# ONNX files are protobufs, limited to 2 GiB: larger graphs keep their weights in a side file
_ONNX_EXTERNAL_BYTES = 1_500_000_000
_MAX_FRAMES = 360_000  # one hour of 10 ms frames: the upper bound of the dynamic length
DECODER_MAX_LEN = 4096  # longest hypothesis (tokens) the rescoring graph takes
DECODER_MIN_FRAMES = 2  # fewest encoder frames it takes (shorter: the CTC best stands)


def _decoder_max_frames(model: nn.Module) -> int:
    """Most encoder frames the rescoring graph takes: those of the longest full-context input."""
    return _MAX_FRAMES // model.encoder.embed.subsampling_rate


def cache_shapes(model: nn.Module, chunk_size: int, num_left_chunks: int) -> dict:
    """Shapes of the streaming caches: att (L, H, C, 2 d_k), cnn (L, 1, D, kernel - 1)."""
    enc = model.encoder
    layer = enc.encoders[0]
    attn = layer.self_attn
    conv = layer.conv_module
    lorder = conv.lorder if conv is not None else 0
    return {
        "att_cache": [len(enc.encoders), attn.h, chunk_size * num_left_chunks, 2 * attn.d_k],
        "cnn_cache": [len(enc.encoders), 1, enc.output_size(), lorder],
    }


def _pieces(
    model: nn.Module, chunk_size: int, num_left_chunks: int, feat_dim: int, fmt: str = "pt2"
) -> dict:
    """name -> (module, example args, dynamic shapes, input names, output names), for export
    format `fmt` (pt2 or onnx)."""
    pieces = {}
    if chunk_size > 0:
        shapes = cache_shapes(model, chunk_size, num_left_chunks)
        window = chunk_window(model, chunk_size)
        pieces["encoder_chunk"] = (
            EncoderChunkStep(model, chunk_size, num_left_chunks),
            (
                torch.randn(1, window, feat_dim),
                torch.tensor([chunk_size * 3]),
                torch.tensor([chunk_size]),
                torch.zeros(shapes["att_cache"]),
                torch.zeros(shapes["cnn_cache"]),
            ),
            None,
            ["feats", "offset", "num_valid", "att_cache", "cnn_cache"],
            ["ctc_log_probs", "encoder_out", "new_att_cache", "new_cnn_cache"],
        )
        # rows at different positions: a first chunk, a later one, a short last one
        batch = torch.export.Dim("batch", min=1, max=CHUNK_BATCH_MAX)
        att, cnn = shapes["att_cache"], shapes["cnn_cache"]
        pieces["encoder_chunk_batch"] = (
            EncoderChunkBatch(model, chunk_size, num_left_chunks),
            (
                torch.randn(3, window, feat_dim),
                torch.tensor([0, chunk_size * 3, chunk_size * 9]),
                torch.tensor([chunk_size, chunk_size, 1]),
                torch.zeros(3, *att),
                torch.zeros(3, cnn[0], *cnn[2:]),
            ),
            {
                name: {0: batch}
                for name in ("feats", "offset", "num_valid", "att_cache", "cnn_cache")
            },
            ["feats", "offset", "num_valid", "att_cache", "cnn_cache"],
            ["ctc_log_probs", "encoder_out", "new_att_cache", "new_cnn_cache"],
        )
    embed = model.encoder.embed
    min_frames = embed.right_context + 1
    frames = torch.export.Dim.AUTO(min=min_frames + embed.subsampling_rate, max=_MAX_FRAMES)
    pieces["encoder_full"] = (
        EncoderFull(model),
        (torch.randn(1, 400, feat_dim),),
        {"feats": {1: frames}},
        ["feats"],
        ["ctc_log_probs", "encoder_out"],
    )
    # AOTInductor only: the channels-last front end (modules._single_channel_conv_nhwc), the
    # fused attention kernel (nn.attention, `fused_softmax`) and the pointwise convolutions as
    # GEMMs (nn.convolution, `pointwise_gemm`); the .onnx graphs keep the Conv and Softmax
    # ops, which onnxruntime fuses its own way
    for name in ("encoder_chunk", "encoder_chunk_batch", "encoder_full"):
        if name in pieces:
            pieces[name][0].channels_last_front_end = fmt == "pt2"
    for module in model.modules():
        if isinstance(module, MultiHeadedAttention):
            module.fused_softmax = fmt == "pt2"
        if isinstance(module, ConvolutionModule):
            module.pointwise_gemm = fmt == "pt2"
    d = model.encoder.output_size()
    t_enc = torch.export.Dim("t_enc", min=DECODER_MIN_FRAMES, max=_decoder_max_frames(model))
    nbest = torch.export.Dim("nbest", min=1, max=1024)
    length = torch.export.Dim("length", min=1, max=DECODER_MAX_LEN)
    pieces["decoder"] = (
        RescoringDecoder(model),
        (torch.randn(1, 50, d), torch.randint(1, 5, (4, 7)), torch.tensor([7, 3, 0, 5])),
        {
            "encoder_out": {1: t_enc},
            "hyps": {0: nbest, 1: length},
            "hyps_lens": {0: nbest},
        },
        ["encoder_out", "hyps", "hyps_lens"],
        ["l2r_scores", "r2l_scores"],
    )
    return pieces


def graph_file(name: str, precision: str, fmt: str) -> str:
    """The file of piece `name` on kernel path `precision`: NAME.FMT for fp32, else
    NAME.PRECISION.FMT (the C++ runtime derives the same names)."""
    return f"{name}.{fmt}" if precision == "fp32" else f"{name}.{precision}.{fmt}"


def runtime_bytes(model_dir: str | Path) -> int:
    """Bytes of what the C++ runtime loads from a model directory (what a device downloads):
    the .pt2 graphs, weights.bin/.json, meta.json and units.txt; .onnx files not counted."""
    model_dir = Path(model_dir)
    meta = json.loads((model_dir / "meta.json").read_text())
    files = [f for f in meta["files"] if ".onnx" not in f] + ["meta.json", "units.txt"]
    return sum((model_dir / f).stat().st_size for f in files)


def _constants_file(path: Path) -> Path:
    """Where a worker leaves the constants of the graph it compiled, for write_weights."""
    return path.with_name(f".{path.name}.constants.pt")


def _large(module: nn.Module) -> bool:
    """True when the weights of `module` are too large for a single-file ONNX model."""
    tensors = [*module.parameters(), *module.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors) > _ONNX_EXTERNAL_BYTES


def _export_onnx(module, args, dynamic_shapes, names_in, names_out, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=names_in,
            output_names=names_out,
            dynamic_shapes=dynamic_shapes,
            dynamo=True,
            external_data=_large(module),
            verbose=False,
        )


def _quantize_onnx(src: Path, dst: Path, large: bool = False) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # The exporter's intermediate shape annotations of the MoE gather/scatter ops disagree with
    # onnx shape inference, which the quantizer runs: drop them (inference recomputes them).
    model = onnx.load(str(src))
    model.graph.ClearField("value_info")
    if large:
        onnx.save(model, str(src), save_as_external_data=True, location=f"{src.name}.data")
    else:
        onnx.save(model, str(src))
    # MoE routers stay float, as in the .pt2 graphs (export.int8.INT8_ROLES): int8 logits
    # could route frames to other experts. The quantizer splits a Gemm into "<name>_MatMul"
    # and an Add before it matches names, so both names are listed.
    routers = [
        name
        for n in model.graph.node
        if any(i.endswith(".gate.weight") for i in n.input)
        for name in (n.name, f"{n.name}_MatMul")
    ]
    quantize_dynamic(
        str(src),
        str(dst),
        weight_type=QuantType.QInt8,
        per_channel=True,
        nodes_to_exclude=routers,
        use_external_data_format=large,
    )


_WORKER: dict = {}


def _init_worker(models: bytes, threads: int) -> None:
    """A spawned export worker: the pickled (model, float model) once, `threads` intra-op
    threads, quiet exporters. The models come as plain pickle bytes: passed as objects,
    multiprocessing would move every tensor into /dev/shm, which containers keep small."""
    torch.set_num_threads(threads)
    warnings.filterwarnings("ignore")
    for name in ("onnxscript", "onnx_ir", "root", "torch"):
        logging.getLogger(name).setLevel(logging.ERROR)
    model, float_model = pickle.loads(models)
    _WORKER.update(model=model, float_model=float_model)


def _worker_task(*task) -> float:
    """_write_task in a worker; any error comes back as a RuntimeError with its traceback
    (some torch.export errors cannot be unpickled in the parent, which would only report a
    broken pool)."""
    try:
        return _write_task(_WORKER["model"], _WORKER["float_model"], *task)
    except Exception:
        raise RuntimeError(
            f"exporting {graph_file(task[0], task[2], task[1])}:\n{traceback.format_exc()}"
        ) from None


def _write_task(
    model: nn.Module, float_model: nn.Module, name: str, fmt: str, precision: str,
    chunk_size: int, num_left_chunks: int, feat_dim: int, out: Path,
) -> float:  # fmt: skip
    """Write piece `name` on kernel path `precision` as `out/graph_file(...)`; returns the
    seconds it took. `model`: prepared with its packed weights; `float_model`: the float copy
    the .onnx graphs come from (the same model when nothing is packed). A .pt2 leaves its
    constants in `_constants_file` for weights.bin."""
    start = time.perf_counter()
    path = out / graph_file(name, precision, fmt)
    if fmt == "pt2":
        lowered = model if precision == "fp32" else copy.deepcopy(model)
        lower(lowered, precision)
        module, args, dyn, _, _ = _pieces(lowered, chunk_size, num_left_chunks, feat_dim)[name]
        with torch.no_grad():
            ep = torch.export.export(module.eval(), args, dynamic_shapes=dyn, strict=False)
        torch.save(compile_package(ep, path), _constants_file(path))
        return time.perf_counter() - start
    # onnx: the float graphs; int8: onnxruntime's quantization of them
    pieces = _pieces(float_model, chunk_size, num_left_chunks, feat_dim, fmt="onnx")
    module, args, dyn, names_in, names_out = pieces[name]
    with torch.no_grad():
        _export_onnx(module.eval(), args, dyn, names_in, names_out, path)
    if precision == "int8":
        tmp = out / f"{name}.float.onnx"
        path.replace(tmp)
        _quantize_onnx(tmp, path, large=_large(module))
        tmp.unlink()
        Path(f"{tmp}.data").unlink(missing_ok=True)
    return time.perf_counter() - start


def export_model(
    model: nn.Module,
    cfg: DictConfig,
    out_dir: str | Path,
    units: str | Path,
    chunk_size: int = 16,
    num_left_chunks: int = 4,
    precisions: tuple[str, ...] = (),
    formats: tuple[str, ...] = ("pt2", "onnx"),
    pieces: tuple[str, ...] = PIECES,
    jobs: int = 1,
) -> dict:
    """Export `model` (an ASRModel with its config `cfg`) into `out_dir`.

    Args:
        chunk_size / num_left_chunks: the streaming step's chunk (encoder frames) and left
            chunks (both > 0); chunk_size <= 0 exports no streaming step.
        precisions: kernel paths of the .pt2 graphs, any of export.kernels.PRECISIONS
            (fp32, bf16, int8); empty: `default_precisions`. The .onnx graphs are float
            for fp32 and onnxruntime's dynamic int8 quantization for int8 (none for bf16).
        formats: any of "pt2", "onnx".
        pieces: which of PIECES to write.
        jobs: run this many (piece, format, precision) tasks at once in spawned processes,
            each with its own copy of the model; the intra-op threads are shared out among
            them. A script that calls this with jobs > 1 needs an `if __name__ ==
            "__main__":` guard.
    Returns:
        the meta.json dict (with the export times in seconds under "export_seconds").
    """
    unknown = set(formats) - {"pt2", "onnx"}
    if unknown:
        raise ValueError(f"unknown export format(s) {sorted(unknown)} (choose pt2, onnx)")
    unknown = set(precisions) - set(PRECISIONS)
    if unknown:
        raise ValueError(f"unknown precision(s) {sorted(unknown)} (choose {', '.join(PRECISIONS)})")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # the caller's model stays as it was; compressed layers keep their packed weights
    packed_model, schemes = prepare_packed(model)
    precisions = tuple(precisions) or default_precisions(packed_model, schemes)
    float_model = packed_model
    if schemes and "onnx" in formats:  # onnx: float graphs (packed weights dequantized)
        float_model = prepare_for_export(copy.deepcopy(model))
    data = cfg.data
    feat_dim = int(cfg.model.input_dim)
    is_moe = bool(moe_layers(packed_model))  # wrapped (_ExportMoE) and proxied layers count
    selected = [name for name in PIECES if chunk_size > 0 or not name.startswith("encoder_chunk")]
    tasks = [
        (name, fmt, precision)
        for fmt in ("pt2", "onnx")  # the AOTInductor compiles, the longest tasks, first
        for precision in precisions
        for name in selected
        if name in pieces
        and fmt in formats
        # onnxruntime serves no batched streams; it has no bf16 graphs
        and not (fmt == "onnx" and (precision == "bf16" or name == "encoder_chunk_batch"))
    ]
    geometry = (chunk_size, num_left_chunks, feat_dim)
    times: dict[str, float] = {}
    if jobs > 1 and len(tasks) > 1:
        workers = min(jobs, len(tasks))
        threads = max(1, torch.get_num_threads() // workers)
        with ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(pickle.dumps((packed_model, float_model)), threads),
        ) as pool:
            running = {pool.submit(_worker_task, *task, *geometry, out): task for task in tasks}
            try:
                for future in as_completed(running):
                    file = graph_file(*_file_args(running[future]))
                    times[file] = future.result()
                    log.info("wrote %s (%.1f s)", out / file, times[file])
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)  # the queued tasks never start
                raise
    else:
        for task in tasks:
            file = graph_file(*_file_args(task))
            times[file] = _write_task(packed_model, float_model, *task, *geometry, out)
            log.info("wrote %s (%.1f s)", out / file, times[file])
    files = [graph_file(*_file_args(task)) for task in tasks]
    graphs = {f: torch.load(_constants_file(out / f), weights_only=True) for f in files
              if f.endswith(".pt2")}  # fmt: skip
    weights = None
    if graphs:
        weights = write_weights(out, graphs, packed_tensors(packed_model))
        files += [weights["file"], weights["index"]]
        for f in graphs:
            _constants_file(out / f).unlink()
    shutil.copyfile(units, out / "units.txt")
    embed = model.encoder.embed
    meta = {
        "format_version": FORMAT_VERSION,
        "model": str(cfg.model.get("name", "")),
        "sample_rate": int(data.sample_rate),
        "num_mel_bins": int(data.num_mel_bins),
        "frame_length_ms": float(data.frame_length),
        "frame_shift_ms": float(data.frame_shift),
        "subsampling_rate": int(embed.subsampling_rate),
        "right_context": int(embed.right_context),
        "subsampling_layout": [list(map(int, kv)) for kv in embed.layout],
        "chunk_size": int(chunk_size) if chunk_size > 0 else -1,
        "num_left_chunks": int(num_left_chunks) if chunk_size > 0 else -1,
        "chunk_window": chunk_window(model, chunk_size) if chunk_size > 0 else 0,
        "chunk_batch_max": CHUNK_BATCH_MAX,
        **(cache_shapes(model, chunk_size, num_left_chunks) if chunk_size > 0 else {}),
        "output_size": int(model.encoder.output_size()),
        "vocab_size": int(model.vocab_size),
        "blank": int(model.special.blank),
        "sos": int(model.sos),
        "eos": int(model.eos),
        "has_right_decoder": model.decoder.right_decoder is not None,
        "max_feature_frames": _MAX_FRAMES,
        "decoder_max_len": DECODER_MAX_LEN,
        "decoder_min_frames": DECODER_MIN_FRAMES,
        "decoder_max_frames": _decoder_max_frames(model),
        "token_join": " "
        if cfg.tokenizer.get("type", "char") == "char"
        and bool(cfg.tokenizer.get("split_with_space", False))
        else "",
        "int8": "int8" in precisions,
        "moe": is_moe,
        **kernel_meta(packed_model, schemes, precisions if "pt2" in formats else ()),
        "weights": weights,
        "files": {f: f for f in files},
        "export_seconds": {k: round(v, 2) for k, v in times.items()},
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    return meta


def _file_args(task: tuple) -> tuple[str, str, str]:
    """(name, precision, fmt) of a (name, fmt, precision) task, as graph_file takes them."""
    name, fmt, precision = task
    return name, precision, fmt
