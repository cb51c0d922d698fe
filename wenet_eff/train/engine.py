"""Training engines: how gradients accumulate, how an update is made and what a checkpoint keeps
of the optimizer, behind one interface, so the trainer's loop is the same for every engine.

The trainer drives every engine alike:

    engine.train()                                  # at the start of an epoch
    with engine.accumulating(boundary):             # each micro-batch
        out = batch_forward(engine.module, batch, device, bf16)
        engine.backward(out["loss"], boundary)
    updated, grad_norm = engine.step(bad)           # at the end of each accumulation window
    weights, state = engine.save(exp_dir, name)     # every rank; rank 0 writes what it gets
    engine.load(exp_dir, name, saved)               # resume: optimizer and scheduler

- `TorchEngine` (`train.train_engine=torch_ddp`): one process, or DDP over torchrun's ranks.
  Within a window DDP defers its all-reduce (`no_sync`) to the last micro-batch's backward;
  the update clips to `train.grad_clip` and is skipped when the norm is not finite or a rank saw
  a non-finite loss. The resume state holds the optimizer and scheduler.
- `ExpertParallelEngine` (`torch_ddp` with `train.expert_parallel=N`): the torch engine with the
  MoE experts sharded over groups of N ranks (expert_parallel.py): DDP leaves the experts to it,
  their gradients are summed over replicas, clipping uses the whole model's norm, checkpoints
  gather every rank's experts and optimizer state, and validation runs in lock step.
- `DeepSpeedEngine` (`train.train_engine=deepspeed`): ZeRO stage 1 or 2. DeepSpeed counts the
  micro-batches, clips and skips a non-finite update itself, and saves its partitioned optimizer
  state under `exp_dir/deepspeed/NAME`. STEP's switch statistic is summed over the ranks' shards.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch.nn.parallel import DistributedDataParallel

from wenet_eff.train import checkpoint as ckpt
from wenet_eff.train.dist import DistContext, deepspeed_initialize
from wenet_eff.train.expert_parallel import ExpertParallel, dummy_batch
from wenet_eff.train.optim import StepAdam, build_optimizer, build_scheduler, scale_lr

logger = logging.getLogger("wenet_eff.train")


def _cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in state.items()}


class Engine(ABC):
    """What every engine shares: the plain model, its optimizer and schedule.

    Args:
        cfg: the whole resolved config (train, optim, model).
        model: the plain model, on its device, with the weights it starts from.
        ctx: rank, world size and device.

    Attributes:
        model: the plain module (what `N.pt` holds).
        module: what the forward runs through (the model, or its DDP / DeepSpeed wrapper).
        lockstep: a stand-in batch that a rank out of cv data forwards while others validate
            (expert parallelism, whose forward is a collective), or None.
    """

    def __init__(self, cfg: DictConfig, model: torch.nn.Module, ctx: DistContext) -> None:
        tcfg = cfg.train
        self.model, self.ctx, self.name = model, ctx, tcfg.train_engine
        self.accum_grad = tcfg.accum_grad
        self.max_norm = tcfg.grad_clip if tcfg.grad_clip > 0 else math.inf
        self.optimizer = build_optimizer(model.parameters(), cfg.optim)
        self.scheduler = build_scheduler(
            self.optimizer, cfg.optim, tcfg.max_steps, cfg.model.encoder.output_size
        )
        self.module: torch.nn.Module = model
        self.lockstep: dict[str, Any] | None = None

    @property
    def lr(self) -> float:
        """The current learning rate."""
        return float(self.optimizer.param_groups[0]["lr"])

    def train(self) -> None:
        """Put the model in training mode."""
        self.module.train()

    def scale_lr(self, factor: float) -> None:
        """Multiply the schedule's peak and the current learning rate by `factor`."""
        scale_lr(self.optimizer, self.scheduler, factor)

    def accumulating(self, boundary: bool) -> AbstractContextManager:
        """The context of one micro-batch's forward and backward; `boundary`: it closes the
        accumulation window."""
        return nullcontext()

    @abstractmethod
    def backward(self, loss: torch.Tensor, boundary: bool) -> None:
        """Add the gradients of `loss` (the micro-batch's mean loss) to the window's."""

    @abstractmethod
    def step(self, bad: bool) -> tuple[bool, float]:
        """Close the accumulation window: clip, update model and schedule, clear the gradients.

        Args:
            bad: some rank saw a non-finite loss in the window (the same on every rank).

        Returns:
            (whether the model was updated, the gradient norm before clipping).
        """

    @abstractmethod
    def save(self, exp_dir: Path, name: str) -> tuple[dict | None, dict | None]:
        """Collect checkpoint `name`: a collective, every rank calls it.

        Returns:
            on rank 0, the whole model's state dict (CPU) and the engine's part of the resume
            state; (None, None) on the other ranks.
        """

    @abstractmethod
    def load(self, exp_dir: Path, name: str, saved: dict) -> None:
        """Take up the optimizer and scheduler of checkpoint `name` (resume state `saved`)."""

    def load_resumable(self, exp_dir: Path, name: str) -> dict:
        """Load checkpoint `name`'s weights into the model mid-run; returns its resume state."""
        return ckpt.load_resumable(self.model, exp_dir, name)


