"""What a checkpoint records of the training loop, and how a rerun picks the loop up again.

`NAME.state.pt` (see checkpoint.py) holds:

- `engine`: train.train_engine (a DeepSpeed state cannot resume a torch run, nor the reverse);
- `progress`: the run-wide `Progress` counters;
- `data_order`: the settings that decide every rank's batch order (`data_order`);
- `ranks`: per rank, its `EpochState` within the epoch in progress and its RNG states;
- the engine's part (engine.py): `optimizer` and `scheduler` state_dicts (torch_ddp), with
  expert parallelism `scheduler` and `expert_parallel` (every rank's optimizer state), and
  nothing with DeepSpeed (it saves its own under `deepspeed/NAME`).

A rerun continues the epoch in progress at each rank's position, which is exact because the
data is deterministic given these settings and the epoch. When they changed, skipping
`position` batches of a different order would train some batches twice and miss others, so
the epoch restarts from its first batch instead.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from wenet_eff.train import checkpoint as ckpt
from wenet_eff.train.dist import DistContext
from wenet_eff.train.reporting import LossMeter

logger = logging.getLogger("wenet_eff.train")

# `data` keys that leave the training batches as they are: the cv list, loader prefetching,
# and dither (drawn from its own generator, it changes no length and no other random draw)
ORDER_FREE_KEYS = ("cv_data", "prefetch", "dither")


@dataclass
class Progress:
    """Run-wide counters, saved with every checkpoint."""

    epoch: int = 0  # the epoch in progress, or the next one to start
    step: int = 0  # successful optimizer updates
    nonfinite_run: int = 0  # consecutive skipped updates
    nonfinite_total: int = 0
    train_time_s: float = 0.0
    rollbacks: int = 0  # divergence-guard rollbacks so far
    lr_scale: float = 1.0  # the learning rate's factor after them


@dataclass
class EpochState:
    """One rank's position and statistics within the current epoch, saved per rank."""

    position: int = 0  # loader batches consumed (empty ones included)
    skipped: Counter = field(default_factory=Counter)
    meter: LossMeter = field(default_factory=LossMeter)
    batches: int = 0  # micro-batches trained in this epoch (the same on every rank)


def resume_point(exp_dir: Path, ctx: DistContext) -> str | None:
    """The checkpoint a rerun resumes from: the newest with resume state (a warning names
    newer ones without it, which training from there writes again), or None in a new
    experiment; raises `checkpoint.NoResumeState` when no checkpoint has it."""
    name = ckpt.latest_resumable(exp_dir)
    names = [n for n, _ in ckpt.list_checkpoints(exp_dir)]
    newer = names[names.index(name) + 1 :] if name else []
    if newer and ctx.is_main:
        logger.warning(
            "checkpoint(s) %s have no resume state (NAME.state.pt missing): resuming from %s, "
            "the newest that has it; training from there writes them again",
            *(", ".join(newer), name),
        )
    return name


