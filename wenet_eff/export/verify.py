"""Check an exported model directory against the PyTorch model it came from.

Each graph present (.pt2 through AOTInductor's Python loader, .onnx through onnxruntime) runs
on the same random input as the export-ready PyTorch module (wenet_eff.export.modules) built
from the reference model, with int8 applied when the directory is int8. Reported: the largest
absolute difference per output. The float graphs agree to ~1e-5 (tests hold them to 1e-4);
int8 .pt2 graphs run the same integer products as their PyTorch modules (same tolerance);
int8 .onnx graphs are onnxruntime's own quantization, so they are compared with the float
model and differ by quantization error.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from wenet_eff.export.int8 import quantize_int8
from wenet_eff.export.modules import (
    EncoderChunkStep,
    EncoderFull,
    RescoringDecoder,
    prepare_for_export,
)


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
    return out


def _modules(model: nn.Module, meta: dict) -> dict[str, nn.Module]:
    mods = {"encoder_full": EncoderFull(model), "decoder": RescoringDecoder(model)}
    if meta["chunk_size"] > 0:
        mods["encoder_chunk"] = EncoderChunkStep(model, meta["chunk_size"], meta["num_left_chunks"])
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
    float_model = prepare_for_export(copy.deepcopy(model))
    served = float_model
    if meta["int8"]:
        served = copy.deepcopy(float_model)
        quantize_int8(served)
    references = {"pt2": _modules(served, meta), "onnx": _modules(float_model, meta)}
    inputs = _inputs(meta, frames, seed)
    report: dict[str, list[float]] = {}
    for fmt, mods in references.items():
        enc_out = mods["encoder_full"](*inputs["encoder_full"])[1]
        n = 5
        hyps = torch.randint(1, meta["vocab_size"] - 1, (n, 12), generator=torch.Generator())
        lens = torch.tensor([12, 0, 5, 1, 9])
        args = dict(inputs, decoder=(enc_out, hyps, lens))
        for name, module in mods.items():
            path = model_dir / f"{name}.{fmt}"
            if not path.exists():
                continue
            expected = module(*args[name])
            if fmt == "pt2":
                got = torch._inductor.aoti_load_package(str(path))(*args[name])
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
