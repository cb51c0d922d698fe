"""The training-throughput benchmark on a tiny model."""

from __future__ import annotations

import json

import pytest
import torch

from tests.train.helpers import TINY_MODEL
from wenet_eff.bench import train_throughput
from wenet_eff.nn.encoder import ConformerEncoder


def run_recording(argv: list[str]) -> tuple[dict, list[tuple], set[torch.dtype]]:
    """The benchmark's result, the shapes its encoder saw and the dtypes its Linears gave."""
    inputs, linear_dtypes = [], set()

    def record(module, args, output):
        if isinstance(module, ConformerEncoder):
            inputs.append(tuple(args[0].shape))
        elif isinstance(module, torch.nn.Linear):
            linear_dtypes.add(output.dtype)

    hook = torch.nn.modules.module.register_module_forward_hook(record)
    try:
        return train_throughput.main(argv), inputs, linear_dtypes
    finally:
        hook.remove()


def test_times_real_bf16_training_steps_on_the_stated_batch(tmp_path, capsys):
    out = tmp_path / "tp.json"
    argv = ["--model", "mini", "--threads", "1", "--batch_size", "2", "--frames", "120",
            "--tokens", "4", "--vocab_size", "20", "--dtype", "bf16", "--warmup", "0",
            "--repeats", "3", "--out", str(out), "--override", *TINY_MODEL]  # fmt: skip
    result, inputs, linear_dtypes = run_recording(argv)
    assert json.loads(out.read_text()) == result
    # each timed step trains on the whole 2 x 120-frame batch, its matmuls in bfloat16
    assert inputs == [(2, 120, 80)] * 3
    assert linear_dtypes == {torch.bfloat16}
    assert result["frames_per_second"] * result["seconds_per_step"] == pytest.approx(240)
    # the phases are the step: forward, backward, optimizer
    phases = result["phase_ms"]
    assert set(phases) == {"forward", "backward", "optimizer"} and min(phases.values()) > 0
    assert sum(phases.values()) == pytest.approx(1e3 * result["seconds_per_step"])
    assert result["peak_rss_mb"] > 50  # torch and the model: tens of MiB at least
    # the optimizer steps: on the fixed batch the loss falls from step to step
    losses = result["losses"]
    assert losses[0] > losses[1] > losses[2]
    table = capsys.readouterr().out
    assert "frames/s" in table and "backward" in table and "bf16 (bf16: set in the config)" in table


def test_dtype_auto_trains_a_narrow_model_in_fp32(tmp_path):
    # the tiny model is far narrower than bf16 needs to win, on any CPU
    out = str(tmp_path / "tp.json")
    argv = ["--model", "mini", "--threads", "1", "--batch_size", "1", "--frames", "60",
            "--tokens", "2", "--vocab_size", "20", "--dtype", "auto", "--warmup", "0",
            "--repeats", "1", "--out", out, "--override", *TINY_MODEL]  # fmt: skip
    result, _, linear_dtypes = run_recording(argv)
    assert result["dtype"] == "fp32" and result["dtype_setting"] == "auto"
    assert linear_dtypes == {torch.float32}


def test_wenet_dir_must_hold_wenets_model_code(tmp_path):
    # a folder without WeNet's package is named, with what to give instead, before any timing
    argv = ["--model", "mini", "--threads", "1", "--batch_size", "1", "--frames", "60",
            "--vocab_size", "20", "--wenet_dir", str(tmp_path), "--out",
            str(tmp_path / "tp.json"), "--override", *TINY_MODEL]  # fmt: skip
    with pytest.raises(FileNotFoundError, match=f"--wenet_dir {tmp_path}: no wenet/models"):
        train_throughput.main(argv)
    assert not (tmp_path / "tp.json").exists()
    with pytest.raises(SystemExit):  # both models run eagerly in the comparison
        train_throughput.main([*argv, "--compile"])
