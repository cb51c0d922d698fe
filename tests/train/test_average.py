"""Model averaging: the mean of checkpoints, chosen as WeNet's average_model.py chooses them
(latest or best cv loss; hybrid / epoch / step checkpoints; epoch and step ranges), in our
experiment directories and WeNet's."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from wenet_eff.bin import average_model
from wenet_eff.train.average import average_checkpoints, select_checkpoints
from wenet_eff.train.checkpoint import atomic_save, atomic_write_yaml, write_checkpoint
from wenet_eff.weights import load_model_state

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def exp(tmp_path):
    """Ours: epochs 0..3 (steps 0, 10, 20, 30; w = epoch) with cv_loss 4, 1, 3, 2, then a step
    checkpoint step_35 (epoch 3, w 99) with cv_loss 0.5, as a run stopped by max_steps ends."""
    for epoch, cv in enumerate([4.0, 1.0, 3.0, 2.0]):
        state = {"w": torch.full((3,), float(epoch)), "n": torch.tensor(epoch)}
        info = {"epoch": epoch, "step": 10 * epoch, "tag": "epoch", "cv_loss": cv}
        write_checkpoint(tmp_path, str(epoch), state, info, None)
    info = {"epoch": 3, "step": 35, "tag": "step", "cv_loss": 0.5}
    write_checkpoint(tmp_path, "step_35", {"w": torch.full((3,), 99.0), "n": torch.tensor(0)},
                     info, None)  # fmt: skip
    return tmp_path


def _names(*args, **kwargs) -> list[str]:
    return [p.stem for p in select_checkpoints(*args, **kwargs)]


def test_average_is_the_mean(exp):
    avg = average_checkpoints([exp / "0.pt", exp / "3.pt"])
    assert torch.equal(avg["w"], torch.full((3,), 1.5))
    assert avg["w"].dtype == torch.float32
    assert avg["n"].dtype == torch.int64 and int(avg["n"]) == 1  # floor of 1.5


def test_latest_and_best_by_mode(exp):
    assert _names(exp, 2) == ["step_35", "3"]  # hybrid: epoch and step checkpoints
    assert _names(exp, 2, mode="epoch") == ["3", "2"]
    assert _names(exp, 1, mode="step") == ["step_35"]
    assert _names(exp, 2, val_best=True) == ["step_35", "1"]
    assert _names(exp, 2, val_best=True, mode="epoch") == ["1", "3"]
    with pytest.raises(ValueError, match="only 5 qualify"):
        select_checkpoints(exp, 6)
    with pytest.raises(FileNotFoundError, match="no step checkpoints"):
        select_checkpoints(exp, 1, mode="step", max_step=30)


def test_epoch_and_step_ranges(exp):
    assert _names(exp, 2, val_best=True, max_epoch=2) == ["1", "2"]
    assert _names(exp, 2, val_best=True, min_step=15) == ["step_35", "3"]
    assert _names(exp, 2, val_best=True, max_step=25) == ["1", "2"]
    assert _names(exp, 1, True, min_epoch=2, mode="epoch") == ["3"]


def test_a_wenet_experiment_directory(tmp_path):
    """WeNet's names (epoch_N, step_S; init and train.yaml are not checkpoints) and its cv
    loss (loss_dict.loss)."""
    for name, epoch, step, loss in [("epoch_0", 0, 100, 3.0), ("step_150", 1, 150, 1.0),
                                    ("epoch_1", 1, 200, 2.0), ("init", 0, 0, 0.0)]:  # fmt: skip
        atomic_save({"w": torch.full((2,), float(step))}, tmp_path / f"{name}.pt")
        info = {"epoch": epoch, "step": step, "tag": name, "loss_dict": {"loss": loss, "acc": 0.5}}
        atomic_write_yaml(info, tmp_path / f"{name}.yaml")
    atomic_write_yaml({"encoder": "conformer"}, tmp_path / "train.yaml")
    assert _names(tmp_path, 2, val_best=True) == ["step_150", "epoch_1"]
    assert _names(tmp_path, 2, val_best=True, mode="epoch") == ["epoch_1", "epoch_0"]
    assert _names(tmp_path, 3) == ["epoch_1", "step_150", "epoch_0"]


def test_cli_as_wenet_recipes_call_it(exp):
    """aishell/librispeech: --dst_model --src_path --num --val_best; wenetspeech adds --mode
    and --max_step."""
    dst = exp / "avg_2.pt"
    average_model.main(["--dst_model", str(dst), "--src_path", str(exp), "--num", "2",
                        "--val_best"])  # fmt: skip
    assert torch.equal(load_model_state(dst)["w"], torch.full((3,), 50.0))  # step_35 and 1
    dst = exp / "avg2_modeepoch_max25.pt"
    proc = subprocess.run(
        [sys.executable, "-m", "wenet_eff.bin.average_model", "--dst_model", str(dst),
         "--src_path", str(exp), "--num", "2", "--mode", "epoch", "--max_step", "25",
         "--val_best"],
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert torch.equal(load_model_state(dst)["w"], torch.full((3,), 1.5))  # epochs 1 and 2
