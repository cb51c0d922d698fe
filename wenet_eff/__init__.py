"""wenet_eff: WeNet-compatible U2++ Conformer ASR: big-model accuracy at small-model cost.

`import wenet_eff` stays light (the data tools import its submodules): the two entry points
import the config schema and the model, and with them torch, when they are called.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from wenet_eff.model import ASRModel

__all__ = ["load_config", "build_model"]
__version__ = "0.1.0"


def load_config(name_or_path: str | os.PathLike, overrides: list[str] | None = None) -> DictConfig:
    """A packaged config by name or a `train.yaml` (see `wenet_eff.config.load_config`)."""
    from wenet_eff.config import load_config as _load

    return _load(name_or_path, overrides)


def build_model(cfg: DictConfig) -> ASRModel:
    """Build the U2++ `ASRModel` described by `cfg` (see `wenet_eff.model.build_model`)."""
    from wenet_eff.model import build_model as _build

    return _build(cfg)
