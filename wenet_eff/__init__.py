"""wenet_eff: WeNet-compatible U2++ Conformer ASR: big-model accuracy at small-model cost."""

from wenet_eff.config import load_config

__all__ = ["load_config", "build_model"]
__version__ = "0.1.0"


def build_model(cfg):
    """Build the U2++ `ASRModel` described by `cfg` (see `wenet_eff.model.build_model`)."""
    from wenet_eff.model import build_model as _build

    return _build(cfg)
