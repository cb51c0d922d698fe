"""Tiny model configs that build in milliseconds, for tests."""

from __future__ import annotations

import wenet_eff

TINY = [
    "model.vocab_size=12",
    "model.encoder.output_size=32",
    "model.encoder.attention_heads=2",
    "model.encoder.linear_units=48",
    "model.encoder.num_blocks=2",
    "model.encoder.cnn_module_kernel=5",
    "model.decoder.attention_heads=2",
    "model.decoder.linear_units=48",
    "model.decoder.num_blocks=1",
    "model.decoder.r_num_blocks=1",
]


def tiny_model(*overrides: str):
    """A 2-block Conformer + 1+1 decoder over a vocabulary of 12, in eval mode."""
    cfg = wenet_eff.load_config("mini", [*TINY, *overrides])
    return wenet_eff.build_model(cfg).eval()
