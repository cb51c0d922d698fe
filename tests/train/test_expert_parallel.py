"""Expert-parallel MoE training on gloo ranks: two ranks under torchrun train the weights plain
data parallelism does (whole checkpoints, resume, refusals); four ranks in two groups average
expert gradients over the replicas, clip by the whole model's norm and gather whole weights."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.train.helpers import check, run_train, write_corpus
from wenet_eff.nn.moe import MoEFFNLayer
from wenet_eff.train import checkpoint as ckpt
from wenet_eff.train.dist import DistContext, _free_port
from wenet_eff.train.expert_parallel import ExpertParallel
from wenet_eff.weights import load_model_state

# no dropout: expert parallelism runs the experts' dropout on other ranks' random streams
NO_DROPOUT = [
    "model/ffn=moe",
    "model.encoder.dropout_rate=0.0",
    "model.encoder.positional_dropout_rate=0.0",
    "model.decoder.dropout_rate=0.0",
    "model.decoder.positional_dropout_rate=0.0",
]


def _close(a: dict, b: dict) -> None:
    """Equal weights up to summation order. Adam moves a weight whose gradient is near zero by
    about +-lr whatever the gradient's size, so where the two runs' gradients round to opposite
    signs a few weights differ by a few learning rates (seen on AVX2-only CPUs): allow that for
    at most 1 % of a tensor's elements, never by more than 1e-4."""
    assert list(a) == list(b)
    for k in a:
        diff = (a[k].float() - b[k].float()).abs()
        loose = diff > 2e-5 + 1e-4 * b[k].float().abs()
        assert loose.float().mean() <= 0.01 and diff.max() <= 1e-4, (
            f"{k}: {int(loose.sum())} of {diff.numel()} differ, max {float(diff.max()):.3g}"
        )


@pytest.mark.heavy
def test_expert_parallel_trains_the_weights_data_parallel_does(tmp_path):
    corpus = write_corpus(tmp_path / "data", 10)  # 5 utterances per rank: uneven batches
    runs = {}
    for ep in (1, 2):
        exp = tmp_path / f"ep{ep}"
        args = corpus.overrides(
            exp, "train.max_epoch=2", *NO_DROPOUT, f"train.expert_parallel={ep}"
        )
        check(run_train(args, nproc=2, timeout=240))
        runs[ep] = exp
    dp, ep = (load_model_state(runs[e] / "final.pt") for e in (1, 2))
    # the checkpoint is whole: every expert under its WeNet name, in the model's key order
    assert any(".experts.7.w_1.weight" in k for k in ep) and any(".experts.0." in k for k in ep)
    _close(ep, dp)
    info_dp, info_ep = (ckpt.read_info(runs[e] / "1.yaml") for e in (1, 2))
    assert info_ep["step"] == info_dp["step"] > 0
    assert abs(info_ep["cv_loss"] - info_dp["cv_loss"]) < 1e-4 * info_dp["cv_loss"]

    # resume: one epoch, then the second from its checkpoint (each rank's optimizer state)
    exp = tmp_path / "resumed"
    first = corpus.overrides(exp, "train.max_epoch=1", *NO_DROPOUT, "train.expert_parallel=2")
    check(run_train(first, nproc=2, timeout=240))
    check(run_train([*first, "train.max_epoch=2"], nproc=2, timeout=240))
    _close(load_model_state(exp / "final.pt"), ep)

    # its resume state belongs to two ranks with two experts groups: plain resume is refused
    again = corpus.overrides(exp, "train.max_epoch=3", *NO_DROPOUT)
    proc = run_train(again, nproc=2, timeout=240)
    assert proc.returncode != 0
    assert "trained with train.expert_parallel=2; resume it with the same setting" in proc.stderr


def test_expert_parallel_refusals(tmp_path):
    corpus = write_corpus(tmp_path / "data", 2)
    for extra, message in (
        (["model/ffn=moe", "train.expert_parallel=2"], "must divide the world size 1"),
        (["train.expert_parallel=1", "train.expert_parallel=0"], "must be >= 1"),
        (["model/ffn=moe", "optim.name=step", "train.expert_parallel=2"], "optim.name=step"),
    ):
        proc = run_train(corpus.overrides(tmp_path / "exp", *extra), timeout=120)
        assert proc.returncode != 0 and message in proc.stderr, proc.stderr[-2000:]


WORLD, EP = 4, 2  # two expert-parallel groups of two ranks: every expert has a replica


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.ff = MoEFFNLayer(8, 16, 0.0, torch.nn.SiLU(), 4, 2)
        torch.nn.init.normal_(self.ff.gate.weight, std=1.0)
        for e, expert in enumerate(self.ff.experts):  # as QAT/sparsity buffers would be
            expert.register_buffer("tag", torch.tensor(float(e)))

    def forward(self, x):
        return self.ff(x)


def _frames(rank: int) -> torch.Tensor:
    return torch.randn(6 + rank, 8, generator=torch.Generator().manual_seed(100 + rank))


def _loss(y: torch.Tensor, rank: int) -> torch.Tensor:
    w = torch.randn(y.shape, generator=torch.Generator().manual_seed(200 + rank))
    return (y * w).sum()


def _group_worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        net = _Net()
        ep = ExpertParallel(net, EP, DistContext(rank, WORLD), "torch_ddp", "adam")
        _loss(net(_frames(rank)), rank).backward()
        for p in ep.dense_params:  # what DDP does to the replicated weights
            dist.all_reduce(p.grad)
            p.grad.div_(WORLD)
        ep.sync_grads()
        norm = ep.clip_grads(1e-3)  # clips: every gradient scaled by 1e-3 / norm
        grads = {n: p.grad.clone() for n, p in net.named_parameters()}
        torch.save({"names": ep.names, "grads": grads, "norm": norm,
                    "full": ep.full_state(net)}, f"{out}/rank{rank}.pt")  # fmt: skip
    finally:
        dist.destroy_process_group()


def test_two_groups_average_expert_gradients_over_replicas(tmp_path):
    mp.spawn(_group_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    # reference: one process, every expert, the mean of the ranks' losses (DDP's average)
    ref = _Net()
    (sum(_loss(ref(_frames(r)), r) for r in range(WORLD)) / WORLD).backward()
    norm = torch.nn.utils.get_total_norm([p.grad for p in ref.parameters()])
    clip = 1e-3 / float(norm)
    for r, got in enumerate(ranks):
        own = {2 * (r % EP), 2 * (r % EP) + 1}  # rank r and r + 2 hold the same experts
        assert sorted(got["names"]) == sorted(
            f"ff.experts.{e}.{k}" for e in own for k in ("w_1.weight", "w_1.bias", "w_2.weight",
                                                          "w_2.bias", "tag")
        )  # fmt: skip
        assert got["norm"] == pytest.approx(float(norm), rel=1e-5)
        for name, grad in got["grads"].items():
            expected = dict(ref.named_parameters())[name].grad * clip
            torch.testing.assert_close(grad, expected, atol=1e-7, rtol=1e-4, msg=name)
    assert list(ranks[0]["full"]) == list(ref.state_dict())  # whole, in the model's order
    assert all(got["full"] is None for got in ranks[1:])
    for k, v in ref.state_dict().items():
        torch.testing.assert_close(ranks[0]["full"][k], v)
