"""Global CMVN statistics in WeNet's JSON format: accumulate, merge, write, load."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass

import numpy as np
import torch

VAR_FLOOR = 1e-20


@dataclass
class CmvnConfig:
    file: str = ""  # WeNet JSON global_cmvn; empty: no normalisation


class CmvnStats:
    """Running per-dimension sums of features and their squares (float64).

    The JSON form is WeNet's `global_cmvn`: `{"mean_stat": [D], "var_stat": [D], "frame_num": n}`
    holding sum(x) and sum(x**2) over all frames.
    """

    def __init__(self, dim: int | None = None) -> None:
        self.mean_stat = None if dim is None else np.zeros(dim, dtype=np.float64)
        self.var_stat = None if dim is None else np.zeros(dim, dtype=np.float64)
        self.frame_num = 0

    @property
    def dim(self) -> int | None:
        return None if self.mean_stat is None else self.mean_stat.shape[0]

    def add(self, feats: torch.Tensor | np.ndarray) -> None:
        """Accumulate feats (T, D)."""
        x = np.asarray(feats, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"cmvn: expected feats (T, D), got shape {tuple(x.shape)}")
        self._check_dim(x.shape[1])
        self.mean_stat += x.sum(axis=0)
        self.var_stat += np.square(x).sum(axis=0)
        self.frame_num += x.shape[0]

    def merge(self, other: CmvnStats) -> None:
        """Add another accumulator's statistics (e.g. from another worker) into this one."""
        if other.dim is None:
            return
        self._check_dim(other.dim)
        self.mean_stat += other.mean_stat
        self.var_stat += other.var_stat
        self.frame_num += other.frame_num

    def to_json(self) -> dict:
        if self.dim is None:
            raise ValueError("cmvn: no features were accumulated")
        return {
            "mean_stat": self.mean_stat.tolist(),
            "var_stat": self.var_stat.tolist(),
            "frame_num": int(self.frame_num),
        }

    @classmethod
    def from_json(cls, obj: dict, source: str = "<json>") -> CmvnStats:
        """Build from a `global_cmvn` dict; `source` names the file in error messages."""
        if not isinstance(obj, dict):
            raise ValueError(f"{source}: global_cmvn must be a JSON object")
        missing = [k for k in ("mean_stat", "var_stat", "frame_num") if k not in obj]
        if missing:
            raise ValueError(f"{source}: global_cmvn lacks key(s) {missing}")
        try:
            mean = np.asarray(obj["mean_stat"], dtype=np.float64)
            var = np.asarray(obj["var_stat"], dtype=np.float64)
            frames = float(obj["frame_num"])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{source}: global_cmvn values are not numeric ({exc})") from exc
        if mean.ndim != 1 or mean.shape != var.shape or mean.size == 0:
            raise ValueError(
                f"{source}: mean_stat and var_stat must be equal-length non-empty lists, "
                f"got shapes {mean.shape} and {var.shape}"
            )
        if not frames > 0 or not math.isfinite(frames):
            raise ValueError(f"{source}: frame_num must be a positive number, got {frames}")
        redo = "recompute it (tools/compute_cmvn_stats.py) from the training features"
        for name, values in (("mean_stat", mean), ("var_stat", var)):
            bad = np.flatnonzero(~np.isfinite(values))
            if bad.size:
                raise ValueError(
                    f"{source}: {name}[{bad[0]}] is {values[bad[0]]} ({bad.size} of {values.size} "
                    f"values not finite): every normalised feature would be NaN or inf; {redo}"
                )
        stats = cls(mean.shape[0])
        stats.mean_stat[:] = mean
        stats.var_stat[:] = var
        stats.frame_num = int(frames)
        with np.errstate(over="ignore", invalid="ignore"):
            normalised = [t.numpy() for t in stats.mean_istd()]
        if not all(np.isfinite(t).all() for t in normalised):
            raise ValueError(
                f"{source}: the mean or 1/std of its statistics overflow float32 (|mean| or "
                f"var_stat / frame_num beyond 3.4e38); {redo}"
            )
        return stats

    def write(self, path: str | os.PathLike) -> None:
        """Write the JSON atomically (temp file + rename), so a crash never leaves half a file."""
        path = os.fspath(path)
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.to_json(), f)
            f.write("\n")
        os.replace(tmp, path)

    @classmethod
    def read(cls, path: str | os.PathLike) -> CmvnStats:
        path = os.fspath(path)
        try:
            with open(path, encoding="utf-8") as f:
                obj = json.load(f)
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"{path}: global_cmvn file not found (cmvn.file)") from exc
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{path}: global_cmvn is not valid JSON ({exc})") from exc
        return cls.from_json(obj, path)

    def mean_istd(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean (D,), istd (D,)) float32, istd = 1/sqrt(max(var_stat/n - mean**2, 1e-20))."""
        if self.dim is None or self.frame_num <= 0:
            raise ValueError("cmvn: no features were accumulated")
        mean = self.mean_stat / self.frame_num
        var = np.maximum(self.var_stat / self.frame_num - np.square(mean), VAR_FLOOR)
        istd = 1.0 / np.sqrt(var)
        return torch.from_numpy(mean).float(), torch.from_numpy(istd).float()

    def _check_dim(self, dim: int) -> None:
        if self.mean_stat is None:
            self.mean_stat = np.zeros(dim, dtype=np.float64)
            self.var_stat = np.zeros(dim, dtype=np.float64)
        elif dim != self.dim:
            raise ValueError(f"cmvn: feature dim {dim} differs from accumulated dim {self.dim}")


def load_cmvn(path: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor]:
    """Read a WeNet JSON `global_cmvn` file.

    Returns:
        (mean (D,), istd (D,)) float32 tensors; normalised feats are (x - mean) * istd.
    """
    return CmvnStats.read(path).mean_istd()
