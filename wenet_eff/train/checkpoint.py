"""Checkpoints in an experiment directory, WeNet-compatible and resumable.

A checkpoint NAME (`0`, `1`, ... after each epoch; `step_1200` within an epoch) is:

- `NAME.pt`        the model's state_dict only, so `load_state_dict(strict=True)` and WeNet
                   tools read it as they are;
- `NAME.state.pt`  what resuming needs besides the weights: optimizer, scheduler, progress
                   counters, the data order and, per rank, the data position and RNG states
                   (see resume.py);
- `deepspeed/NAME/` DeepSpeed's own (partitioned) optimizer state, with train_engine=deepspeed;
- `NAME.yaml`      training info (epoch, step, kind, lr, cv_loss, train_loss, time; WeNet's
                   tag and loss_dict), written LAST: a checkpoint is complete once its yaml
                   exists.

Every file is written to a temporary name, fsynced and renamed into place, so a crash (or a
power loss) leaves either the previous file or the complete new one. Only the newest
checkpoint keeps its resume state (`.state.pt`, `deepspeed/NAME/`), since that is what
resuming uses and optimizer state is twice the model's size; older ones keep `.pt` + `.yaml`
for averaging. Reading a weights file into a model is `wenet_eff.weights` (shared with
compression and the command lines).
"""

from __future__ import annotations

import os
import random
import re
import shutil
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
import yaml

from wenet_eff.weights import UnreadableCheckpoint, load_weights, read_checkpoint

NAME_RE = re.compile(r"^(\d+|step_\d+)$")
DEEPSPEED_DIR = "deepspeed"  # exp_dir/deepspeed/NAME: DeepSpeed's save_dir/tag


def _sync(f: IO) -> None:
    # the data must be on disk before the rename makes the file look complete
    f.flush()
    os.fsync(f.fileno())


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """`torch.save` to a temporary file, fsync it, then rename it to `path`."""
    tmp = f"{path}.tmp"
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        _sync(f)
    os.replace(tmp, path)


def atomic_write_yaml(data: dict, path: str | os.PathLike) -> None:
    """Write `data` as YAML to a temporary file, fsync it, then rename it to `path`."""
    tmp = f"{path}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        yaml.safe_dump(data, f, sort_keys=False)
        _sync(f)
    os.replace(tmp, path)


def write_checkpoint(
    exp_dir: str | os.PathLike,
    name: str,
    model_state: dict[str, torch.Tensor],
    info: dict,
    train_state: dict | None,
) -> None:
    """Write NAME.pt, NAME.state.pt (when `train_state` is given) and, last, NAME.yaml.

    Args:
        exp_dir: the experiment directory.
        name: `N` (epoch) or `step_N`.
        model_state: the plain model state_dict.
        info: the yaml's training info (plain Python values).
        train_state: the resume state, or None when it is written elsewhere (not at all).
    """
    exp = Path(exp_dir)
    exp.mkdir(parents=True, exist_ok=True)
    atomic_save(model_state, exp / f"{name}.pt")
    if train_state is not None:
        atomic_save(train_state, exp / f"{name}.state.pt")
    atomic_write_yaml(
        {**info, "save_time": time.strftime("%Y-%m-%d %H:%M:%S")}, exp / f"{name}.yaml"
    )


def read_info(yaml_path: str | os.PathLike) -> dict:
    """The training info of a checkpoint's yaml."""
    with open(yaml_path, encoding="utf-8") as f:
        info = yaml.safe_load(f)
    if not isinstance(info, dict):
        raise ValueError(f"{yaml_path}: not a checkpoint info file (expected a mapping)")
    return info


def _order(name: str, info: dict) -> tuple[int, int]:
    # an epoch checkpoint and a step checkpoint at the same step: the epoch one came later
    return int(info.get("step", 0)), int(not name.startswith("step_"))


def checkpoint_kind(name: str, info: dict) -> str:
    """`epoch` or `step`: when checkpoint `name` was written (older infos kept it in `tag`)."""
    kind = info.get("kind") or info.get("tag")
    if kind in ("epoch", "step"):
        return kind
    return "step" if name.startswith("step_") else "epoch"


def list_checkpoints(
    exp_dir: str | os.PathLike, names: re.Pattern[str] = NAME_RE
) -> list[tuple[str, dict]]:
    """Complete checkpoints (yaml and pt present) as (name, info), oldest first; `names`: the
    checkpoint names to list (default ours; averaging also reads WeNet's `epoch_N`)."""
    exp = Path(exp_dir)
    if not exp.is_dir():
        return []
    found = []
    for yml in exp.glob("*.yaml"):
        if names.match(yml.stem) and (exp / f"{yml.stem}.pt").is_file():
            found.append((yml.stem, read_info(yml)))
    return sorted(found, key=lambda item: _order(*item))


class NoResumeState(RuntimeError):
    """The experiment directory has checkpoints, but none with its resume state."""


