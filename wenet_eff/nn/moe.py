"""Mixture-of-Experts feed-forward layer (U2++ MoE): top-k routing over FFN experts.

Each frame goes to the k experts with the largest router logits and its output is the sum of
their outputs weighted by a softmax over those k logits (in fp32). No auxiliary loss is needed
(the U2++ MoE recipe); a load-balancing loss and a router z-loss are available, off by default.

Dispatch: the (frame, expert) assignments are sorted by expert once, each expert runs one
matrix product on the contiguous block of frames routed to it, and the results are scattered
back with one `index_add_`. Cost is therefore the *active* parameters (k experts per frame),
not the total; no Python work per frame, one small loop over experts.

Expert parallelism (`shard_experts`, training with `train.expert_parallel`): each rank of an
expert-parallel group keeps n_expert / group size experts of every layer (the router and all
other weights are replicated). The sorted frames travel to the ranks owning their experts in one
`all_to_all_single` (the split sizes from a first exchange of the per-expert counts), the local
experts run on what arrived from every rank, and a second all-to-all brings the outputs back;
both exchanges are differentiable (`torch.distributed._functional_collectives`), so the
gradients of a rank's experts sum the contributions of every rank's frames.

State-dict names follow WeNet: `gate.weight`, `experts.{e}.w_1.weight`, `experts.{e}.w_2.*`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn

from wenet_eff.nn.ffn import PositionwiseFeedForward
from wenet_eff.nn.linear import linear


@dataclass
class MoEConfig:
    """Training options of the MoE layers (all off by default, as in U2++ MoE)."""

    capacity_factor: float = 0.0  # >0: at most ceil(cf * frames * k / E) frames per expert
    load_balance_weight: float = 0.0  # weight of the Switch load-balancing loss
    z_loss_weight: float = 0.0  # weight of the router z-loss


class MoEFFNLayer(nn.Module):
    """Top-k routed mixture of `n_expert` position-wise FFNs.

    Args:
        idim: model dimension.
        hidden_units: inner dimension of each expert (the dense FFN's `linear_units`).
        dropout_rate: dropout inside each expert.
        activation: the experts' nonlinearity (stateless, shared).
        n_expert: number of experts.
        n_expert_activated: k, experts per frame.
        capacity_factor: > 0 caps the frames per expert in training at
            ceil(capacity_factor * frames * k / n_expert); overflow assignments are dropped
            (top-1 choices keep priority over top-2). 0: no cap. Never applied in eval.
        router_init_std: std of the router's normal initialisation (small: near-uniform routing).
        fc2_norm: each expert LayerNorms its w_2 output (`model.stability.fc2_norm`).

    After each forward, `usage` holds the fraction of frames sent to each expert (sums to k)
    and, in training, `aux` the unweighted load-balancing and z losses of the step.
    """

    def __init__(
        self,
        idim: int,
        hidden_units: int,
        dropout_rate: float,
        activation: nn.Module,
        n_expert: int = 8,
        n_expert_activated: int = 2,
        capacity_factor: float = 0.0,
        router_init_std: float = 0.02,
        fc2_norm: bool = False,
    ):
        super().__init__()
        if not 1 <= n_expert_activated <= n_expert:
            raise ValueError(
                f"n_expert_activated={n_expert_activated} must be in 1..n_expert={n_expert}"
            )
        self.n_expert = n_expert
        self.k = n_expert_activated
        self.capacity_factor = capacity_factor
        self.gate = linear(idim, n_expert, bias=False, role="moe.gate")
        nn.init.normal_(self.gate.weight, std=router_init_std)
        self.experts = nn.ModuleList(
            PositionwiseFeedForward(idim, hidden_units, dropout_rate, activation, fc2_norm)
            for _ in range(n_expert)
        )
        self.usage: torch.Tensor | None = None
        self.aux: dict[str, torch.Tensor] = {}
        self.ep: ExpertGroup | None = None  # set by shard_experts

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Route flat frames x (N, D): (logits (N, E) fp32, top-k ids (N, k), weights (N, k))."""
        logits = self.gate(x).float()
        top_logits, top_ids = logits.topk(self.k, dim=-1)
        return logits, top_ids, top_logits.softmax(dim=-1)

    def forward(self, xs: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., D)."""
        shape = xs.shape
        x = xs.reshape(-1, shape[-1])
        n = x.shape[0]
        logits, top_ids, weights = self.route(x)
        # Slot-major flattening: all top-1 assignments before all top-2 ones, so a stable sort
        # by expert keeps top-1 choices first within each expert (they win under a capacity cap).
        flat_expert = top_ids.t().reshape(-1)
        order = torch.argsort(flat_expert, stable=True)
        counts = torch.bincount(flat_expert, minlength=self.n_expert)
        frame = order % n
        gathered_weights = weights.t().reshape(-1)[order]
        if self.training and self.capacity_factor > 0:
            capacity = math.ceil(self.capacity_factor * n * self.k / self.n_expert)
            starts = torch.cumsum(counts, 0) - counts
            rank = torch.arange(order.numel(), device=x.device) - starts[flat_expert[order]]
            keep = rank < capacity
            frame, gathered_weights = frame[keep], gathered_weights[keep]
            counts = counts.clamp(max=capacity)
        self.usage = counts.detach().float() / max(n, 1)
        self.aux = self._aux_losses(logits, counts, n) if self.training else {}
        x_sorted = x.index_select(0, frame)
        if self.ep is not None:
            y_sorted = self._run_experts_parallel(x_sorted, counts)
        else:
            blocks = x_sorted.split(counts.tolist())
            y_sorted = torch.cat(
                [expert(block) for expert, block in zip(self.experts, blocks, strict=True)]
            )
        y_sorted = y_sorted * gathered_weights.unsqueeze(1).to(x.dtype)
        out = torch.zeros_like(x).index_add_(0, frame, y_sorted)
        return out.reshape(shape)

    def _run_experts_parallel(self, x_sorted: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """Expert outputs of frames sorted by expert, the experts spread over `self.ep`'s ranks.

        Rank r owns experts [r * L, (r + 1) * L), L = n_expert / size, so the sorted frames are
        already grouped by the rank they go to.
        """
        from torch.distributed._functional_collectives import all_to_all_single_autograd as a2a

        ep = self.ep
        local = self.n_expert // ep.size
        send = counts.view(ep.size, local).contiguous()  # row r: frames for rank r's experts
        recv = torch.empty_like(send)  # row s: frames from rank s for this rank's experts
        dist.all_to_all_single(recv, send, group=ep.group)
        send_rows, recv_rows = send.sum(1).tolist(), recv.sum(1).tolist()
        arrived = a2a(x_sorted, recv_rows, send_rows, ep.group)
        # arrived is (source rank, local expert)-major; each expert runs once on its frames
        # from every source, and the outputs go back in the order they came
        sizes = recv.tolist()
        blocks = arrived.split([n for row in sizes for n in row])
        back: list[list[torch.Tensor]] = [[] for _ in range(ep.size)]
        for j in range(local):
            expert = self.experts[ep.rank * local + j]
            ins = [blocks[s * local + j] for s in range(ep.size)]
            outs = expert(torch.cat(ins)).split([sizes[s][j] for s in range(ep.size)])
            for s in range(ep.size):
                back[s].append(outs[s])
        returned = torch.cat([t for row in back for t in row])
        return a2a(returned, send_rows, recv_rows, ep.group)

    def _aux_losses(self, logits: torch.Tensor, counts: torch.Tensor, n: int) -> dict:
        """Switch-style load balance E * sum_e f_e * P_e and z-loss mean(logsumexp^2)."""
        probs = logits.softmax(dim=-1).mean(0)
        fraction = counts.float() / max(n * self.k, 1)
        balance = self.n_expert * (fraction * probs).sum()
        z_loss = torch.logsumexp(logits, dim=-1).square().mean()
        return {"load_balance": balance, "z_loss": z_loss}


def naive_moe(layer: MoEFFNLayer, xs: torch.Tensor) -> torch.Tensor:
    """The per-expert full scan (`torch.where` over all frames for each expert), as in WeNet.

    Same result as `layer(xs)` without a capacity cap; kept as the reference for tests and the
    dispatch benchmark.
    """
    shape = xs.shape
    x = xs.reshape(-1, shape[-1])
    _, top_ids, weights = layer.route(x)
    out = torch.zeros_like(x)
    for e, expert in enumerate(layer.experts):
        frame, slot = torch.where(top_ids == e)
        if frame.numel():
            out[frame] += weights[frame, slot, None].to(x.dtype) * expert(x[frame])
    return out.reshape(shape)


class ExpertGroup:
    """The expert-parallel process group of a sharded MoE layer (shared, never copied)."""

    def __init__(self, group: dist.ProcessGroup, size: int, rank: int):
        self.group, self.size, self.rank = group, size, rank

    def __deepcopy__(self, memo: dict) -> ExpertGroup:
        return self


class RemoteExpert(nn.Module):
    """Placeholder for an expert held by another rank of the expert-parallel group: no
    parameters, so the state dict keeps this rank's experts under their global names."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("this expert lives on another rank (expert parallelism)")


def shard_experts(module: nn.Module, group: dist.ProcessGroup | None = None) -> list[str]:
    """Expert parallelism: keep only this rank's experts of every MoE layer of `module`.

    Rank r of `group` (default: the whole world) keeps experts [r * L, (r + 1) * L) with
    L = n_expert / group size, the others become `RemoteExpert`s. Returns the qualified names
    of the parameters and buffers this rank keeps in those experts (what DDP must neither
    all-reduce nor broadcast: QAT and sparsity keep per-expert buffers).

    Raises:
        ValueError: no MoE layer, or n_expert not divisible by the group size.
    """
    size, rank = dist.get_world_size(group), dist.get_rank(group)
    layers = moe_layers(module)
    if not layers:
        raise ValueError("expert parallelism needs a model with MoE layers (model/ffn=moe)")
    kept: set[int] = set()
    for name, layer in layers:
        if layer.n_expert % size:
            raise ValueError(
                f"{name}: n_expert={layer.n_expert} is not divisible by the expert-parallel "
                f"size {size}"
            )
        local = layer.n_expert // size
        for e in range(layer.n_expert):
            if rank * local <= e < (rank + 1) * local:
                kept.update(id(t) for t in layer.experts[e].parameters())
                kept.update(id(t) for t in layer.experts[e].buffers())
            else:
                layer.experts[e] = RemoteExpert()
        layer.ep = ExpertGroup(group if group is not None else dist.group.WORLD, size, rank)
    tensors = [*module.named_parameters(), *module.named_buffers()]
    return [name for name, t in tensors if id(t) in kept]


def is_expert_param(name: str) -> bool:
    """True for the parameters of MoE experts (`...experts.{e}.*`)."""
    return _EXPERT_PARAM.search(name) is not None


def moe_layers(module: nn.Module) -> list[tuple[str, MoEFFNLayer]]:
    """All (qualified name, MoE layer) pairs of `module`."""
    return [(name, m) for name, m in module.named_modules() if isinstance(m, MoEFFNLayer)]


def build_ffn(
    idim: int,
    hidden_units: int,
    dropout_rate: float,
    activation: nn.Module,
    mlp_type: str = "position_wise_feed_forward",
    n_expert: int = 8,
    n_expert_activated: int = 2,
    capacity_factor: float = 0.0,
    fc2_norm: bool = False,
) -> nn.Module:
    """A dense FFN or an MoE layer by WeNet's `mlp_type` name (`fc2_norm`: LayerNorm after w_2,
    in every expert of an MoE layer)."""
    if mlp_type == "position_wise_feed_forward":
        return PositionwiseFeedForward(idim, hidden_units, dropout_rate, activation, fc2_norm)
    if mlp_type == "moe":
        return MoEFFNLayer(
            idim,
            hidden_units,
            dropout_rate,
            activation,
            n_expert,
            n_expert_activated,
            capacity_factor,
            fc2_norm=fc2_norm,
        )
    raise ValueError(f"mlp_type='{mlp_type}' unknown (choose from position_wise_feed_forward, moe)")


_EXPERT_KEY = re.compile(r"^(.*\.feed_forward(?:_macaron)?)\.experts\.\d+\.(.*)$")
_EXPERT_PARAM = re.compile(r"(^|\.)experts\.\d+\.")
_GATE_KEY = re.compile(r"^.*\.feed_forward(?:_macaron)?\.gate\.weight$")


def upcycle_state_dict(
    dense_state: dict[str, torch.Tensor],
    moe_model: nn.Module,
    router_init_std: float = 0.02,
    seed: int = 0,
) -> dict[str, torch.Tensor]:
    """Sparse upcycling: the state dict of `moe_model` built from a dense model's state dict.

    Every expert starts as a copy of the dense FFN it replaces (`...feed_forward.w_1.weight` ->
    `...feed_forward.experts.{e}.w_1.weight`), routers get small random weights (seeded), and
    all other tensors are copied. Since each frame's k routing weights sum to 1 and the experts
    are identical, the upcycled model computes what the dense one did.

    Raises:
        KeyError: a tensor of `moe_model` has no dense counterpart, or a dense tensor is unused;
            the message names the keys.
        ValueError: a shape differs (the models are not the same apart from the FFNs).
    """
    generator = torch.Generator().manual_seed(seed)
    out: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    missing = []
    for key, target in moe_model.state_dict().items():
        if _GATE_KEY.match(key):
            out[key] = torch.randn(target.shape, generator=generator) * router_init_std
            continue
        match = _EXPERT_KEY.match(key)
        source = f"{match.group(1)}.{match.group(2)}" if match else key
        if source not in dense_state:
            missing.append(f"{key} (from {source})")
            continue
        if dense_state[source].shape != target.shape:
            raise ValueError(
                f"{key}: dense {source} has shape {tuple(dense_state[source].shape)}, "
                f"the MoE model expects {tuple(target.shape)}"
            )
        out[key] = dense_state[source].clone().to(target.dtype)
        used.add(source)
    unused = sorted(set(dense_state) - used)
    if missing or unused:
        raise KeyError(
            f"upcycling: MoE tensors without a dense source: {missing[:5]}; "
            f"dense tensors left unused: {unused[:5]}"
        )
    return out
