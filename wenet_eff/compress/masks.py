"""Masks as files and as an analysis tool: per-domain mask files over a shared base checkpoint
(S3-Router), folding masks into the weights for export, per-layer sparsity and N:M checks, and
mask similarity (IoU) between two mask files.

Mask file (torch.save of a dict, format `wenet_eff.masks/1`): `layers` maps each masked
layer's name to its `shape` and `data` (the mask, 1 bit per weight, packed 8 per byte by
`pack.pack_bits`), plus `base` (the checkpoint the mask was learned on) and `meta` (method,
keep ratio, ...). A 0.9-keep mask costs 1/32 of the float32 weights it covers.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
import torch.nn as nn

from wenet_eff.compress import sparse_layers
from wenet_eff.compress.pack import pack_bits, unpack_bits
from wenet_eff.compress.sparse import is_nm

FORMAT = "wenet_eff.masks/1"


def model_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """{layer name: boolean mask} of every sparse layer, as its forward applies it now."""
    with torch.no_grad():
        return {
            name: layer.sparsifier.mask(layer.weight).cpu() for name, layer in sparse_layers(model)
        }


def save_masks(
    masks: dict[str, torch.Tensor],
    path: str | os.PathLike,
    base: str = "",
    meta: dict | None = None,
) -> int:
    """Write `masks` as a mask file (atomically); returns its size in bytes."""
    if not masks:
        raise ValueError("no masks to save: the model has no sparse layers (compress.sparsity)")
    content = {
        "format": FORMAT,
        "base": str(base),
        "meta": dict(meta or {}),
        "layers": {
            name: {"shape": list(mask.shape), "data": pack_bits(mask.to(torch.uint8), 1)}
            for name, mask in masks.items()
        },
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(content, tmp)
    os.replace(tmp, path)
    return path.stat().st_size


def load_masks(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict]:
    """({layer name: boolean mask}, the file's {base, meta}) of a mask file."""
    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same clear error
        raise ValueError(f"{path}: not a readable mask file ({exc})") from exc
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        raise ValueError(f"{path}: not a mask file (bin.masks save writes them)")
    masks = {}
    for name, rec in content["layers"].items():
        numel = math.prod(rec["shape"])
        masks[name] = unpack_bits(rec["data"], 1, numel).reshape(rec["shape"]).bool()
    return masks, {"base": content["base"], "meta": content["meta"]}


@torch.no_grad()
def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor], source: str = "masks") -> None:
    """Multiply each named layer's weight by its mask, in place (fold a mask file into a float
    model). A layer the model lacks or a shape mismatch is an error naming it."""
    modules = dict(model.named_modules())
    for name, mask in masks.items():
        layer = modules.get(name)
        if layer is None or not hasattr(layer, "weight"):
            raise ValueError(f"{source}: the model has no layer '{name}'")
        if tuple(layer.weight.shape) != tuple(mask.shape):
            raise ValueError(
                f"{source}: mask of '{name}' is {tuple(mask.shape)}, its weight "
                f"{tuple(layer.weight.shape)}"
            )
        layer.weight.mul_(mask.to(layer.weight))


@torch.no_grad()
def folded_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict with every mask multiplied into its weight and no sparsifier
    state: loads into the same config with `compress.sparsity.enabled=false`."""
    state = {k: v for k, v in model.state_dict().items() if ".sparsifier." not in k}
    for name, layer in sparse_layers(model):
        state[f"{name}.weight"] = layer.masked_weight().detach().clone()
    return state


def sparsity_report(
    state: dict[str, torch.Tensor], layers: list[str], nm: tuple[int, int] | None = None
) -> dict:
    """Per layer: parameters, zeros, sparsity, and (nm given) whether it is exactly N:M
    (at most N nonzeros in every M consecutive inputs); plus the totals."""
    rows = {}
    for name in layers:
        w = state[f"{name}.weight"]
        row = {"params": w.numel(), "zeros": int((w == 0).sum())}
        row["sparsity"] = row["zeros"] / max(row["params"], 1)
        if nm is not None:
            row["nm_ok"] = is_nm(w, *nm)
        rows[name] = row
    params = sum(r["params"] for r in rows.values())
    zeros = sum(r["zeros"] for r in rows.values())
    total = {"params": params, "zeros": zeros, "sparsity": zeros / max(params, 1)}
    if nm is not None:
        total["nm_ok"] = all(r["nm_ok"] for r in rows.values())
    return {"layers": rows, "total": total}


def mask_iou(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> dict:
    """Intersection over union of the kept weights, per common layer and overall; also the
    IoU of the removed weights (what the masks drop), the more telling number at keep 0.9."""
    common = [n for n in a if n in b]
    if not common:
        raise ValueError("the two mask files share no layer")
    rows = {}
    sums = {"kept_inter": 0, "kept_union": 0, "drop_inter": 0, "drop_union": 0}
    for name in common:
        x, y = a[name].bool(), b[name].bool()
        if x.shape != y.shape:
            raise ValueError(f"layer '{name}': mask shapes {tuple(x.shape)} and {tuple(y.shape)}")
        counts = {
            "kept_inter": int((x & y).sum()),
            "kept_union": int((x | y).sum()),
            "drop_inter": int((~x & ~y).sum()),
            "drop_union": int((~x | ~y).sum()),
        }
        for k, v in counts.items():
            sums[k] += v
        rows[name] = _ious(counts)
    return {"layers": rows, "total": _ious(sums)}


def _ious(c: dict) -> dict:
    return {
        "kept_iou": c["kept_inter"] / max(c["kept_union"], 1),
        "removed_iou": c["drop_inter"] / max(c["drop_union"], 1) if c["drop_union"] else 1.0,
    }