def data_order(cfg: DictConfig, world_size: int) -> dict[str, Any]:
    """The settings that decide which batches each rank's loader yields, in what order.

    Every `data` key but ORDER_FREE_KEYS counts: the list, seed, shuffle/sort buffers, batching
    and workers directly, and the filters, features and augmentation through the lengths they
    give and the random draws they take from the generator the shuffle buffer shares.

    Returns:
        {"data.KEY": value} (nested keys dotted) and "world_size".
    """
    order: dict[str, Any] = {}

    def add(node: dict, prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                add(value, f"{prefix}{key}.")
            else:
                order[f"{prefix}{key}"] = value

    add(OmegaConf.to_container(cfg.data, resolve=True), "data.")
    for key in ORDER_FREE_KEYS:
        del order[f"data.{key}"]
    order["world_size"] = world_size
    return order


def rank_entry(state: EpochState) -> dict[str, Any]:
    """This rank's part of the resume state: its `EpochState` and RNG states."""
    return {
        "position": state.position,
        "skipped": dict(state.skipped),
        "meter": state.meter.sums,
        "batches": state.batches,
        "rng": ckpt.rng_state(),
    }


def resume_state(
    engine: str,
    progress: Progress,
    order: dict[str, Any],
    ranks: list[dict[str, Any]],
    engine_state: dict[str, Any],
) -> dict[str, Any]:
    """Assemble NAME.state.pt.

    Args:
        engine: train.train_engine.
        progress: the run-wide counters.
        order: this run's `data_order`.
        ranks: every rank's `rank_entry`, in rank order.
        engine_state: the engine's part (`Engine.save`).
    """
    return {
        "engine": engine,
        "progress": asdict(progress),
        "data_order": order,
        "ranks": ranks,
        **engine_state,
    }


def checkpoint_info(
    name: str, epoch: int, kind: str, progress: Progress, lr: float, cv: dict, train: dict
) -> dict[str, Any]:
    """The training info of NAME.yaml (plain Python values). `kind` says when it was written
    (`epoch` or `step`); `tag` (the checkpoint's name) and `loss_dict` (its cv losses) are the
    keys WeNet's average_model.py reads, so WeNet's tools average our checkpoints too."""
    return {
        "epoch": epoch,
        "step": progress.step,
        "kind": kind,
        "tag": name,
        "loss_dict": {k: cv.get(k) for k in ("loss", "loss_ctc", "loss_att")},
        "lr": lr,
        "cv_loss": cv.get("loss"),
        "cv_loss_ctc": cv.get("loss_ctc"),
        "cv_loss_att": cv.get("loss_att"),
        "train_loss": train.get("loss"),
        "train_loss_ctc": train.get("loss_ctc"),
        "train_loss_att": train.get("loss_att"),
        "train_time_s": round(progress.train_time_s, 1),
        "nonfinite_steps": progress.nonfinite_total,
        "rollbacks": progress.rollbacks,
        "lr_scale": progress.lr_scale,
    }


def restore(
    state: dict[str, Any],
    exp_dir: Path,
    name: str,
    engine: str,
    order: dict[str, Any],
    ctx: DistContext,
) -> tuple[Progress, EpochState, dict | None]:
    """The loop state of checkpoint `name`'s resume state (optimizer and scheduler aside).

    Args:
        state: what `checkpoint.load_resumable` returned.
        exp_dir, name: where it came from, for messages.
        engine: this run's train.train_engine; another one's state raises ValueError.
        order: this run's `data_order`; when it differs from the saved one, the epoch in
            progress restarts from its first batch (a warning names what changed).
        ctx: this process's rank.

    Returns:
        (progress, this rank's epoch state, the RNG states to restore at the epoch's position,
        or None when the epoch restarts).
    """
    if state["engine"] != engine:
        raise ValueError(
            f"{exp_dir / name}.state.pt was written with train.train_engine={state['engine']}; "
            "resume with that engine or use a new train.exp_dir"
        )
    progress = Progress(**state["progress"])
    saved = state.get("data_order")  # absent in resume states written before it was recorded
    if saved is None:
        changed = ["the checkpoint records no data order"]
    else:
        changed = [
            f"{key}: {saved.get(key, '<unset>')} -> {order.get(key, '<unset>')}"
            for key in sorted(saved.keys() | order.keys())
            if saved.get(key, "<unset>") != order.get(key, "<unset>")
        ]
    epoch_state, rng = EpochState(), None
    if not changed:
        mine = state["ranks"][ctx.rank]
        epoch_state = EpochState(
            mine["position"], Counter(mine["skipped"]), LossMeter(mine["meter"]), mine["batches"]
        )
        rng = mine["rng"]
    if ctx.is_main:
        if changed:
            logger.warning(
                "checkpoint %s was saved with another data order (%s): epoch %d restarts from "
                "its first batch",
                *(name, "; ".join(changed), progress.epoch),
            )
        logger.info(
            "resuming from %s: epoch %d, step %d, %d batches into the epoch",
            *(name, progress.epoch, progress.step, epoch_state.position),
        )
    return progress, epoch_state, rng
