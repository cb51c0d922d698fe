"""Kernel paths of the exported graphs: one graph variant per path, chosen per CPU at load.

- `fp32`: float32 GEMMs; a packed layer's weight is dequantized (export.packed).
- `int8`: int8 x int8 GEMMs (`torch._int_mm`, oneDNN) on the layers export.int8 converts: the
  QAT codes and scales of packed per-channel layers (w8a8, w4a8, w2a8, binary), the absmax
  quantization of float ones; the rest in float32 (e.g. sub-channel groups).
- `bf16`: the same Linear / pointwise layers as bfloat16 GEMMs (inputs cast to bf16, outputs
  back to float32; norms, softmax and the rest stay float32), for CPUs with AMX or
  AVX512-BF16; a packed layer's weight is dequantized, then cast.

`lower(model, path)` converts a model prepared for export in place and says, per seam layer,
which path it runs. The C++ runtime picks the variant (runtime/src/cpu_features.h); every
variant reads the same constants from weights.bin.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from wenet_eff.export.int8 import INT8_ROLES, int8_module, quantize_int8
from wenet_eff.nn.linear import weight_layers

PRECISIONS = ("fp32", "bf16", "int8")


class Bf16Linear(nn.Module):
    """A Linear (or a kernel-1 Conv1d over channels, `channels_first`) as a bfloat16 GEMM with
    a float32 result; the bias is added in float32."""

    def __init__(self, layer: nn.Module, channels_first: bool):
        super().__init__()
        self.layer = layer
        self.channels_first = channels_first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_first:  # (B, C, T) -> (B, T, C)
            x = x.transpose(1, 2)
        w = self.layer.weight
        y = F.linear(x.to(torch.bfloat16), w.reshape(w.size(0), -1).to(torch.bfloat16)).float()
        if self.layer.bias is not None:
            y = y + self.layer.bias
        return y.transpose(1, 2) if self.channels_first else y


def bf16_module(layer: nn.Module) -> nn.Module | None:
    """The bf16 module replacing `layer`, or None where it stays float32."""
    if getattr(layer, "role", "") not in INT8_ROLES:
        return None
    if isinstance(layer, nn.Linear):
        return Bf16Linear(layer, channels_first=False)
    if isinstance(layer, nn.Conv1d) and layer.kernel_size == (1,):
        return Bf16Linear(layer, channels_first=True)
    return None


_MODULES = {"int8": int8_module, "bf16": bf16_module}


def layer_paths(model: nn.Module, path: str) -> dict[str, str]:
    """{seam layer name: the path it runs in the `path` variant: fp32, bf16 or int8}."""
    if path not in PRECISIONS:
        raise ValueError(f"unknown precision '{path}' (choose {', '.join(PRECISIONS)})")
    module = _MODULES.get(path)
    return {
        name: path if module is not None and module(layer) is not None else "fp32"
        for name, layer in weight_layers(model)
    }


def lower(model: nn.Module, path: str) -> dict[str, str]:
    """Convert `model` (prepared by export.modules.prepare_for_export) to kernel path `path`
    in place. Returns `layer_paths` (what runs where)."""
    paths = layer_paths(model, path)
    if path == "int8":
        quantize_int8(model)
    elif path == "bf16":
        parents = dict(model.named_modules())
        for name, layer in weight_layers(model):
            new = bf16_module(layer)
            if new is not None:
                parent_name, _, child = name.rpartition(".")
                setattr(parents[parent_name] if parent_name else model, child, new)
    return paths


def path_summary(model: nn.Module, paths: dict[str, str]) -> dict:
    """{"layers": {path: count}, "int8_share": the fraction of the seam's weights (elements) on
    int8 GEMMs}, for meta.json; `model` as prepared for export, before `lower`."""
    layers: dict[str, int] = {}
    numel = {"int8": 0, "all": 0}
    sizes = {name: _numel(layer) for name, layer in weight_layers(model)}
    for name, path in paths.items():
        layers[path] = layers.get(path, 0) + 1
        numel["all"] += sizes[name]
        if path == "int8":
            numel["int8"] += sizes[name]
    return {"layers": layers, "int8_share": numel["int8"] / max(numel["all"], 1)}


def _numel(layer: nn.Module) -> int:
    packed = getattr(layer, "packed_weight", None)
    if packed is not None:
        return int(torch.Size(packed.layout.shape if packed.quantized else packed.shape).numel())
    return layer.weight.numel()


def default_precisions(model: nn.Module, schemes: dict[str, dict]) -> tuple[str, ...]:
    """The kernel paths exported when none are asked for: fp32 for a float model (N:M
    sparse ones included); for a quantized one also int8 (its QAT codes), and bf16 where int8
    would run under half of the weights (sub-channel groups), so one directory serves CPUs
    with and without int8 or bf16 dot products (the runtime chooses;
    runtime/src/cpu_features.h). `schemes`: export.packed.pack_for_export's."""
    if not any(s["levels"] != "float" for s in schemes.values()):
        return ("fp32",)
    share = path_summary(model, layer_paths(model, "int8"))["int8_share"]
    return ("fp32", "int8") if share >= 0.5 else ("fp32", "int8", "bf16")


def kernel_meta(model: nn.Module, schemes: dict, precisions: tuple[str, ...]) -> dict:
    """meta.json's kernel paths: the precisions with .pt2 graphs, per precision the layers per
    path and the int8 share of the weights (the runtime's choice reads it), and per seam layer
    its stored scheme and the path it runs in each variant."""
    paths = {p: layer_paths(model, p) for p in precisions}
    layers = {}
    for name, layer in weight_layers(model):
        scheme = schemes.get(name)
        if scheme is None:
            scheme = {"bits": 32, "levels": "float", "granularity": "", "nm": None,
                      "bytes": 4 * layer.weight.numel()}  # fmt: skip
        layers[name] = {**scheme, "paths": {p: paths[p][name] for p in precisions}}
    return {
        "precisions": list(precisions),
        "packed": bool(schemes),
        "kernel_paths": {p: path_summary(model, paths[p]) for p in precisions},
        "layers": layers,
    }
