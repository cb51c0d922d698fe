"""Optimizers and learning-rate schedules against their formulas."""

from __future__ import annotations

import io
import math
import threading

import pytest
import torch
from omegaconf import OmegaConf

from wenet_eff.config import OptimConfig
from wenet_eff.train.optim import StepAdam, build_optimizer, build_scheduler


def optim_cfg(**kw):
    return OmegaConf.merge(OmegaConf.structured(OptimConfig), kw)


def lrs(cfg, steps: int, max_steps: int = 0, model_dim: int = 256) -> list[float]:
    """The lr used by each of the first `steps` updates."""
    param = torch.nn.Parameter(torch.zeros(1))
    opt = build_optimizer([param], cfg)
    sched = build_scheduler(opt, cfg, max_steps, model_dim)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_optimizer_names_and_settings():
    p = [torch.nn.Parameter(torch.zeros(2))]
    adam = build_optimizer(p, optim_cfg(name="adam", lr=0.5, betas=[0.8, 0.9], weight_decay=0.1))
    assert type(adam) is torch.optim.Adam
    assert adam.defaults["betas"] == (0.8, 0.9) and adam.defaults["weight_decay"] == 0.1
    assert type(build_optimizer(p, optim_cfg(name="adamw"))) is torch.optim.AdamW
    with pytest.raises(ValueError, match="optim.name"):
        build_optimizer(p, optim_cfg(name="sgd"))


@pytest.mark.parametrize("name", ["adam", "adamw"])
def test_fused_adam_updates_and_resumes_as_the_per_parameter_loop(name):
    # the fused kernel is a speed choice only: the same updates up to float rounding, and a
    # checkpoint of the plain optimizer (written before it was fused) resumes into it
    torch.manual_seed(0)
    start = [torch.randn(7, 5), torch.randn(5)]
    cfg = optim_cfg(name=name, lr=0.01, weight_decay=0.1)
    fused_params = [torch.nn.Parameter(t.clone()) for t in start]
    plain_params = [torch.nn.Parameter(t.clone()) for t in start]
    fused = build_optimizer(fused_params, cfg)
    plain = type(fused)(plain_params, lr=0.01, betas=fused.defaults["betas"],
                        eps=fused.defaults["eps"], weight_decay=0.1, foreach=False)  # fmt: skip
    for update in range(6):
        if update == 3:  # resume the fused one from the plain one's state
            fused = build_optimizer(fused_params, cfg)
            saved = io.BytesIO()  # as a checkpoint file holds it
            torch.save(plain.state_dict(), saved)
            saved.seek(0)
            fused.load_state_dict(torch.load(saved))
            assert fused.param_groups[0]["fused"] and not plain.param_groups[0]["fused"]
            for a, b in zip(fused_params, plain_params, strict=True):
                a.data.copy_(b.data)
        grads = [torch.randn_like(t) for t in start]
        for params, opt in ((fused_params, fused), (plain_params, plain)):
            for p, g in zip(params, grads, strict=True):
                p.grad = g.clone()
            opt.step()
        for a, b in zip(fused_params, plain_params, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    assert float(fused.state[fused_params[0]]["step"]) == 6


def test_warmuplr_is_wenets_formula():
    lr, warmup = 0.002, 10
    got = lrs(optim_cfg(lr=lr, warmup_steps=warmup, scheduler="warmuplr"), 40)
    for i, value in enumerate(got):
        n = i + 1
        assert value == pytest.approx(lr * warmup**0.5 * min(n**-0.5, n * warmup**-1.5))
    assert max(got) == pytest.approx(lr) and got.index(max(got)) == warmup - 1


def test_noam_scales_by_model_dim():
    got = lrs(optim_cfg(lr=5.0, warmup_steps=4, scheduler="noam"), 10, model_dim=64)
    for i, value in enumerate(got):
        n = i + 1
        assert value == pytest.approx(5.0 * 64**-0.5 * min(n**-0.5, n * 4**-1.5))


def test_cosine_warms_up_then_reaches_min_lr():
    cfg = optim_cfg(lr=1.0, min_lr=0.1, warmup_steps=4, scheduler="cosine", total_steps=14)
    got = lrs(cfg, 20)
    assert got[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert got[8] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 5 / 10)))
    assert got[13:] == pytest.approx([0.1] * 7)
    assert all(a >= b for a, b in zip(got[3:], got[4:], strict=False))
    # total_steps 0 falls back to train.max_steps
    assert lrs(optim_cfg(lr=1.0, warmup_steps=0, scheduler="cosine"), 3, max_steps=2)[2] == 0.0
    with pytest.raises(ValueError, match="optim.total_steps"):
        lrs(optim_cfg(warmup_steps=10, scheduler="cosine"), 1)


def test_constant_after_warmup_and_unknown_names():
    assert lrs(optim_cfg(lr=1.0, warmup_steps=2, scheduler="constant"), 4) == [0.5, 1, 1, 1]
    assert lrs(optim_cfg(lr=1.0, warmup_steps=0, scheduler="constant"), 2) == [1, 1]
    with pytest.raises(ValueError, match="optim.scheduler"):
        lrs(optim_cfg(scheduler="step"), 1)


def test_step_switch_statistic_summed_over_shards_is_the_whole_models():
    # DeepSpeed ZeRO: each rank's STEP optimizer steps a shard of the parameters, and `reduce`
    # sums the switch statistic over the shards (a collective: two threads at a barrier here)
    g = torch.Generator().manual_seed(0)
    grads = [torch.randn(64, generator=g) for _ in range(120)]

    def step_adam(param: torch.nn.Parameter) -> StepAdam:
        return StepAdam([param], lr=1e-3, betas=(0.9, 0.9), eps=1e-8, weight_decay=0.01,
                        window=5, threshold=0.05, min_steps=10, max_steps=500)  # fmt: skip

    whole = torch.nn.Parameter(torch.zeros(64))
    reference = step_adam(whole)
    for grad in grads:
        whole.grad = grad.clone()
        reference.step()
    shards = [torch.nn.Parameter(torch.zeros(32)) for _ in range(2)]
    optimizers = [step_adam(p) for p in shards]
    barrier, posted = threading.Barrier(2, timeout=30), [[0.0, 0.0], [0.0, 0.0]]

    def train_shard(i: int) -> None:
        def reduce(values: list[float]) -> list[float]:
            posted[i] = values
            barrier.wait()
            summed = [a + b for a, b in zip(*posted, strict=True)]
            barrier.wait()  # both have read before either posts again
            return summed

        optimizers[i].reduce = reduce
        for grad in grads:
            shards[i].grad = grad[32 * i : 32 * (i + 1)].clone()
            optimizers[i].step()

    threads = [threading.Thread(target=train_shard, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    head = reference.param_groups[0]
    assert 10 <= head["switch_step"] < len(grads)  # it switched, then learned masks
    for opt in optimizers:
        assert opt.param_groups[0]["switch_step"] == head["switch_step"]
        assert opt.param_groups[0]["changes"] == pytest.approx(head["changes"], rel=1e-6)
    torch.testing.assert_close(torch.cat([p.detach() for p in shards]), whole.detach())
