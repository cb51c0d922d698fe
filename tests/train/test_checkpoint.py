"""Checkpoint files: completeness, durability, damaged files, ordering, pruning, final.pt and
RNG round trips."""

from __future__ import annotations

import logging
import os
import random

import numpy as np
import pytest
import torch

from wenet_eff.train import checkpoint as ckpt
from wenet_eff.train.dist import DistContext
from wenet_eff.train.resume import resume_point
from wenet_eff.weights import load_model_state


def _write(exp, name: str, step: int, tag: str, value: float = 0.0) -> None:
    ckpt.write_checkpoint(
        exp,
        name,
        {"w": torch.full((2,), value)},
        {"epoch": 0, "step": step, "tag": tag},
        {"s": step},
    )


def test_write_read_and_complete_only(tmp_path):
    _write(tmp_path, "0", 4, "epoch", 1.5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0.pt", "0.state.pt", "0.yaml"]
    assert torch.equal(load_model_state(tmp_path / "0.pt")["w"], torch.full((2,), 1.5))
    info = ckpt.read_info(tmp_path / "0.yaml")
    assert info["step"] == 4 and info["tag"] == "epoch" and "save_time" in info
    assert ckpt.load_train_state(tmp_path / "0.state.pt") == {"s": 4}
    # a crash before the yaml: the checkpoint does not exist yet
    ckpt.atomic_save({"w": torch.zeros(2)}, tmp_path / "step_9.pt")
    (tmp_path / "step_9.state.pt").write_bytes(b"")
    assert [n for n, _ in ckpt.list_checkpoints(tmp_path)] == ["0"]
    assert ckpt.latest_resumable(tmp_path) == "0"
    assert not list(tmp_path.glob("*.tmp"))


def test_order_latest_and_prune(tmp_path):
    _write(tmp_path, "step_2", 2, "step")
    _write(tmp_path, "0", 4, "epoch")
    _write(tmp_path, "step_4", 4, "step")  # same step as epoch 0: the epoch one is newer
    _write(tmp_path, "step_6", 6, "step")
    _write(tmp_path, "1", 8, "epoch")
    (tmp_path / "avg_2.pt").write_bytes(b"")  # not a checkpoint
    names = [n for n, _ in ckpt.list_checkpoints(tmp_path)]
    assert names == ["step_2", "step_4", "0", "step_6", "1"]
    assert ckpt.latest_resumable(tmp_path) == "1"
    ckpt.prune(tmp_path, "1", keep_steps=1)
    left = sorted(p.name for p in tmp_path.iterdir())
    assert left == ["0.pt", "0.yaml", "1.pt", "1.state.pt", "1.yaml", "avg_2.pt",
                    "step_6.pt", "step_6.yaml"]  # fmt: skip
    (tmp_path / "1.state.pt").unlink()
    with pytest.raises(ckpt.NoResumeState, match=r"train.init_checkpoint=.*/1\.pt"):
        ckpt.latest_resumable(tmp_path)


def test_resuming_falls_back_past_checkpoints_without_resume_state(tmp_path, caplog):
    _write(tmp_path, "0", 4, "epoch")
    _write(tmp_path, "step_6", 6, "step")
    _write(tmp_path, "1", 8, "epoch")
    for name in ("step_6", "1"):
        (tmp_path / f"{name}.state.pt").unlink()
    with caplog.at_level(logging.WARNING, logger="wenet_eff.train"):
        assert resume_point(tmp_path, DistContext()) == "0"
    assert (
        "checkpoint(s) step_6, 1 have no resume state (NAME.state.pt missing): resuming from 0, "
        "the newest that has it; training from there writes them again"
    ) in caplog.text


def test_link_final_replaces_previous(tmp_path):
    _write(tmp_path, "0", 1, "epoch", 1.0)
    _write(tmp_path, "1", 2, "epoch", 2.0)
    ckpt.link_final(tmp_path, "0")
    ckpt.link_final(tmp_path, "1")
    assert torch.equal(load_model_state(tmp_path / "final.pt")["w"], torch.full((2,), 2.0))


def test_rng_round_trip():
    state = ckpt.rng_state()
    first = (random.random(), np.random.rand(), torch.rand(1))
    ckpt.set_rng_state(state)
    again = (random.random(), np.random.rand(), torch.rand(1))
    assert first[:2] == again[:2] and torch.equal(first[2], again[2])


def test_files_are_on_disk_before_they_are_renamed(tmp_path, monkeypatch):
    events = []
    fsync, replace = os.fsync, os.replace

    def record_fsync(fd: int) -> None:
        events.append(("fsync", os.fstat(fd).st_size))
        fsync(fd)

    def record_replace(src, dst) -> None:
        events.append(("replace", os.path.basename(dst)))
        replace(src, dst)

    monkeypatch.setattr(os, "fsync", record_fsync)
    monkeypatch.setattr(os, "replace", record_replace)
    _write(tmp_path, "0", 4, "epoch", 1.5)
    sizes = {name: (tmp_path / name).stat().st_size for name in ("0.pt", "0.state.pt", "0.yaml")}
    assert events == [
        ("fsync", sizes["0.pt"]), ("replace", "0.pt"),
        ("fsync", sizes["0.state.pt"]), ("replace", "0.state.pt"),
        ("fsync", sizes["0.yaml"]), ("replace", "0.yaml"),
    ]  # fmt: skip


class Weights(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(2))


def _truncate(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_damaged_resume_files_name_the_way_back(tmp_path):
    _write(tmp_path, "0", 4, "epoch", 1.0)
    _write(tmp_path, "step_6", 6, "step", 2.0)
    model = Weights()
    assert ckpt.load_resumable(model, tmp_path, "step_6") == {"s": 6}
    assert torch.equal(model.w.detach(), torch.full((2,), 2.0))
    _truncate(tmp_path / "step_6.state.pt")
    with pytest.raises(ckpt.UnreadableCheckpoint) as info:
        ckpt.load_resumable(model, tmp_path, "step_6")
    message = str(info.value)
    assert f"cannot read {tmp_path / 'step_6.state.pt'}" in message
    assert f"Delete {tmp_path / 'step_6.yaml'}" in message
    assert "a rerun then resumes from checkpoint 0" in message
    (tmp_path / "step_6.yaml").unlink()  # what the message says to do
    assert ckpt.latest_resumable(tmp_path) == "0"
    assert ckpt.load_resumable(model, tmp_path, "0") == {"s": 4}
    # a damaged .pt, and no older resume state left to fall back to
    (tmp_path / "0.pt").write_bytes(b"")
    with pytest.raises(ckpt.UnreadableCheckpoint, match=r"cannot read .*0\.pt.*refuses to start"):
        ckpt.load_resumable(model, tmp_path, "0")
