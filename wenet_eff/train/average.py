"""Model averaging over epoch checkpoints: the last N, or the N best by cv_loss (WeNet's rule)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

from wenet_eff.train.checkpoint import list_checkpoints
from wenet_eff.weights import load_model_state


def select_checkpoints(
    src_path: str | os.PathLike,
    num: int,
    val_best: bool = False,
    min_epoch: int = 0,
    max_epoch: int = sys.maxsize,
) -> list[Path]:
    """Epoch checkpoints (`N.pt` with a complete `N.yaml`) to average, plus the step checkpoint
    a `train.max_steps` run ended on.

    Args:
        src_path: the experiment directory.
        num: how many to take.
        val_best: take the `num` with the lowest `cv_loss`; otherwise the `num` latest epochs.
        min_epoch, max_epoch: only epochs in [min_epoch, max_epoch] are candidates.

    Returns:
        Paths of the chosen `.pt` files, best (or latest) first.
    """
    if num < 1:
        raise ValueError(f"--num must be >= 1, got {num}")
    exp = Path(src_path)
    checkpoints = list_checkpoints(exp)
    # a run stopped by train.max_steps ends on a step checkpoint: the most trained model, and it
    # has a cv_loss, so it is a candidate too (mid-epoch save_interval checkpoints are not)
    last = checkpoints[-1][0] if checkpoints else ""
    ended_on_step = last.startswith("step_") and (exp / "final.pt").exists()
    epochs = [
        (int(info["epoch"]), info, exp / f"{name}.pt")
        for name, info in checkpoints
        if (name.isdigit() or (ended_on_step and name == last))
        and min_epoch <= int(info["epoch"]) <= max_epoch
    ]
    if not epochs:
        raise FileNotFoundError(
            f"{exp}: no epoch checkpoints (N.pt + N.yaml) with epoch in [{min_epoch}, {max_epoch}]"
        )
    if val_best:
        missing = [path.stem for _, info, path in epochs if info.get("cv_loss") is None]
        if missing:
            raise ValueError(
                f"--val_best: checkpoint(s) {', '.join(missing)} in {exp} have no cv_loss "
                "(cv_loss: null in their yaml: their validation had no cv utterance with a "
                "finite loss, see the training log). Average the latest instead (no "
                "--val_best), or leave them out with --min_epoch/--max_epoch."
            )
        epochs.sort(key=lambda item: float(item[1]["cv_loss"]))
    else:
        epochs.sort(key=lambda item: item[0], reverse=True)
    if len(epochs) < num:
        raise ValueError(f"{exp}: asked to average {num} checkpoints, only {len(epochs)} qualify")
    return [path for _, _, path in epochs[:num]]


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
