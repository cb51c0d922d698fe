"""Compression through the weight-layer seam (wenet_eff.nn.linear): quantization-aware training
(`compress.quant`), packing to real low-bit storage (`compress.pack`).

    model = wenet_eff.build_model(cfg)       # applies cfg.compress (build_model calls apply)
    compress.apply(model, cfg.compress)      # or by hand on a float model

`apply` turns every tagged layer whose role is selected into its QAT class in place; state-dict
keys of the float weights do not change (a quantizer adds keys only for learnable scales or
searched clipping), so a float checkpoint fine-tunes with QAT directly.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from wenet_eff.compress.quant import QAT_CLASSES, QuantLayerMixin, WeightQuantizer
from wenet_eff.nn.linear import ROLES, weight_layers

__all__ = ["apply", "quant_layers", "regularization", "is_compressed", "compression_keys"]


def _cfg(cfg):
    return cfg.compress if hasattr(cfg, "compress") else cfg


def is_compressed(cfg) -> bool:
    """Whether the (experiment or compress) config asks for any compression."""
    return bool(_cfg(cfg).quant.enabled)


def apply(model: nn.Module, cfg) -> nn.Module:
    """Make `model`'s selected weight layers quantization-aware, in place; returns `model`.

    Args:
        model: a float model built by wenet_eff (its layers carry roles).
        cfg: the experiment config or its `compress` node.
    """
    qcfg = _cfg(cfg).quant
    if not qcfg.enabled:
        return model
    bits_by_role = parse_bits_by_role(qcfg.bits_by_role)
    unknown = [r for r in [*qcfg.roles, *bits_by_role] if r not in ROLES]
    if unknown:
        raise ValueError(f"compress.quant: unknown role(s) {unknown} (known: {', '.join(ROLES)})")
    if qcfg.native_int and qcfg.granularity == "tensor":
        raise ValueError("compress.quant.native_int needs granularity channel or subchannel")
    act_bits = qcfg.act_bits or (8 if qcfg.native_int else 0)
    selected = set(qcfg.roles) | set(bits_by_role)
    for name, layer in weight_layers(model):
        if layer.role not in selected or isinstance(layer, QuantLayerMixin):
            continue
        qat_class = QAT_CLASSES.get(type(layer))
        if qat_class is None:
            raise TypeError(f"{name}: no QAT version of {type(layer).__name__}")
        bits = bits_by_role.get(layer.role, qcfg.bits)
        quantizer = WeightQuantizer(qcfg, bits, layer.weight.detach())
        layer.__class__ = qat_class
        layer.weight_quantizer = quantizer.to(layer.weight.device)
        layer.act_bits = act_bits if isinstance(layer, nn.Linear | nn.Conv1d) else 0
        layer.native_int = qcfg.native_int
    return model


def parse_bits_by_role(entries) -> dict[str, int]:
    """["ffn.w_1:4", ...] -> {"ffn.w_1": 4, ...}; a malformed entry is an error naming it."""
    out = {}
    for entry in entries:
        role, sep, bits = str(entry).rpartition(":")
        if not sep or not bits.isdigit():
            raise ValueError(f"compress.quant.bits_by_role entry '{entry}' is not 'role:bits'")
        out[role] = int(bits)
    return out


def quant_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, layer) of every QAT layer."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, QuantLayerMixin)]


def regularization(model: nn.Module) -> torch.Tensor | None:
    """The sum of the quantizers' norm-decay terms, or None when there is none."""
    terms = [
        m.regularization() for _, m in quant_layers(model) if m.weight_quantizer.norm_decay > 0
    ]
    return torch.stack(terms).sum() if terms else None


def compression_keys(model: nn.Module) -> set[str]:
    """State-dict keys that compression added (quantizer state): absent from float checkpoints."""
    return {k for k in model.state_dict() if ".weight_quantizer." in k}


@torch.no_grad()
def refresh(model: nn.Module) -> None:
    """Re-derive quantizer state from the current weights (after loading float weights)."""
    for _, layer in quant_layers(model):
        q = layer.weight_quantizer
        if q.clip == "search":
            q.search(layer.weight)
        if q.learnable:
            w3 = q.layout.split(layer.weight.detach())
            q.scale.copy_((q._range(w3)[1] / q.qmax).clamp_min(2.0**-14))
