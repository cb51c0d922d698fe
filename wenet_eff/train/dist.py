"""Process-group setup and the few collectives the trainer needs (DDP and DeepSpeed).

Ranks come from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK). Without it training
runs in one process; the torch engine then needs no process group at all, while DeepSpeed
gets a one-process gloo group. Every collective here is a no-op in a single process.
"""

from __future__ import annotations

import copy
import json
import os
import socket
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
from omegaconf import DictConfig

ENGINES = ("torch_ddp", "deepspeed")


@dataclass(frozen=True)
class DistContext:
    """Where this process sits: rank, world size and the device it trains on."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def grouped(self) -> bool:
        """A process group exists (multi-process, or DeepSpeed in one process)."""
        return dist.is_available() and dist.is_initialized()

    def all_true(self, flag: bool) -> bool:
        """True when `flag` holds on every rank."""
        return self._reduce_flag(flag, dist.ReduceOp.MIN)

    def any_true(self, flag: bool) -> bool:
        """True when `flag` holds on at least one rank."""
        return self._reduce_flag(flag, dist.ReduceOp.MAX)

    def _reduce_flag(self, flag: bool, op: dist.ReduceOp) -> bool:
        if not self.grouped:
            return flag
        t = torch.tensor([int(flag)], device=self.device)
        dist.all_reduce(t, op=op)
        return bool(t.item())

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum of `values` over ranks (float64)."""
        if not self.grouped:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return t.tolist()

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj` (picklable), in rank order, on every rank."""
        if not self.grouped:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        if self.grouped:
            dist.barrier()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init_distributed(train_cfg: DictConfig) -> DistContext:
    """Join the process group torchrun set up (or make a one-process one for DeepSpeed).

    `train.dist_backend=auto` picks nccl when CUDA is available and gloo otherwise;
    `train.device=auto` picks `cuda:LOCAL_RANK` or the CPU.
    """
    if train_cfg.train_engine not in ENGINES:
        raise ValueError(
            f"train.train_engine: unknown engine '{train_cfg.train_engine}' "
            f"(choose from {', '.join(ENGINES)})"
        )
    rank = int(os.environ.get("RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if train_cfg.device == "auto":
        device = torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(train_cfg.device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    backend = train_cfg.dist_backend
    if backend == "auto":
        backend = "nccl" if device.type == "cuda" else "gloo"
    needs_group = world_size > 1 or train_cfg.train_engine == "deepspeed"
    if needs_group and not dist.is_initialized():
        if "MASTER_ADDR" not in os.environ:  # one process started without torchrun
            os.environ.update(
                MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()), RANK="0", WORLD_SIZE="1"
            )
            os.environ.setdefault("LOCAL_RANK", "0")
        dist.init_process_group(
            backend, rank=rank, world_size=world_size, timeout=timedelta(minutes=30)
        )
    return DistContext(rank, world_size, local_rank, device)


def cleanup_distributed() -> None:
    """Leave the process group, if any."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def deepspeed_config(cfg: DictConfig) -> dict:
    """The JSON of `train.deepspeed_config`, with the trainer's own settings written in.

    Gradient accumulation and clipping come from `train.accum_grad` / `train.grad_clip`
    (the trainer drives the accumulation boundary itself); the micro batch size, which
    DeepSpeed only uses for bookkeeping, is `data.batch_size`. Mixed precision is
    `train.dtype=bf16` (torch autocast), so DeepSpeed's own fp16/bf16 sections must be off.
    """
    path = cfg.train.deepspeed_config
    if not path:
        raise ValueError("train.train_engine=deepspeed needs train.deepspeed_config (a JSON file)")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"train.deepspeed_config: {path} not found")
    with open(path, encoding="utf-8") as f:
        ds = json.load(f)
    for section in ("fp16", "bf16"):
        if ds.get(section, {}).get("enabled", False):
            raise ValueError(
                f"{path}: '{section}.enabled' is not supported; set train.dtype=bf16 for "
                "mixed precision (autocast with fp32 master weights) and disable it here"
            )
    stage = ds.get("zero_optimization", {}).get("stage", 0)
    if stage not in (1, 2):
        raise ValueError(
            f"{path}: zero_optimization.stage={stage}; only ZeRO stage 1 or 2 is supported"
        )
    if "optimizer" in ds or "scheduler" in ds:
        raise ValueError(
            f"{path}: remove the 'optimizer'/'scheduler' sections; they come from the optim config"
        )
    ds = copy.deepcopy(ds)
    ds.pop("train_batch_size", None)
    ds["train_micro_batch_size_per_gpu"] = cfg.data.batch_size
    ds["gradient_accumulation_steps"] = cfg.train.accum_grad
    ds["gradient_clipping"] = cfg.train.grad_clip
    ds.setdefault("steps_per_print", 10**9)
    return ds


def deepspeed_initialize(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    cfg: DictConfig,
) -> Any:
    """Wrap model, optimizer and scheduler in a DeepSpeed engine (CPU accelerator without CUDA)."""
    ds_cfg = deepspeed_config(cfg)
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")
    try:
        import deepspeed
    except ImportError as exc:
        raise ImportError(
            "train.train_engine=deepspeed but deepspeed is not installed "
            "(pip install -r requirements-deepspeed.txt)"
        ) from exc
    engine, _, _, _ = deepspeed.initialize(
        model=model, optimizer=optimizer, lr_scheduler=scheduler, config=ds_cfg
    )
    return engine