def latest_resumable(exp_dir: str | os.PathLike) -> str | None:
    """Name of the newest complete checkpoint that has resume state; None when there is no
    complete checkpoint (a new run).

    Raises:
        NoResumeState: there are checkpoints but none has resume state: this run cannot be
            continued, and starting it over would overwrite them (the message says how to go
            on instead).
    """
    exp = Path(exp_dir)
    names = [name for name, _ in list_checkpoints(exp)]
    resumable = [name for name in names if has_resume_state(exp, name)]
    if names and not resumable:
        newest = names[-1]
        raise NoResumeState(
            f"{exp}: no checkpoint has its resume state ({newest}.state.pt is missing; older "
            "checkpoints keep only their weights), so this run cannot be continued, and "
            f"starting over here would overwrite checkpoints {', '.join(names)}. To go on from "
            f"the weights, train into a new train.exp_dir with train.init_checkpoint="
            f"{exp / newest}.pt; to start over, delete {exp} or train into a new train.exp_dir."
        )
    return resumable[-1] if resumable else None


def has_resume_state(exp_dir: str | os.PathLike, name: str) -> bool:
    """Whether checkpoint `name` can be resumed from (its NAME.state.pt exists)."""
    return (Path(exp_dir) / f"{name}.state.pt").is_file()


def set_aside_after(exp_dir: str | os.PathLike, name: str) -> list[str]:
    """Rename the checkpoints newer than `name` to `NEWER.diverged.{pt,yaml,state.pt}` (and
    DeepSpeed's `deepspeed/NEWER` to `deepspeed/NEWER.diverged`): kept for inspection, never
    listed, resumed from or averaged. Returns the names set aside."""
    exp = Path(exp_dir)
    names = [n for n, _ in list_checkpoints(exp)]
    newer = names[names.index(name) + 1 :]
    for other in newer:
        for suffix in (".yaml", ".pt", ".state.pt"):  # the yaml first: it marks completeness
            src = exp / f"{other}{suffix}"
            if src.exists():
                os.replace(src, exp / f"{other}.diverged{suffix}")
        ds = exp / DEEPSPEED_DIR / other
        if ds.exists():
            os.replace(ds, exp / DEEPSPEED_DIR / f"{other}.diverged")
    return newer


def load_train_state(path: str | os.PathLike) -> dict:
    """The resume state written by `write_checkpoint` (our own file: RNG states are pickled);
    UnreadableCheckpoint when damaged."""
    return read_checkpoint(path, weights_only=False)


def other_ranks_experts(model: torch.nn.Module) -> Callable[[str], bool]:
    """For a model with sharded experts (expert parallelism): true for the expert keys of a
    whole checkpoint that other ranks hold."""
    from wenet_eff.nn.moe import is_expert_param

    own = set(model.state_dict())
    return lambda key: is_expert_param(key) and key not in own


def load_resumable(
    model: torch.nn.Module,
    exp_dir: str | os.PathLike,
    name: str,
    skip: Callable[[str], bool] | None = None,
) -> dict:
    """Load checkpoint NAME's weights into `model` (keys with `skip(key)` left out) and return
    its resume state.

    A damaged NAME.pt or NAME.state.pt raises UnreadableCheckpoint naming the file and saying
    how to fall back to the previous checkpoint (delete NAME.yaml).
    """
    exp = Path(exp_dir)
    try:
        load_weights(
            model,
            exp / f"{name}.pt",
            "checkpoint to resume (is train.exp_dir another model's?)",
            skip=skip,
        )
        return load_train_state(exp / f"{name}.state.pt")
    except UnreadableCheckpoint as exc:
        older = [n for n, _ in list_checkpoints(exp) if n != name and has_resume_state(exp, n)]
        then = (
            f"a rerun then resumes from checkpoint {older[-1]}"
            if older
            else "no older checkpoint has resume state, so a rerun refuses to start: train "
            "into a new train.exp_dir with train.init_checkpoint set to an older N.pt"
        )
        raise UnreadableCheckpoint(
            f"{exc}. Delete {exp / name}.yaml to mark checkpoint {name} incomplete; {then}."
        ) from exc


def prune(
    exp_dir: str | os.PathLike, newest: str, keep_steps: int, protect: Iterable[str] = ()
) -> None:
    """Drop the resume state of every checkpoint but `newest` and those in `protect` (the
    divergence guard's rollback target), and all but the newest `keep_steps` step checkpoints
    when `keep_steps` > 0, never a protected one (yaml first, so a half-deleted checkpoint is
    never taken for a complete one)."""
    exp = Path(exp_dir)
    names = [name for name, _ in list_checkpoints(exp)]
    kept = {newest, *protect}
    for name in names:
        if name in kept:
            continue
        (exp / f"{name}.state.pt").unlink(missing_ok=True)
        shutil.rmtree(exp / DEEPSPEED_DIR / name, ignore_errors=True)
    if keep_steps > 0:
        steps = [name for name in names if name.startswith("step_")]
        for name in steps[:-keep_steps]:
            if name in kept:
                continue
            for suffix in (".yaml", ".pt", ".state.pt"):
                (exp / f"{name}{suffix}").unlink(missing_ok=True)
            shutil.rmtree(exp / DEEPSPEED_DIR / name, ignore_errors=True)


def link_final(exp_dir: str | os.PathLike, name: str) -> None:
    """Point `final.pt` at `NAME.pt` (a relative symlink; a copy where links are unsupported)."""
    exp = Path(exp_dir)
    tmp = exp / "final.pt.tmp"
    tmp.unlink(missing_ok=True)
    try:
        os.symlink(f"{name}.pt", tmp)
    except OSError:
        shutil.copyfile(exp / f"{name}.pt", tmp)
    os.replace(tmp, exp / "final.pt")


def rng_state() -> dict:
    """This process's Python, NumPy and torch (CPU and CUDA) random states."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what `rng_state` captured."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
