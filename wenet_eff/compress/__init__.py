"""Compression through the weight-layer seam (wenet_eff.nn.linear): quantization-aware training
(`compress.quant`), sparsity (`compress.sparse`: N:M with SR-STE, gradual magnitude pruning,
S3-Router learned masks), packing to real low-bit storage (`compress.pack`), mask files and
folding (`compress.masks`).

    model = wenet_eff.build_model(cfg)       # applies cfg.compress (build_model calls apply)
    compress.apply(model, cfg.compress)      # or by hand on a float model

`apply` turns every tagged layer whose role is selected by `compress.quant` and/or
`compress.sparsity` into its compressed class (`compress.layers`) in place: the layer's
weight goes through the sparsifier, then the quantizer. State-dict keys of the float weights
do not change (quantizers add keys only for learnable scales or searched clipping;
sparsifiers for router scores and pruning masks), so a float checkpoint fine-tunes directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn

from wenet_eff import weights
from wenet_eff.compress.layers import COMPRESSED_CLASSES, CompressedLayer
from wenet_eff.compress.quant import QuantConfig, WeightQuantizer
from wenet_eff.compress.sparse import (
    MagnitudePruner,
    NMSparsifier,
    ScoreRouter,
    SparsityConfig,
    build_sparsifier,
)
from wenet_eff.nn.linear import ROLES, weight_layers

__all__ = [
    "apply", "quant_layers", "sparse_layers", "regularization", "is_compressed", "is_quantized",
    "compression_keys", "refresh", "on_update", "set_masking",
]  # fmt: skip

# state-dict key fragments of compression state (absent from float checkpoints)
STATE_KEYS = (".weight_quantizer.", ".sparsifier.")


@dataclass
class CompressConfig:
    """Compression applied through the weight-layer seam (`compress=...` config group)."""

    quant: QuantConfig = field(default_factory=QuantConfig)
    sparsity: SparsityConfig = field(default_factory=SparsityConfig)


def _cfg(cfg):
    return cfg.compress if hasattr(cfg, "compress") else cfg


def is_compressed(cfg) -> bool:
    """Whether the (experiment or compress) config asks for any compression."""
    c = _cfg(cfg)
    return bool(c.quant.enabled) or bool(c.sparsity.enabled)


def is_quantized(cfg) -> bool:
    return bool(_cfg(cfg).quant.enabled)


def _check_roles(section: str, roles) -> None:
    unknown = [r for r in roles if r not in ROLES]
    if unknown:
        raise ValueError(
            f"compress.{section}: unknown role(s) {unknown} (known: {', '.join(ROLES)})"
        )


def apply(model: nn.Module, cfg) -> nn.Module:
    """Compress `model`'s selected weight layers in place (see the module docstring).

    Args:
        model: a float model built by wenet_eff (its layers carry roles).
        cfg: the experiment config or its `compress` node.
    """
    ccfg = _cfg(cfg)
    qcfg, scfg = ccfg.quant, ccfg.sparsity
    if not qcfg.enabled and not scfg.enabled:
        return model
    bits_by_role = parse_bits_by_role(qcfg.bits_by_role)
    quant_roles = set(qcfg.roles) | set(bits_by_role) if qcfg.enabled else set()
    sparse_roles = set(scfg.roles) if scfg.enabled else set()
    _check_roles("quant", [*qcfg.roles, *bits_by_role])
    _check_roles("sparsity", scfg.roles)
    if qcfg.enabled and qcfg.native_int and qcfg.granularity == "tensor":
        raise ValueError("compress.quant.native_int needs granularity channel or subchannel")
    act_bits = qcfg.act_bits or (8 if qcfg.native_int else 0)
    for name, layer in weight_layers(model):
        quantize, sparsify = layer.role in quant_roles, layer.role in sparse_roles
        if not (quantize or sparsify) or isinstance(layer, CompressedLayer):
            continue
        compressed = COMPRESSED_CLASSES.get(type(layer))
        if compressed is None:
            raise TypeError(f"{name}: no compressed version of {type(layer).__name__}")
        bits = bits_by_role.get(layer.role, qcfg.bits)
        if quantize and sparsify and bits == 1:
            raise ValueError(
                f"{name}: binarization has no zero level, so it cannot keep a sparsity mask "
                "(leave its role out of compress.sparsity.roles or quantize it to 2+ bits)"
            )
        weight = layer.weight.detach()
        layer.__class__ = compressed
        layer.sparsifier = build_sparsifier(scfg, weight, name) if sparsify else None
        if sparsify and scfg.method == "router":
            layer.weight.requires_grad_(False)  # S3-Router: connections are learned, not weights
        # the quantizer's initial state (scale, clip) is derived from the masked weight
        layer.weight_quantizer = (
            WeightQuantizer(qcfg, bits, layer.masked_weight().detach()) if quantize else None
        )
        layer.act_bits = act_bits if quantize and isinstance(layer, nn.Linear | nn.Conv1d) else 0
        layer.native_int = bool(quantize and qcfg.native_int)
        layer.to(weight.device)
    if scfg.enabled and scfg.method == "router" and not scfg.train_other:
        _freeze_outside_routers(model)
    return model


def _freeze_outside_routers(model: nn.Module) -> None:
    """S3-Router with train_other=false: only the scores train; batch-norm statistics freeze
    too (momentum 0), so every mask sits on the same shared model."""
    for name, param in model.named_parameters():
        if not name.endswith(".sparsifier.scores"):
            param.requires_grad_(False)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = 0.0


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
    """(name, layer) of every layer with a weight quantizer."""
    return [
        (n, m)
        for n, m in model.named_modules()
        if isinstance(m, CompressedLayer) and m.weight_quantizer is not None
    ]


def sparse_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, layer) of every layer with a sparsifier."""
    return [
        (n, m)
        for n, m in model.named_modules()
        if isinstance(m, CompressedLayer) and m.sparsifier is not None
    ]


