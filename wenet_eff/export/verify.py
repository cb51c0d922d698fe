"""Check an exported model directory against the PyTorch model it came from.

Each graph present (.pt2 variants through AOTInductor's Python loader with their weights from
weights.bin, .onnx through onnxruntime) runs on the same random input as the export-ready
PyTorch module (wenet_eff.export.modules) built from the reference model: for a .pt2, the
model with its packed weights (export.packed) on the graph's kernel path (export.kernels); for
an .onnx, the float model. Reported: the largest absolute difference per output. The fp32
graphs agree to ~1e-5 (tests hold them to 1e-4); int8 .pt2 graphs run the same integer
products as their PyTorch modules (a flipped rounding moves an output by a quantization
step); bf16 graphs differ by bf16 rounding; int8 .onnx graphs are onnxruntime's own
quantization, so they are compared with the float model and differ by quantization error.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from wenet_eff.export.kernels import lower
from wenet_eff.export.modules import (
    EncoderChunkBatch,
    EncoderChunkStep,
    EncoderFull,
    RescoringDecoder,
    prepare_for_export,
)
from wenet_eff.export.package import PIECES, graph_file
from wenet_eff.export.packed import prepare_packed
from wenet_eff.export.weights import load_graph, read_weights


def _inputs(meta: dict, frames: int, seed: int) -> dict[str, tuple[torch.Tensor, ...]]:
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(1, frames, meta["num_mel_bins"], generator=g) * 3 + 10
    out = {"encoder_full": (feats,)}
    if meta["chunk_size"] > 0:
        out["encoder_chunk"] = (
            torch.randn(1, meta["chunk_window"], meta["num_mel_bins"], generator=g) * 3 + 10,
            torch.tensor([meta["chunk_size"] * 2 + 3]),  # cache partly filled
            torch.tensor([meta["chunk_size"] - 1]),  # a short chunk
            torch.randn(meta["att_cache"], generator=g),
            torch.randn(meta["cnn_cache"], generator=g),
        )
        # three streams at their own positions: a first chunk, a later one, a short last one
        c = meta["chunk_size"]
        cnn = meta["cnn_cache"]
        out["encoder_chunk_batch"] = (
            torch.randn(3, meta["chunk_window"], meta["num_mel_bins"], generator=g) * 3 + 10,
            torch.tensor([0, c * 2 + 3, c * 5]),
            torch.tensor([c, c, 1]),
            torch.randn(3, *meta["att_cache"], generator=g),
            torch.randn(3, cnn[0], *cnn[2:], generator=g),
        )
    return out


def _modules(model: nn.Module, meta: dict) -> dict[str, nn.Module]:
    mods = {"encoder_full": EncoderFull(model), "decoder": RescoringDecoder(model)}
    if meta["chunk_size"] > 0:
        mods["encoder_chunk"] = EncoderChunkStep(model, meta["chunk_size"], meta["num_left_chunks"])
        mods["encoder_chunk_batch"] = EncoderChunkBatch(
            model, meta["chunk_size"], meta["num_left_chunks"]
        )
    return {k: v.eval() for k, v in mods.items()}


def _max_diff(a, b) -> list[float]:
    return [
        float(np.abs(np.asarray(x, dtype=np.float64) - np.asarray(y, dtype=np.float64)).max())
        for x, y in zip(a, b, strict=True)
    ]


@torch.no_grad()
def verify_export(model: nn.Module, model_dir: str | Path, frames: int = 300, seed: int = 0):
    """{graph file: [max |diff| per output]} for every .pt2 / .onnx in `model_dir`.

    `model` is the eager model the directory was exported from (it is not modified).
    """
    model_dir = Path(model_dir)
    meta = json.loads((model_dir / "meta.json").read_text())
    packed, _ = prepare_packed(model)
    float_model = prepare_for_export(copy.deepcopy(model))
    inputs = _inputs(meta, frames, seed)
    weights = read_weights(model_dir) if meta.get("weights") else None
    report: dict[str, list[float]] = {}
    for fmt, precision in [*(("pt2", p) for p in meta["precisions"]), ("onnx", "fp32"),
                           ("onnx", "int8")]:  # fmt: skip
        served = float_model
        if fmt == "pt2":
            served = copy.deepcopy(packed)
            lower(served, precision)
        mods = _modules(served, meta)
        enc_out = mods["encoder_full"](*inputs["encoder_full"])[1]
        hyps = torch.randint(1, meta["vocab_size"] - 1, (5, 12), generator=torch.Generator())
        lens = torch.tensor([12, 0, 5, 1, 9])
        args = dict(inputs, decoder=(enc_out, hyps, lens))
        for name in PIECES:
            path = model_dir / graph_file(name, precision, fmt)
            if not path.exists():
                continue
            expected = mods[name](*args[name])
            if fmt == "pt2":
                got = load_graph(model_dir, path.name, weights)(*args[name])
                report[path.name] = _max_diff(expected, got)
            else:
                import onnxruntime as ort

                session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
                feed = {
                    i.name: a.numpy() for i, a in zip(session.get_inputs(), args[name], strict=True)
                }
                report[path.name] = _max_diff(expected, session.run(None, feed))
    return report


def format_check(report: dict[str, list[float]]) -> str:
    lines = ["graph                   max |diff| per output (vs PyTorch)"]
    for name, diffs in report.items():
        lines.append(f"{name:<23} " + "  ".join(f"{d:.2e}" for d in diffs))
    return "\n".join(lines)
