"""Model averaging: the N latest checkpoints, or the N best by cv loss, chosen as WeNet's
average_model.py chooses them.

Candidates are the complete checkpoints of an experiment directory (`NAME.pt` + `NAME.yaml`):
ours (`N` after epoch N, `step_S` within an epoch) and WeNet's (`epoch_N`, `step_S`; older
releases `N`). `mode` picks the kinds (WeNet's `--mode`): `hybrid` both, `epoch` the epoch
checkpoints, `step` the step checkpoints; only those with epoch in [min_epoch, max_epoch] and
step in [min_step, max_step] qualify. The cv loss is the yaml's `cv_loss` (ours, WeNet's older
releases) or `loss_dict.loss` (WeNet's current).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import torch

from wenet_eff.train.checkpoint import list_checkpoints
from wenet_eff.weights import load_model_state

MODES = ("hybrid", "epoch", "step")
CHECKPOINT_NAMES = re.compile(r"^(\d+|epoch_\d+|step_\d+)$")  # ours and WeNet's


def cv_loss(info: dict) -> float | None:
    """The cv loss a checkpoint's yaml records (ours or WeNet's), None when it has none."""
    if "cv_loss" in info:
        return info["cv_loss"]
    return (info.get("loss_dict") or {}).get("loss")


def select_checkpoints(
    src_path: str | os.PathLike,
    num: int,
    val_best: bool = False,
    min_epoch: int = 0,
    max_epoch: int = sys.maxsize,
    min_step: int = 0,
    max_step: int = sys.maxsize,
    mode: str = "hybrid",
) -> list[Path]:
    """The checkpoints to average (see the module docstring for the candidates).

    Args:
        src_path: the experiment directory.
        num: how many to take.
        val_best: take the `num` with the lowest cv loss; otherwise the `num` latest.
        min_epoch, max_epoch, min_step, max_step: the epochs and steps that qualify.
        mode: `hybrid`, `epoch` or `step`: the kinds of checkpoint that qualify.

    Returns:
        Paths of the chosen `.pt` files, best (or latest) first.
    """
    if num < 1:
        raise ValueError(f"--num must be >= 1, got {num}")
    if mode not in MODES:
        raise ValueError(f"--mode {mode}: choose from {', '.join(MODES)}")
    exp = Path(src_path)
    candidates = [
        (info, exp / f"{name}.pt")
        for name, info in list_checkpoints(exp, CHECKPOINT_NAMES)
        if mode == "hybrid" or name.startswith("step_") == (mode == "step")
        if min_epoch <= int(info["epoch"]) <= max_epoch
        and min_step <= int(info.get("step", 0)) <= max_step
    ]
    if not candidates:
        raise FileNotFoundError(
            f"{exp}: no {'' if mode == 'hybrid' else mode + ' '}checkpoints (NAME.pt + "
            f"NAME.yaml) with epoch in [{min_epoch}, {max_epoch}] and step in [{min_step}, "
            f"{max_step}]"
        )
    if val_best:
        missing = [path.stem for info, path in candidates if cv_loss(info) is None]
        if missing:
            raise ValueError(
                f"--val_best: checkpoint(s) {', '.join(missing)} in {exp} have no cv_loss "
                "(cv_loss: null in their yaml: their validation had no cv utterance with a "
                "finite loss, see the training log). Average the latest instead (no "
                "--val_best), or leave them out with --min_epoch/--max_epoch."
            )
        candidates.sort(key=lambda item: float(cv_loss(item[0])))
    else:
        candidates.reverse()  # list_checkpoints: oldest first
    if len(candidates) < num:
        raise ValueError(
            f"{exp}: asked to average {num} checkpoints, only {len(candidates)} qualify"
        )
    return [path for _, path in candidates[:num]]


def average_checkpoints(paths: list[str | os.PathLike]) -> dict[str, torch.Tensor]:
    """Element-wise mean of the state_dicts in `paths` (accumulated in float64).

    Floating tensors are averaged and cast back to their dtype; integer tensors (e.g. batch
    norm's `num_batches_tracked`) get the floor of the mean, so a boolean pruning mask keeps a
    weight only where every checkpoint keeps it.
    """
    if not paths:
        raise ValueError("average_checkpoints: no checkpoints given")
    total: dict[str, torch.Tensor] = {}
    dtypes: dict[str, torch.dtype] = {}
    for path in paths:
        state = load_model_state(path)
        if total and state.keys() != total.keys():
            diff = sorted(set(state) ^ set(total))
            raise ValueError(f"{path}: parameter names differ from {paths[0]}: {diff[:5]}")
        for key, value in state.items():
            dtypes.setdefault(key, value.dtype)
            acc = value.to(torch.float64)
            total[key] = total[key] + acc if key in total else acc
    avg = {}
    for key, value in total.items():
        mean = value / len(paths)
        if not dtypes[key].is_floating_point:
            mean = mean.floor()
        avg[key] = mean.to(dtypes[key])
    return avg
