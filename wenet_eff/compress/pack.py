"""Packing a QAT model into real low-bit storage, and loading it back exactly.

File (torch.save of a dict, format `wenet_eff.packed/1`):
- `config`: the experiment config (resolved, as train.yaml);
- `layers`: per quantized layer, its `bits`, `numel`, `data` (the levels as unsigned b-bit
  fields packed into bytes: 8 per byte at 1 bit, 4 at 2, 2 at 4, 1 at 8), `scale` (float16 per
  group) and `zero` (asymmetric: b-bit zero points, packed the same way); a layer trained with
  N:M masks stores only its N kept levels of every M in `data`, their positions in the group
  in `index` (2-bit fields for M <= 4) and `nm` = [N, M] (2:4 at 4 bits: 3 bits per weight);
- `float`: every other tensor of the state dict (biases, norms, CMVN, ...) in float32, except
  the positional tables that the model computes from its config.

Sparsity masks are folded in (the stored integers of a masked weight are zero where it is
zero; a masked float layer stores its masked weight), and the stored config has
`compress.sparsity.enabled: false`. `pack_nm_float` is the N:M storage of a float layer (its
kept float32 weights and their positions), which the runtime export writes
(wenet_eff.export.packed).

`wenet_eff.model.load_packed` rebuilds the model from the stored config and serves the stored
integers (`unpack_into`): its outputs equal the QAT model's eval forward bit for bit (tests
check).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from omegaconf import OmegaConf

from wenet_eff.compress import STATE_KEYS, quant_layers, sparse_layers
from wenet_eff.compress.quant import Groups, qrange
from wenet_eff.compress.sparse import NMSparsifier
from wenet_eff.nn.cmvn import GlobalCMVN

FORMAT = "wenet_eff.packed/1"
# buffers the model computes from its config (sinusoidal positional tables): not stored
DERIVED = (".pe",)


def pack_bits(values: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack unsigned `bits`-bit values (any shape, each < 2^bits) into a flat uint8 tensor."""
    if bits == 8:
        return values.reshape(-1).to(torch.uint8).clone()
    per = 8 // bits
    flat = values.reshape(-1).to(torch.uint8)
    pad = (-flat.numel()) % per
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    fields = flat.reshape(-1, per)
    out = fields.new_zeros(fields.size(0))
    for i in range(per):
        out |= fields[:, i] << (bits * i)
    return out


def unpack_bits(packed: torch.Tensor, bits: int, numel: int) -> torch.Tensor:
    """Inverse of `pack_bits`: the first `numel` values as uint8."""
    if bits == 8:
        return packed[:numel].clone()
    per = 8 // bits
    mask = (1 << bits) - 1
    fields = torch.stack([(packed >> (bits * i)) & mask for i in range(per)], dim=1)
    return fields.reshape(-1)[:numel]


def pack_layer(layer) -> dict:
    """The packed record of one QAT layer (of a packed model: the record it was loaded from)."""
    loaded = getattr(layer, "packed_record", None)
    if loaded is not None:
        return loaded
    quantizer = layer.weight_quantizer
    stored = layer.stored()
    bits = quantizer.bits
    qmin, _ = qrange(bits, quantizer.symmetric)
    levels = quantizer.layout.merge(stored["q"].to(torch.int16))  # drop padding
    unsigned = (levels + 1) // 2 if bits == 1 else levels - qmin  # binary: -1/1 -> 0/1
    record = {
        "bits": bits,
        "numel": levels.numel(),
        "data": pack_bits(unsigned, bits),
        "scale": stored["scale"].reshape(-1).clone(),
        "zero": None,
    }
    if stored["zero"] is not None:
        record["zero"] = pack_bits(stored["zero"], bits)
    sparsifier = layer.sparsifier
    if isinstance(sparsifier, NMSparsifier) and sparsifier.active:
        # N:M storage: only the N kept levels of every M, plus each one's position in its group
        kept, index = _nm_kept(layer, unsigned)
        record.update(data=pack_bits(kept, bits), nm=[sparsifier.n, sparsifier.m], index=index)
    return record