def regularization(model: nn.Module) -> torch.Tensor | None:
    """The sum of the quantizers' norm-decay terms, or None when there is none."""
    terms = [
        m.regularization() for _, m in quant_layers(model) if m.weight_quantizer.norm_decay > 0
    ]
    return torch.stack(terms).sum() if terms else None


def compression_keys(model: nn.Module) -> set[str]:
    """State-dict keys that compression added: absent from float checkpoints."""
    return {k for k in model.state_dict() if any(s in k for s in STATE_KEYS)}


@torch.no_grad()
def refresh(model: nn.Module, missing: set[str] | None = None) -> None:
    """Re-derive compression state from the current weights (after loading float weights):
    quantizer clip and scales from the masked weights, router scores from the weights.

    Args:
        model: a compressed model.
        missing: only the quantizers/sparsifiers owning one of these state-dict keys are
            re-derived (a checkpoint that lacks some state keeps the state it has); None: all.
    """

    def owns(name: str, part: str) -> bool:
        return missing is None or any(k.startswith(f"{name}.{part}.") for k in missing)

    for name, layer in sparse_layers(model):
        s = layer.sparsifier
        if isinstance(s, ScoreRouter) and owns(name, "sparsifier"):
            s.scores.copy_(s.initial_scores(layer.weight))
    for name, layer in quant_layers(model):
        if not owns(name, "weight_quantizer"):
            continue
        q = layer.weight_quantizer
        w = layer.masked_weight().detach()
        if q.clip == "search":
            q.search(w)
        if q.learnable:
            w3 = q.layout.split(w)
            q.scale.copy_((q._range(w3)[1] / q.qmax).clamp_min(2.0**-14))


def load_weights(model: nn.Module, path, source: str, training: bool = False) -> bool:
    """Load a checkpoint into a (possibly compressed) model, deriving missing compression state.

    Its own QAT/sparse checkpoint loads as it is. Float weights (or a checkpoint made with other
    compression options) lack some state, which is derived from the weights (`refresh`): QAT
    fine-tuning starts there, and packing or decoding it is post-training quantization.

    Args:
        model: the model to fill.
        path: the checkpoint (a state dict).
        source: names the checkpoint in errors (e.g. "--checkpoint").
        training: the weights start a training run. Magnitude pruning then builds its mask on
            its schedule; otherwise a missing pruning mask is an error, since serving the
            weights dense would ignore the configured sparsity.
    Returns:
        True when some state was derived.
    Raises:
        ValueError: the checkpoint does not fit the model, or (not training) it has no
            magnitude-pruning mask for this config.
    """
    missing = weights.load_weights(model, path, source, optional=compression_keys(model))
    pruned = [
        name
        for name, layer in sparse_layers(model)
        if isinstance(layer.sparsifier, MagnitudePruner) and f"{name}.sparsifier.keep" in missing
    ]
    if pruned and not training:
        raise ValueError(
            f"{source} {path} has no magnitude-pruning masks (e.g. {pruned[0]}): prune it by "
            "training (train.init_checkpoint), or use N:M sparsity (method=nm), which masks "
            "float weights by magnitude directly"
        )
    if missing:
        refresh(model, missing)
    return bool(missing)


def on_update(model: nn.Module, step: int) -> None:
    """After optimizer update number `step` (1-based): pruning schedules move on."""
    for _, layer in sparse_layers(model):
        if isinstance(layer.sparsifier, MagnitudePruner):
            layer.sparsifier.update(layer.weight, step)


def set_masking(model: nn.Module, active: bool) -> None:
    """Switch the N:M masks on or off (off: STEP's dense precondition phase)."""
    for _, layer in sparse_layers(model):
        if isinstance(layer.sparsifier, NMSparsifier):
            layer.sparsifier.active = active
