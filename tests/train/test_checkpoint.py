"""Checkpoint files: completeness, ordering, pruning, final.pt and RNG round trips."""

from __future__ import annotations

import random

import numpy as np
import torch

from wenet_eff.train import checkpoint as ckpt


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
    assert torch.equal(ckpt.load_model_state(tmp_path / "0.pt")["w"], torch.full((2,), 1.5))
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
    assert ckpt.latest_resumable(tmp_path) is None


def test_link_final_replaces_previous(tmp_path):
    _write(tmp_path, "0", 1, "epoch", 1.0)
    _write(tmp_path, "1", 2, "epoch", 2.0)
    ckpt.link_final(tmp_path, "0")
    ckpt.link_final(tmp_path, "1")
    assert torch.equal(ckpt.load_model_state(tmp_path / "final.pt")["w"], torch.full((2,), 2.0))


def test_rng_round_trip():
    state = ckpt.rng_state()
    first = (random.random(), np.random.rand(), torch.rand(1))
    ckpt.set_rng_state(state)
    again = (random.random(), np.random.rand(), torch.rand(1))
    assert first[:2] == again[:2] and torch.equal(first[2], again[2])
