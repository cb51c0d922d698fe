"""Tests marked `gpu` need CUDA: without it they are deselected (not skipped, which CI=true
turns into failures), so the CPU suite collects them and moves on. `make gpu-check` runs them
with `pytest -m gpu` on a GPU machine."""

from __future__ import annotations

import pytest
import torch


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    gpu = [item for item in items if item.get_closest_marker("gpu")]
    if gpu:
        config.hook.pytest_deselected(items=gpu)
        items[:] = [item for item in items if not item.get_closest_marker("gpu")]


@pytest.fixture(autouse=True)
def _exact_cuda_math():
    """fp32 products in fp32 (cuDNN convolutions default to TF32), so CUDA and CPU results can
    be compared with fp32 tolerances."""
    conv, matmul = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = conv, matmul