class TorchEngine(Engine):
    """Plain PyTorch training in one process, or DDP over torchrun's ranks (see module doc)."""

    def __init__(self, cfg: DictConfig, model: torch.nn.Module, ctx: DistContext) -> None:
        super().__init__(cfg, model, ctx)
        if ctx.world_size > 1:
            self.module = DistributedDataParallel(
                model,
                device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
                find_unused_parameters=model.may_leave_parameters_unused(),
            )

    def accumulating(self, boundary: bool) -> AbstractContextManager:
        # DDP all-reduces gradients in backward; within a window that waits for its last batch
        if isinstance(self.module, DistributedDataParallel) and not boundary:
            return self.module.no_sync()
        return nullcontext()

    def backward(self, loss: torch.Tensor, boundary: bool) -> None:
        (loss / self.accum_grad).backward()

    def clip(self) -> float:
        """Clip the gradients to `train.grad_clip`; returns their norm before."""
        return float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.max_norm))

    def step(self, bad: bool) -> tuple[bool, float]:
        grad_norm = self.clip()
        updated = not bad and math.isfinite(grad_norm)
        if updated:
            self.optimizer.step()
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return updated, grad_norm

    def save(self, exp_dir: Path, name: str) -> tuple[dict | None, dict | None]:
        if not self.ctx.is_main:
            return None, None
        state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}
        return _cpu(self.model.state_dict()), state

    def load(self, exp_dir: Path, name: str, saved: dict) -> None:
        if "expert_parallel" in saved:
            raise ValueError(
                f"checkpoint {name} was trained with train.expert_parallel="
                f"{saved['expert_parallel']['size']}; resume it with the same setting, or "
                f"train into a new train.exp_dir with train.init_checkpoint={name}.pt"
            )
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])


class ExpertParallelEngine(TorchEngine):
    """The torch engine with MoE experts sharded over groups of `train.expert_parallel` ranks.
    Build it after loading the whole model's weights: each rank then drops the experts other
    ranks keep."""

    def __init__(self, cfg: DictConfig, model: torch.nn.Module, ctx: DistContext) -> None:
        tcfg = cfg.train
        self.ep = ExpertParallel(
            model, tcfg.expert_parallel, ctx, tcfg.train_engine, cfg.optim.name
        )
        # each rank's experts are its own: not all-reduced by DDP
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, self.ep.names)
        super().__init__(cfg, model, ctx)
        self.lockstep = dummy_batch(cfg.model.input_dim)

    def clip(self) -> float:
        self.ep.sync_grads()
        return self.ep.clip_grads(self.max_norm)

    def save(self, exp_dir: Path, name: str) -> tuple[dict | None, dict | None]:
        weights = self.ep.full_state(self.model)  # every rank's experts, on rank 0
        optimizers = self.ep.optimizer_states(self.optimizer)
        if not self.ctx.is_main:
            return None, None
        state = {
            "scheduler": self.scheduler.state_dict(),
            "expert_parallel": self.ep.record(optimizers),
        }
        return weights, state

    def load(self, exp_dir: Path, name: str, saved: dict) -> None:
        self.optimizer.load_state_dict(self.ep.own_optimizer_state(saved, name))
        self.scheduler.load_state_dict(saved["scheduler"])

    def load_resumable(self, exp_dir: Path, name: str) -> dict:
        # the checkpoint has every expert; this rank keeps its own
        return ckpt.load_resumable(self.model, exp_dir, name, ckpt.other_ranks_experts(self.model))


class DeepSpeedEngine(Engine):
    """DeepSpeed ZeRO stage 1 or 2 around the model, optimizer and schedule (see module doc)."""

    def __init__(self, cfg: DictConfig, model: torch.nn.Module, ctx: DistContext) -> None:
        super().__init__(cfg, model, ctx)
        if isinstance(self.optimizer, StepAdam):
            # ZeRO steps each rank's optimizer on its shard of the parameters: STEP's switch
            # statistic is a sum over all of them, so every rank switches at the same update
            self.optimizer.reduce = ctx.sum
        self.module = deepspeed_initialize(model, self.optimizer, self.scheduler, cfg)

    def accumulating(self, boundary: bool) -> AbstractContextManager:
        self.module.set_gradient_accumulation_boundary(boundary)
        return nullcontext()

    def backward(self, loss: torch.Tensor, boundary: bool) -> None:
        self.module.backward(loss)  # DeepSpeed divides by accum_grad itself
        if not boundary:
            self.module.step()  # DeepSpeed counts micro-batches in step(); no update here

    def step(self, bad: bool) -> tuple[bool, float]:
        skipped_before = self.module.skipped_steps
        self.module.step()  # clips, and skips the update itself when the norm is not finite
        norm = self.module.get_global_grad_norm()
        grad_norm = float(norm) if norm is not None else math.nan
        updated = self.module.skipped_steps == skipped_before
        if bad and updated:
            logger.warning("non-finite loss but finite gradients: DeepSpeed updated anyway")
        return updated, grad_norm

    def save(self, exp_dir: Path, name: str) -> tuple[dict | None, dict | None]:
        self.module.save_checkpoint(str(exp_dir / ckpt.DEEPSPEED_DIR), tag=name, save_latest=False)
        self.ctx.barrier()  # every rank's partition is on disk before the yaml marks it done
        if not self.ctx.is_main:
            return None, None
        return _cpu(self.model.state_dict()), {}

    def load(self, exp_dir: Path, name: str, saved: dict) -> None:
        self.module.load_checkpoint(str(exp_dir / ckpt.DEEPSPEED_DIR), tag=name)


def build_engine(cfg: DictConfig, model: torch.nn.Module, ctx: DistContext) -> Engine:
    """The engine `train.train_engine` and `train.expert_parallel` ask for, around `model`
    (with the weights training starts from already loaded)."""
    if cfg.train.expert_parallel > 1:
        return ExpertParallelEngine(cfg, model, ctx)
    if cfg.train.train_engine == "deepspeed":
        return DeepSpeedEngine(cfg, model, ctx)
    return TorchEngine(cfg, model, ctx)
