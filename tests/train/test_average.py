"""Model averaging: the mean of checkpoints, chosen by epoch or by cv_loss."""

from __future__ import annotations

import pytest
import torch

from wenet_eff.bin import average_model
from wenet_eff.train.average import average_checkpoints, select_checkpoints
from wenet_eff.train.checkpoint import link_final, write_checkpoint
from wenet_eff.weights import load_model_state


@pytest.fixture
def exp(tmp_path):
    """Epochs 0..3 with w = epoch and cv_loss 4, 1, 3, 2; plus a step checkpoint."""
    for epoch, cv in enumerate([4.0, 1.0, 3.0, 2.0]):
        state = {"w": torch.full((3,), float(epoch)), "n": torch.tensor(epoch)}
        info = {"epoch": epoch, "step": 10 * epoch, "tag": "epoch", "cv_loss": cv}
        write_checkpoint(tmp_path, str(epoch), state, info, None)
    step_state = {"w": torch.full((3,), 99.0), "n": torch.tensor(0)}
    write_checkpoint(tmp_path, "step_35", step_state, {"epoch": 3, "step": 35, "tag": "step"}, None)
    return tmp_path


def test_average_is_the_mean(exp):
    avg = average_checkpoints([exp / "0.pt", exp / "3.pt"])
    assert torch.equal(avg["w"], torch.full((3,), 1.5))
    assert avg["w"].dtype == torch.float32
    assert avg["n"].dtype == torch.int64 and int(avg["n"]) == 1  # floor of 1.5


def test_select_last_best_and_range(exp):
    assert [p.name for p in select_checkpoints(exp, 2)] == ["3.pt", "2.pt"]
    assert [p.name for p in select_checkpoints(exp, 2, val_best=True)] == ["1.pt", "3.pt"]
    assert [p.name for p in select_checkpoints(exp, 2, max_epoch=2)] == ["2.pt", "1.pt"]
    assert [p.name for p in select_checkpoints(exp, 1, True, min_epoch=2)] == ["3.pt"]
    with pytest.raises(ValueError, match="only 4 qualify"):
        select_checkpoints(exp, 5)


def test_a_run_stopped_by_max_steps_offers_its_last_step_checkpoint(exp):
    state = {"w": torch.full((3,), 7.0), "n": torch.tensor(0)}
    info = {"epoch": 4, "step": 45, "tag": "step", "cv_loss": 0.5}
    write_checkpoint(exp, "step_45", state, info, None)
    # not the end of the run yet (no final.pt): only epoch checkpoints qualify
    assert [p.name for p in select_checkpoints(exp, 2, val_best=True)] == ["1.pt", "3.pt"]
    link_final(exp, "step_45")
    assert [p.name for p in select_checkpoints(exp, 2, val_best=True)] == ["step_45.pt", "1.pt"]
    assert [p.name for p in select_checkpoints(exp, 1)] == ["step_45.pt"]
    assert "step_35.pt" not in [p.name for p in select_checkpoints(exp, 5)]  # mid-run step


def test_cli_val_best(exp):
    dst = exp / "avg_2.pt"
    average_model.main(
        ["--dst_model", str(dst), "--src_path", str(exp), "--num", "2", "--val_best"]
    )
    assert torch.equal(load_model_state(dst)["w"], torch.full((3,), 2.0))  # epochs 1 and 3
