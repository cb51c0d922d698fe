"""Finding the C++ runtime built by `make runtime` (runtime/build): the pybind11 module
`wenet_eff_runtime` and its programs (`decoder_main`, `websocket_server_main`)."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD_DIR = Path(os.environ.get("WENET_EFF_RUNTIME_BUILD", REPO / "runtime" / "build"))


def load_runtime():
    """Import `wenet_eff_runtime` from the build directory (torch is imported first, so the
    module binds to the same libtorch)."""
    import torch  # noqa: F401  (loads libtorch for the extension)

    if str(BUILD_DIR) not in sys.path:
        sys.path.insert(0, str(BUILD_DIR))
    try:
        return importlib.import_module("wenet_eff_runtime")
    except ImportError as exc:
        raise ImportError(
            f"the C++ runtime module is not built in {BUILD_DIR}: run `make runtime` "
            "(or set WENET_EFF_RUNTIME_BUILD)"
        ) from exc


def binary(name: str) -> Path:
    """Path of the runtime's program `name` (decoder_main, websocket_server_main, ...;
    FileNotFoundError when not built)."""
    path = BUILD_DIR / name
    if not path.exists():
        raise FileNotFoundError(f"{path}: not built; run `make runtime`")
    return path


def decoder_main() -> Path:
    """Path of the decoder_main binary (FileNotFoundError when not built)."""
    return binary("decoder_main")
