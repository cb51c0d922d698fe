"""The recipes' shared launcher (tools/recipe_lib.sh) picks the training command from the
options: python, torchrun on one node (CPU processes or GPUs), torchrun over several nodes."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _launcher(**options: str) -> str:
    settings = {"nproc": "1", "num_gpus": "0", "train_engine": "torch_ddp", **options}
    script = "".join(f"{k}={v}\n" for k, v in settings.items())
    script += f". {REPO / 'tools' / 'recipe_lib.sh'}\nlauncher\n"
    proc = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True)
    return proc.stdout.strip()


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, "python"),
        ({"nproc": "2"},
         "env OMP_NUM_THREADS=1 torchrun --standalone --nnodes=1 --nproc_per_node=2"),
        ({"train_engine": "deepspeed"},
         "env OMP_NUM_THREADS=1 torchrun --standalone --nnodes=1 --nproc_per_node=1"),
        ({"num_gpus": "8"}, "torchrun --standalone --nnodes=1 --nproc_per_node=8"),
        ({"num_gpus": "8", "num_nodes": "2", "node_rank": "1", "master_addr": "node0",
          "master_port": "29400"},
         "torchrun --nnodes=2 --node_rank=1 --nproc_per_node=8 --rdzv_id=wenet_eff "
         "--rdzv_backend=c10d --rdzv_endpoint=node0:29400"),
    ],
)  # fmt: skip
def test_launcher(options, expected):
    assert _launcher(**options) == expected
