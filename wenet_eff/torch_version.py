"""The torch releases wenet_eff runs on, checked when `wenet_eff.nn` is imported.

2.11 is the GPU image's (torch 2.11 + CUDA 13, with torchaudio 2.11; `make gpu-check`), 2.13
the CPU pin of requirements.txt; the test suite passes on both. The APIs beyond plain modules
that wenet_eff uses (torch.export with Dim.AUTO, AOTInductor's aoti_compile_and_package /
aoti_load_package, torch._int_mm, scaled_dot_product_attention's `scale`, torch.autocast on
CPU and CUDA, FlopCounterMode) have the same signatures in both. Older releases lack some of
them; newer ones are untested.
"""

from __future__ import annotations

import re
import warnings

import torch

SUPPORTED = ((2, 11), (2, 13))  # oldest and newest (major, minor) tested


def release(version: str) -> tuple[int, int]:
    """(major, minor) of a torch version string such as '2.11.0+cu130' or '2.14.0.dev20260101'.

    Raises:
        ValueError: the string does not start with major.minor.
    """
    match = re.match(r"(\d+)\.(\d+)", version)
    if match is None:
        raise ValueError(f"torch version {version!r} does not start with major.minor")
    return int(match.group(1)), int(match.group(2))


def check(version: str = torch.__version__) -> None:
    """Warn (once per process) when `version` is outside SUPPORTED, naming the range."""
    if SUPPORTED[0] <= release(version) <= SUPPORTED[1]:
        return
    (lo_major, lo_minor), (hi_major, hi_minor) = SUPPORTED
    warnings.warn(
        f"torch {version} is outside the releases wenet_eff is tested on "
        f"({lo_major}.{lo_minor} to {hi_major}.{hi_minor}, pyproject.toml): export, int8 "
        "kernels or half-precision training may fail; install a torch in that range",
        RuntimeWarning,
        stacklevel=2,
    )
