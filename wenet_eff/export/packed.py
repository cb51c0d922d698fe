"""Packed weights in the exported graphs: what QAT and N:M training stored, not a float copy.

`pack_for_export(model)` turns every quantized layer of a compressed model (compress.apply)
into its packed form: the record `compress.pack.pack_layer` writes for `bin.pack` (b-bit levels
packed into bytes, float16 scales, packed zero points, N:M positions) held as the buffers of a
`PackedWeight`. The layer keeps its torch class (a subclass of it, so its forward is unchanged)
and its `weight` becomes a property that unpacks and dequantizes those buffers with
`compress.pack.unpack_layer`, the code `wenet_eff.model.load_packed` runs: the value is the QAT
model's eval weight bit for bit. A float layer trained with N:M sparsity keeps the N kept
weights of every M and their positions (`PackedNMFloat`, `compress.pack.pack_nm_float`).

In an exported graph these buffers are the constants, written once to weights.bin
(export.weights). Everything computed from them alone (unpacking, dequantizing, the int8 codes
of export.int8, the bf16 copy of export.kernels) is folded by AOTInductor's runtime constant
folding: it runs once when the runtime hands the graph its weights, not per call.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn

from wenet_eff.compress.layers import CompressedLayer
from wenet_eff.compress.pack import pack_layer, pack_nm_float, unpack_layer, unpack_nm_float
from wenet_eff.compress.quant import Groups, dequantize_groups
from wenet_eff.compress.sparse import NMSparsifier
from wenet_eff.nn.linear import weight_layers


class PackedWeight(nn.Module):
    """One quantized layer's packed record (compress.pack) as buffers: `data`, `scale`, and
    `zero` / `index` where the record has them.

    Args:
        record: `compress.pack.pack_layer` output.
        layout: the quantizer's (rows, groups, block) layout (`compress.quant.Groups`).
        symmetric: the quantizer's symmetry (levels start at 0 when asymmetric).
    """

    quantized = True

    def __init__(self, record: dict, layout: Groups, symmetric: bool):
        super().__init__()
        self.bits, self.numel, self.nm = record["bits"], record["numel"], record.get("nm")
        self.layout, self.symmetric = layout, symmetric
        self.register_buffer("data", record["data"])
        self.register_buffer("scale", record["scale"])
        self.register_buffer("zero", record["zero"])
        self.register_buffer("index", record.get("index"))

    def record(self) -> dict:
        """The record, as `compress.pack.pack_layer` returned it (buffers included)."""
        out = {"bits": self.bits, "numel": self.numel, "data": self.data, "scale": self.scale,
               "zero": self.zero}  # fmt: skip
        if self.nm is not None:
            out.update(nm=self.nm, index=self.index)
        return out

    def stored(self) -> dict:
        """`WeightQuantizer.integers` form: q (rows, groups, block) int16, scale, zero."""
        return unpack_layer(self.record(), self.layout, self.symmetric)

    def dequantized(self) -> torch.Tensor:
        """The float32 weight (the layer's shape): (q - z) * s, as the QAT model computes it."""
        return self.layout.merge(dequantize_groups(self.stored()))

    @property
    def int8_ready(self) -> bool:
        """Whether the levels minus zero points are int8 codes under one scale per output
        channel (per-channel or per-tensor groups; 8-bit asymmetric levels span 511 values)."""
        return self.layout.groups == 1 and (self.bits < 8 or self.symmetric)

    def int8_codes(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, K) int8 codes q - z and (N,) float32 scales, N the output channels."""
        stored = self.stored()
        q = stored["q"]
        if stored["zero"] is not None:
            q = q - stored["zero"].to(q.dtype)
        rows = self.layout.shape[0]
        codes = self.layout.merge(q).reshape(rows, -1).to(torch.int8)
        return codes, stored["scale"].float().reshape(-1).expand(rows)

    def scheme(self) -> dict:
        """The stored form, for meta.json: bits, levels, groups, N:M and bytes."""
        layout = self.layout
        if layout.groups > 1:
            granularity = f"subchannel/{layout.block}"
        else:
            granularity = "tensor" if layout.rows == 1 else "channel"
        kind = "binary" if self.bits == 1 else ("sym" if self.symmetric else "asym")
        return {"bits": self.bits, "levels": kind, "granularity": granularity, "nm": self.nm,
                "bytes": _bytes(self.data, self.scale, self.zero, self.index)}  # fmt: skip


class PackedNMFloat(nn.Module):
    """A float layer's N:M record (compress.pack.pack_nm_float) as buffers `values`, `index`."""

    quantized = False
    int8_ready = False

    def __init__(self, record: dict):
        super().__init__()
        self.nm, self.shape = record["nm"], record["shape"]
        self.register_buffer("values", record["values"])
        self.register_buffer("index", record["index"])

    def dequantized(self) -> torch.Tensor:
        """The float32 weight, zeros where the mask dropped."""
        record = {"values": self.values, "index": self.index, "nm": self.nm, "shape": self.shape}
        return unpack_nm_float(record)

    def scheme(self) -> dict:
        return {"bits": 32, "levels": "float", "granularity": "", "nm": self.nm,
                "bytes": _bytes(self.values, self.index)}  # fmt: skip


def _bytes(*tensors: torch.Tensor | None) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


class PackedLayer:
    """What the packed layer classes share: `weight` is `packed_weight.dequantized()`."""

    @property
    def weight(self) -> torch.Tensor:
        return self.packed_weight.dequantized()


class PackedLinear(PackedLayer, nn.Linear):
    pass


class PackedConv1d(PackedLayer, nn.Conv1d):
    pass


class PackedConv2d(PackedLayer, nn.Conv2d):
    pass


class PackedEmbedding(PackedLayer, nn.Embedding):
    pass


PACKED_CLASSES = {
    nn.Linear: PackedLinear,
    nn.Conv1d: PackedConv1d,
    nn.Conv2d: PackedConv2d,
    nn.Embedding: PackedEmbedding,
}


def _packed_source(layer: CompressedLayer) -> nn.Module | None:
    quantizer = layer.weight_quantizer
    if quantizer is not None:
        return PackedWeight(pack_layer(layer), quantizer.layout, quantizer.symmetric)
    if isinstance(layer.sparsifier, NMSparsifier) and layer.sparsifier.active:
        return PackedNMFloat(pack_nm_float(layer))
    return None  # magnitude / learned masks: folded into a float weight (fold_compression)


@torch.no_grad()
def pack_for_export(model: nn.Module) -> dict[str, dict]:
    """Give every quantized layer, and every float layer with an N:M mask, its packed weight,
    in place (see the module docstring). Activation fake quantization is dropped, as in
    `export.modules.fold_compression`, which folds the layers left compressed.

    Returns: {layer name: its `scheme()`}.
    """
    schemes = {}
    for name, layer in weight_layers(model):
        if not isinstance(layer, CompressedLayer):
            continue
        source = _packed_source(layer)
        if source is None:
            continue
        plain = next(c for c in type(layer).__bases__ if c is not CompressedLayer)
        for attr in ("weight_quantizer", "sparsifier", "weight"):
            layer._modules.pop(attr, None)
            layer._parameters.pop(attr, None)
            layer.__dict__.pop(attr, None)
        layer.__class__ = PACKED_CLASSES[plain]
        layer.packed_weight = source
        schemes[name] = source.scheme()
    return schemes


def prepare_packed(model: nn.Module) -> tuple[nn.Module, dict[str, dict]]:
    """(a copy of `model` ready for export with its packed weights, {layer: scheme}):
    `pack_for_export`, then export.modules.prepare_for_export (which folds what is left)."""
    from wenet_eff.export.modules import prepare_for_export

    model = copy.deepcopy(model)
    schemes = pack_for_export(model)
    return prepare_for_export(model), schemes


def packed_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """{<layer>.packed_weight.<buffer>: tensor}: weights.bin names the packed records by the
    model's layer names (the graphs know them by their own paths)."""
    return {
        f"{name}.packed_weight.{buffer}": t
        for name, layer in weight_layers(model)
        if hasattr(layer, "packed_weight")
        for buffer, t in layer.packed_weight.named_buffers()
    }
