"""Where WeNet's reference data lives: `../shared/reference` beside the repository (CI), or
`$WENET_EFF_REFERENCE`. Made by running WeNet's own code (see wenet_vectors/README.md there)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REFERENCE = Path(
    os.environ.get(
        "WENET_EFF_REFERENCE", Path(__file__).resolve().parents[2] / ".." / "shared" / "reference"
    )
)
# WeNet experiment dirs, one per dictionary layout (+ MoE): train.yaml, final.pt, units.txt,
# global_cmvn, io.pt (inputs and WeNet's outputs), expected.json
LAYOUTS = ("sos2", "soslast", "sos2_moe")


def reference(*parts: str) -> Path:
    """A path under the reference directory; the test skips (naming it) when it is absent."""
    path = REFERENCE.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"WeNet reference data not found: {path} (set WENET_EFF_REFERENCE)")
    return path


def u2pp_conformer_layout() -> dict:
    """WeNet's LibriSpeech U2++ Conformer state-dict layout (train_u2++_conformer.yaml, input_dim
    80, vocab 5002): {"state_dict": {key: shape} in WeNet's order, "buffers": [keys],
    "total_parameters": int}."""
    return json.loads(reference("wenet_u2pp_conformer_keys.json").read_text())
