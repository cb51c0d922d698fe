"""Expert-parallel MoE training over torch.distributed (`train.expert_parallel=N`).

The world is cut into expert-parallel groups of N consecutive ranks (put them inside one node,
where the all-to-all is fast). Each rank of a group keeps n_expert / N experts of every MoE
layer (`nn.moe.shard_experts`); routers and all other weights are replicated and trained by
DDP as usual. Frames travel to their experts' ranks and back by all-to-all inside the layer.

Gradients match plain data parallelism over the same world: DDP averages the replicated
weights' gradients over all ranks; an expert's local gradient already sums the contributions of
its group's frames, so it is summed over the replicas of that expert (the ranks at the same
position of the other groups) and divided by the world size. Gradient clipping uses the norm
of the whole model (every rank's experts included), so all ranks clip alike.

Checkpoints stay whole: `N.pt` holds every expert under its WeNet name (rank 0 gathers its
group's shards), so averaging, decoding, export and a run without expert parallelism read it as
before; the resume state keeps the optimizer state of each position in the group, and a resume
must use the same expert-parallel size (the number of groups may change).

STEP (`optim.name=step`) is refused: its phase switch measures the variance change of this
rank's parameters, which differ between the ranks of a group.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors
from torch.utils._pytree import tree_map

from wenet_eff.nn.moe import is_expert_param, moe_layers, shard_experts
from wenet_eff.train.dist import DistContext

logger = logging.getLogger("wenet_eff.train")


class ExpertParallel:
    """One rank's share of expert-parallel training (build after loading the whole model's
    weights, before the optimizer and DDP)."""

    def __init__(
        self, model: torch.nn.Module, size: int, ctx: DistContext, engine: str, optimizer: str
    ):
        if optimizer == "step":
            raise ValueError(
                f"train.expert_parallel={size} does not work with optim.name=step (its phase "
                "switch would come at a different update on each rank)"
            )
        if engine != "torch_ddp":
            raise ValueError(
                f"train.expert_parallel={size} needs train.train_engine=torch_ddp (got {engine})"
            )
        if ctx.world_size % size:
            raise ValueError(
                f"train.expert_parallel={size} must divide the world size {ctx.world_size}"
            )
        if not moe_layers(model):
            raise ValueError(
                f"train.expert_parallel={size} needs a model with MoE layers (model/ffn=moe)"
            )
        self.size, self.ctx = size, ctx
        self.full_keys = list(model.state_dict())
        # every rank creates every group, in the same order (a torch.distributed rule)
        self.group = self.replicas = None
        for start in range(0, ctx.world_size, size):
            ranks = list(range(start, start + size))
            group = dist.new_group(ranks)
            if ctx.rank in ranks:
                self.group, self.leader = group, start
        for position in range(size):
            ranks = list(range(position, ctx.world_size, size))
            group = dist.new_group(ranks)
            if ctx.rank in ranks:
                self.replicas, self.num_replicas = group, len(ranks)
        self.names = shard_experts(model, self.group)
        names = set(self.names)  # parameters and buffers
        self.expert_params = [p for n, p in model.named_parameters() if n in names]
        self.dense_params = [p for n, p in model.named_parameters() if n not in names]
        if ctx.is_main:
            layers = moe_layers(model)
            n_expert = layers[0][1].n_expert
            logger.info(
                "expert parallelism: %d group(s) of %d ranks; each rank keeps %d of the %d "
                "experts of each of %d MoE layers (%.1fM of their parameters here)",
                *(ctx.world_size // size, size, n_expert // size, n_expert, len(layers)),
                sum(p.numel() for p in self.expert_params) / 1e6,
            )

    def sync_grads(self) -> None:
        """Expert gradients: summed over the expert's replicas, then / world size (what DDP's
        average gives the replicated weights)."""
        grads = [p.grad for p in self.expert_params if p.grad is not None]
        if not grads:
            return
        if self.num_replicas > 1:  # one all-reduce over a flat copy, not one per tensor
            flat = _flatten_dense_tensors(grads)
            dist.all_reduce(flat, group=self.replicas)
            torch._foreach_copy_(grads, _unflatten_dense_tensors(flat, grads))
        torch._foreach_div_(grads, float(self.ctx.world_size))

    def clip_grads(self, max_norm: float) -> float:
        """Clip every gradient by the whole model's norm; returns that norm (same on all ranks)."""

        def sq_norm(params: list[torch.Tensor]) -> torch.Tensor:
            grads = [p.grad for p in params if p.grad is not None]
            if not grads:
                return torch.zeros((), dtype=torch.float64, device=self.ctx.device)
            return torch.nn.utils.get_total_norm(grads).double() ** 2

        experts = sq_norm(self.expert_params)
        dist.all_reduce(experts, group=self.group)  # each rank of a group holds other experts
        total = float(torch.sqrt(sq_norm(self.dense_params) + experts))
        if math.isfinite(total) and total > max_norm:
            params = self.dense_params + self.expert_params
            torch.nn.utils.clip_grads_with_norm_(params, max_norm, torch.tensor(total))
        return total

    def _gather(self, make: Callable[[], Any]) -> list[Any] | None:
        """`make()` of every rank of rank 0's group, on rank 0 (the others: None). A collective
        of that group only: the replicas in other groups hold the same experts and skip it."""
        if self.leader != 0:
            return None
        parts: list[Any] | None = [None] * self.size if self.ctx.is_main else None
        dist.gather_object(make(), parts, dst=0, group=self.group)
        return parts

    def full_state(self, model: torch.nn.Module) -> dict[str, torch.Tensor] | None:
        """The whole model's state dict (every rank's experts) on rank 0, None on the others.
        A collective of rank 0's group."""
        state = model.state_dict()
        parts = self._gather(
            lambda: {k: v.detach().cpu() for k, v in state.items() if is_expert_param(k)}
        )
        if not self.ctx.is_main:
            return None
        local = {k: v.detach().cpu() for k, v in state.items()}
        for part in parts:
            local.update(part)
        missing = [k for k in self.full_keys if k not in local]
        if missing:  # cannot happen unless the groups lost an expert
            raise RuntimeError(f"expert parallelism: no rank holds {missing[:5]}")
        return {k: local[k] for k in self.full_keys}

    def optimizer_states(self, optimizer: torch.optim.Optimizer) -> list[dict] | None:
        """The optimizer state of every rank of rank 0's group, on rank 0, in CPU memory (None
        on the others). A collective."""
        parts = self._gather(
            lambda: tree_map(lambda t: t.cpu() if torch.is_tensor(t) else t, optimizer.state_dict())
        )
        return parts if self.ctx.is_main else None

    def record(self, states: list[dict]) -> dict:
        """What the resume state keeps for expert parallelism."""
        return {"size": self.size, "optimizers": states}

    def own_optimizer_state(self, saved: dict, name: str) -> dict:
        """This rank's optimizer state from checkpoint `name`'s resume state."""
        record = saved.get("expert_parallel")
        if record is None or record["size"] != self.size:
            was = f"expert_parallel={record['size']}" if record else "no expert parallelism"
            raise ValueError(
                f"checkpoint {name} was trained with {was}; resuming it needs the same "
                f"(this run: train.expert_parallel={self.size}). Train into a new "
                f"train.exp_dir with train.init_checkpoint={name}.pt instead"
            )
        return record["optimizers"][self.ctx.rank - self.leader]


def dummy_batch(feat_dim: int) -> dict[str, Any]:
    """A one-utterance batch a rank without data forwards (and ignores) so that its experts
    still serve the ranks that have data."""
    return {
        "keys": [],
        "feats": torch.zeros(1, 64, feat_dim),
        "feats_lengths": torch.tensor([64]),
        "target": torch.ones(1, 1, dtype=torch.long),
        "target_lengths": torch.tensor([1]),
    }