def _nm_kept(layer, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(the N kept entries of `values` in every group of M, their packed positions) under the
    layer's N:M mask; `values` has the weight's shape."""
    n, m = layer.sparsifier.n, layer.sparsifier.m
    rows = values.size(0)
    keep = layer.sparsifier.mask(layer.weight).reshape(rows, -1, m)
    index = keep.to(torch.int8).argsort(dim=-1, descending=True, stable=True)[..., :n]
    index = index.sort(-1).values
    kept = values.reshape(rows, -1, m).gather(-1, index)
    return kept, pack_bits(index, index_bits(m))


def pack_nm_float(layer) -> dict:
    """The N:M record of a float layer (sparsity without quantization): `values` (float32, the
    N kept weights of every M), `index` (their positions, packed), `nm`, `shape`."""
    weight = layer.masked_weight().detach().float()
    values, index = _nm_kept(layer, weight)
    n, m = layer.sparsifier.n, layer.sparsifier.m
    return {"values": values.reshape(-1).clone(), "index": index, "nm": [n, m],
            "shape": list(weight.shape)}  # fmt: skip


def _nm_scatter(
    base: torch.Tensor, kept: torch.Tensor, index_packed: torch.Tensor, nm
) -> torch.Tensor:
    """`base` (the weight's shape) with the kept entries written at their stored positions."""
    n, m = nm
    rows = base.size(0)
    count = base.numel() // m * n
    index = unpack_bits(index_packed, index_bits(m), count).long()
    grouped = base.reshape(rows, -1, m).clone()
    grouped.scatter_(-1, index.reshape(rows, -1, n), kept.reshape(rows, -1, n))
    return grouped.reshape(base.shape)


def unpack_nm_float(record: dict) -> torch.Tensor:
    """The float weight of a `pack_nm_float` record (zeros where the mask dropped)."""
    base = torch.zeros(record["shape"], dtype=record["values"].dtype)
    return _nm_scatter(base, record["values"], record["index"], record["nm"])


def index_bits(m: int) -> int:
    """Bits per stored position within a group of M (a field width pack_bits supports)."""
    return next(b for b in (1, 2, 4, 8) if 2**b >= m)


def _nm_levels(record: dict, layout: Groups, symmetric: bool) -> torch.Tensor:
    """The full int16 level tensor of an N:M record: kept levels at their positions, the zero
    level (0, or the group's zero point) everywhere else."""
    bits, (n, m) = record["bits"], record["nm"]
    qmin, _ = qrange(bits, symmetric)
    if record["zero"] is None:
        levels = torch.zeros(layout.shape, dtype=torch.int16)
    else:
        zero = unpack_bits(record["zero"], bits, layout.rows * layout.groups).to(torch.int16)
        levels = layout.merge(
            zero.reshape(layout.rows, layout.groups, 1).expand(-1, -1, layout.block)
        )
    kept = unpack_bits(record["data"], bits, record["numel"] // m * n).to(torch.int16) + qmin
    return _nm_scatter(levels, kept, record["index"], record["nm"])


def unpack_layer(record: dict, layout: Groups, symmetric: bool) -> dict:
    """The `WeightQuantizer.integers` form of a packed record, for a quantizer with this
    `layout` and symmetry. Plain tensor operations, so an exported graph can run it on its
    constants (wenet_eff.export.packed)."""
    bits = record["bits"]
    qmin, _ = qrange(bits, symmetric)
    if "nm" in record:
        levels = _nm_levels(record, layout, symmetric)
    else:
        unsigned = unpack_bits(record["data"], bits, record["numel"]).to(torch.int16)
        levels = unsigned * 2 - 1 if bits == 1 else unsigned + qmin
    q = layout.split(levels.reshape(layout.shape).float()).to(torch.int16)
    shape = (layout.rows, layout.groups, 1)
    zero = None
    if record["zero"] is not None:
        zero = unpack_bits(record["zero"], bits, layout.rows * layout.groups).reshape(shape)
    return {"q": q, "scale": record["scale"].reshape(shape), "zero": zero}


def pack_model(model, cfg) -> dict:
    """The packed file's content for a QAT model (see the module docstring)."""
    layers = {name: pack_layer(layer) for name, layer in quant_layers(model)}
    if not layers:
        raise ValueError("the model has no quantized layers: train with compress=... first")
    skip = {f"{name}.weight" for name in layers}
    floats = {
        k: v.detach().float() if v.is_floating_point() else v.detach()
        for k, v in model.state_dict().items()
        if k not in skip and not any(s in k for s in STATE_KEYS) and not k.endswith(DERIVED)
    }
    # masks are folded: quantized layers store the masked weight's integers, masked float
    # layers their masked weight, so the packed model needs no sparsifier
    for name, layer in sparse_layers(model):
        if name not in layers:
            floats[f"{name}.weight"] = layer.masked_weight().detach().float()
    config = OmegaConf.to_container(cfg, resolve=True)
    config["compress"]["sparsity"]["enabled"] = False
    return {"format": FORMAT, "config": config, "layers": layers, "float": floats}


def save_packed(model, cfg, path: str | os.PathLike) -> dict:
    """Write the packed model to `path` (atomically); returns `size_report`."""
    packed = pack_model(model, cfg)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(packed, tmp)
    os.replace(tmp, path)
    report = size_report(model, packed)
    report["file_bytes"] = path.stat().st_size
    return report


def is_packed(path: str | os.PathLike) -> bool:
    """Whether `path` is a packed model file (by its format tag)."""
    try:
        content = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - not ours to judge here: the state_dict loader reports it
        return False
    return isinstance(content, dict) and content.get("format") == FORMAT


def read_packed(path: str | os.PathLike) -> dict:
    """The content of a packed file (`format`, `config`, `layers`, `float`); the model is built
    from its `config` (`wenet_eff.model.load_packed`) and then filled by `unpack_into`."""
    packed = torch.load(path, map_location="cpu", weights_only=True)
    if packed.get("format") != FORMAT:
        raise ValueError(f"{path}: not a packed model (format {packed.get('format')!r})")
    return packed


def unpack_into(model: torch.nn.Module, packed: dict, path: str | os.PathLike) -> None:
    """Fill `model` (built from the packed config, without CMVN statistics) with the stored
    integers and float tensors of `packed` (read from `path`, named in errors)."""
    floats = packed["float"]
    if "encoder.global_cmvn.mean" in floats:
        model.encoder.global_cmvn = GlobalCMVN(
            floats["encoder.global_cmvn.mean"], floats["encoder.global_cmvn.istd"]
        )
    layers = dict(quant_layers(model))
    if set(layers) != set(packed["layers"]):
        raise ValueError(f"{path}: its quantized layers do not match its config's")
    for name, record in packed["layers"].items():
        layer = layers[name]
        quantizer = layer.weight_quantizer
        stored = unpack_layer(record, quantizer.layout, quantizer.symmetric)
        with torch.no_grad():
            layer.weight.copy_(layer.weight_quantizer.dequantize(stored))
        layer.packed = stored
        layer.packed_record = record  # packing it again (the runtime export) keeps its N:M
    state = model.state_dict()
    missing = [k for k in state if k not in floats and not _is_packed_key(k, layers)]
    if missing:
        raise ValueError(f"{path}: missing tensors {missing[:5]}")
    model.load_state_dict({**state, **floats}, strict=True)


def _is_packed_key(key: str, layers: dict) -> bool:
    return (
        any(s in key for s in STATE_KEYS)
        or key.removesuffix(".weight") in layers
        or key.endswith(DERIVED)
    )


def _record_bytes(record: dict) -> int:
    size = record["data"].numel() + 2 * record["scale"].numel()
    if record["zero"] is not None:
        size += record["zero"].numel()
    if "index" in record:
        size += record["index"].numel()
    return size


def size_report(model, packed: dict) -> dict:
    """Bytes per role: float32 vs packed, and the whole model (other tensors in float32)."""
    layers = dict(quant_layers(model))
    roles: dict[str, dict] = {}
    for name, record in packed["layers"].items():
        layer = layers[name]
        nm = f", {record['nm'][0]}:{record['nm'][1]}" if "nm" in record else ""
        key = f"{layer.role} ({record['bits']}-bit{nm})"
        row = roles.setdefault(key, {"params": 0, "float32_bytes": 0, "packed_bytes": 0})
        row["params"] += record["numel"]
        row["float32_bytes"] += 4 * record["numel"]
        row["packed_bytes"] += _record_bytes(record)
    other = sum(v.numel() for k, v in packed["float"].items() if v.is_floating_point())
    other_bytes = sum(v.numel() * v.element_size() for v in packed["float"].values())
    total_params = sum(r["params"] for r in roles.values()) + other
    packed_bytes = sum(r["packed_bytes"] for r in roles.values()) + other_bytes
    for row in roles.values():
        row["ratio"] = row["float32_bytes"] / max(row["packed_bytes"], 1)
    return {
        "roles": dict(sorted(roles.items())),
        "other_float": {"params": other, "bytes": other_bytes},
        "total": {
            "params": total_params,
            "float32_bytes": 4 * total_params,
            "packed_bytes": packed_bytes,
            "ratio": 4 * total_params / max(packed_bytes, 1),
        },
    }


def format_report(report: dict) -> str:
    lines = [f"{'group':<28}{'params':>12}{'float32 B':>14}{'packed B':>12}{'ratio':>8}"]
    for role, row in report["roles"].items():
        lines.append(
            f"{role:<28}{row['params']:>12,}{row['float32_bytes']:>14,}"
            f"{row['packed_bytes']:>12,}{row['ratio']:>8.2f}"
        )
    other = report["other_float"]
    lines.append(
        f"{'other (float32)':<28}{other['params']:>12,}{other['bytes']:>14,}"
        f"{other['bytes']:>12,}{1.0:>8.2f}"
    )
    total = report["total"]
    lines.append(
        f"{'whole model':<28}{total['params']:>12,}{total['float32_bytes']:>14,}"
        f"{total['packed_bytes']:>12,}{total['ratio']:>8.2f}"
    )
    if "file_bytes" in report:
        lines.append(f"file on disk: {report['file_bytes']:,} bytes")
    return "\n".join(lines)
