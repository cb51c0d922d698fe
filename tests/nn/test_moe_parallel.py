"""Expert parallelism on two gloo ranks: the sharded MoE layer against one process holding every
expert, on the same frames (outputs, router and expert gradients), with experts that get no frame
from some rank, and the refusals."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from wenet_eff.nn.moe import MoEFFNLayer, RemoteExpert, is_expert_param, shard_experts
from wenet_eff.train.dist import _free_port

WORLD = 2


def _layer(n_expert: int, k: int) -> MoEFFNLayer:
    torch.manual_seed(0)
    layer = MoEFFNLayer(8, 16, 0.0, torch.nn.SiLU(), n_expert, k)
    torch.nn.init.normal_(layer.gate.weight, std=1.0)  # decisive, varied routing
    return layer


def _frames(rank: int, n: int) -> torch.Tensor:
    return torch.randn(n, 8, generator=torch.Generator().manual_seed(100 + rank))


def _loss(y: torch.Tensor, rank: int) -> torch.Tensor:
    # a different weighting per rank, so a gradient that mixes up ranks' frames shows
    w = torch.randn(y.shape, generator=torch.Generator().manual_seed(200 + rank))
    return (y * w).sum()


def _worker(rank: int, port: int, n_expert: int, k: int, sizes: list[int], out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        layer = _layer(n_expert, k)
        kept = shard_experts(layer)
        x = _frames(rank, sizes[rank]).requires_grad_()
        y = layer(x)
        _loss(y, rank).backward()
        grads = {n: p.grad.clone() for n, p in layer.named_parameters()}
        torch.save({"y": y.detach(), "x_grad": x.grad, "grads": grads, "kept": kept,
                    "remote": [isinstance(e, RemoteExpert) for e in layer.experts]},
                   f"{out}/rank{rank}.pt")  # fmt: skip
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("n_expert,k,sizes", [(4, 2, [13, 7]), (8, 2, [3, 2]), (2, 1, [5, 0])])
def test_sharded_layer_equals_one_process_with_every_expert(tmp_path, n_expert, k, sizes):
    # (8, 2, [3, 2]): 5 frames for 8 experts, so some experts get nothing from a rank or at all;
    # (2, 1, [5, 0]): rank 1 has no frame and still serves its expert to rank 0
    mp.spawn(_worker, args=(_free_port(), n_expert, k, sizes, str(tmp_path)), nprocs=WORLD)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]

    ref = _layer(n_expert, k)
    xs = [_frames(r, sizes[r]).requires_grad_() for r in range(WORLD)]
    ys = [ref(x) for x in xs]
    sum(_loss(y, r) for r, y in enumerate(ys)).backward()
    ref_grads = dict(ref.named_parameters())

    local = n_expert // WORLD
    for r, got in enumerate(ranks):
        torch.testing.assert_close(got["y"], ys[r].detach(), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got["x_grad"], xs[r].grad, atol=1e-5, rtol=1e-5)
        owned = set(range(r * local, (r + 1) * local))
        assert got["remote"] == [e not in owned for e in range(n_expert)]
        assert sorted(got["kept"]) == sorted(n for n in got["grads"] if is_expert_param(n))
        assert {int(n.split(".")[1]) for n in got["kept"]} == owned
        for name, grad in got["grads"].items():
            if is_expert_param(name):  # the owner's gradient covers every rank's frames
                torch.testing.assert_close(grad, ref_grads[name].grad, atol=1e-5, rtol=1e-5)
    # the replicated router: each rank's gradient is its own frames' share
    router = sum(got["grads"]["gate.weight"] for got in ranks)
    torch.testing.assert_close(router, ref_grads["gate.weight"].grad, atol=1e-5, rtol=1e-5)


def _refusal_worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        errors = []
        for module in (_layer(3, 1), torch.nn.Linear(4, 4)):
            try:
                shard_experts(module)
            except ValueError as e:
                errors.append(str(e))
        torch.save(errors, f"{out}/errors{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_sharding_refuses_indivisible_experts_and_dense_models(tmp_path):
    mp.spawn(_refusal_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD)
    errors = torch.load(tmp_path / "errors0.pt")
    assert len(errors) == 2
    assert "n_expert=3 is not divisible by the expert-parallel size 2" in errors[0]
    assert "needs a model with MoE layers" in errors[1]
