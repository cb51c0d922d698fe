"""Resume state: the data order signature and how a changed one restarts the epoch."""

from __future__ import annotations

import logging

from wenet_eff.config import load_config
from wenet_eff.train.dist import DistContext
from wenet_eff.train.resume import EpochState, Progress, data_order, rank_entry, restore

ORDER_KEYS = [
    "data.train_data", "data.num_workers", "data.batch_size", "data.batch_type",
    "data.max_frames_in_batch", "data.seed", "data.shuffle", "data.shuffle_size", "data.sort",
    "data.sort_size", "data.filter.max_length", "world_size",
]  # fmt: skip


def test_data_order_holds_what_decides_the_batches():
    order = data_order(load_config("mini", ["data.train_data=a.list"]), 2)
    assert set(ORDER_KEYS) <= order.keys()
    assert order["data.train_data"] == "a.list" and order["world_size"] == 2
    assert not {"data.cv_data", "data.prefetch", "data.dither"} & order.keys()
    assert order == data_order(load_config("mini", ["data.train_data=a.list", "data.dither=0"]), 2)


def _state(order: dict | None) -> dict:
    epoch = EpochState(position=3, batches=3)
    epoch.skipped["too_long"] = 1
    state = {
        "engine": "torch_ddp",
        "progress": {"epoch": 1, "step": 7},
        "ranks": [rank_entry(epoch)],
    }
    if order is not None:
        state["data_order"] = order
    return state


def test_restore_continues_only_under_the_same_data_order(tmp_path, caplog):
    order = data_order(load_config("mini"), 1)

    def restored(saved: dict | None) -> tuple[Progress, EpochState, dict | None]:
        return restore(_state(saved), tmp_path, "step_7", "torch_ddp", order, DistContext())

    progress, epoch, rng = restored(order)
    assert progress == Progress(epoch=1, step=7)
    assert (epoch.position, epoch.batches, epoch.skipped) == (3, 3, {"too_long": 1})
    assert rng is not None and {"python", "numpy", "torch"} <= rng.keys()
    changes = {
        "world_size: 2 -> 1": {**order, "world_size": 2},
        "data.batch_size: 5 -> 16": {**order, "data.batch_size": 5},
        "the checkpoint records no data order": None,  # written before it was recorded
    }
    for change, saved in changes.items():
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="wenet_eff.train"):
            _, epoch, rng = restored(saved)
        assert (epoch.position, epoch.batches, epoch.skipped, rng) == (0, 0, {}, None)
        assert change in caplog.text and "epoch 1 restarts from its first batch" in caplog.text
