"""The training-throughput benchmark on a tiny model."""

from __future__ import annotations

import json

import pytest
import torch

from tests.train.helpers import TINY_MODEL
from wenet_eff.bench import train_throughput
from wenet_eff.nn.encoder import ConformerEncoder


def test_times_real_bf16_training_steps_on_the_stated_batch(tmp_path, capsys):
    out = tmp_path / "tp.json"
    argv = ["--model", "mini", "--threads", "1", "--batch_size", "2", "--frames", "120",
            "--tokens", "4", "--vocab_size", "20", "--dtype", "bf16", "--warmup", "0",
            "--repeats", "3", "--out", str(out), "--override", *TINY_MODEL]  # fmt: skip
    inputs, linear_dtypes = [], set()

    def record(module, args, output):
        if isinstance(module, ConformerEncoder):
            inputs.append(tuple(args[0].shape))
        elif isinstance(module, torch.nn.Linear):
            linear_dtypes.add(output.dtype)

    hook = torch.nn.modules.module.register_module_forward_hook(record)
    try:
        result = train_throughput.main(argv)
    finally:
        hook.remove()
    assert json.loads(out.read_text()) == result
    # each timed step trains on the whole 2 x 120-frame batch, its matmuls in bfloat16
    assert inputs == [(2, 120, 80)] * 3
    assert linear_dtypes == {torch.bfloat16}
    assert result["frames_per_second"] * result["seconds_per_step"] == pytest.approx(240)
    # the optimizer steps: on the fixed batch the loss falls from step to step
    losses = result["losses"]
    assert losses[0] > losses[1] > losses[2]
    assert "frames/s" in capsys.readouterr().out
