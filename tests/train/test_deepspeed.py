"""DeepSpeed ZeRO on CPU (DeepSpeed's CPU accelerator, gloo) under torchrun."""

from __future__ import annotations

import json

import pytest
import torch

import wenet_eff
from tests.train.helpers import REPO, check, run_train
from wenet_eff.config import load_config
from wenet_eff.train import checkpoint as ckpt
from wenet_eff.train.dist import deepspeed_config
from wenet_eff.weights import load_model_state

pytest.importorskip("deepspeed")

CONF = REPO / "recipes" / "mini" / "s0" / "conf"  # the ZeRO configs users run


def ds_args(stage: int, *extra: str) -> list[str]:
    return [
        "train.train_engine=deepspeed",
        f"train.deepspeed_config={CONF / f'ds_stage{stage}.json'}",
        *extra,
    ]


@pytest.mark.heavy
def test_stage2_checkpoints_plain_weights_and_resumes_after_kill_9(corpus, tmp_path):
    run = ds_args(2, "train.max_epoch=2", "train.accum_grad=2", "train.save_interval=3")
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    check(run_train(corpus.overrides(whole, *run), nproc=1))
    killed = run_train(corpus.overrides(broken, *run), nproc=1, module="tests.train.hooks",
                       env={"KILL_AT_STEP": "3"})  # fmt: skip
    assert killed.returncode != 0 and (broken / "step_3.yaml").exists()
    assert (broken / "deepspeed" / "step_3").is_dir()
    resumed = run_train(corpus.overrides(broken, *run), nproc=1)
    check(resumed)
    assert "resuming from step_3: epoch 1, step 3" in resumed.stdout + resumed.stderr
    model = wenet_eff.build_model(load_config(broken / "train.yaml"))
    model.load_state_dict(load_model_state(broken / "final.pt"), strict=True)
    a, b = load_model_state(whole / "final.pt"), load_model_state(broken / "final.pt")
    assert (
        ckpt.read_info(broken / "1.yaml")["step"] == ckpt.read_info(whole / "1.yaml")["step"] == 4
    )
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [p.name for p in (broken / "deepspeed").iterdir() if p.is_dir()] == ["1"]


def test_stage1_skips_a_nonfinite_step(corpus, tmp_path):
    proc = run_train(
        corpus.overrides(tmp_path, *ds_args(1, "train.max_epoch=2")),
        nproc=1,
        module="tests.train.hooks",
        env={"NAN_AT_STEP": "2"},
    )
    check(proc)
    info = ckpt.read_info(tmp_path / "1.yaml")
    assert info["step"] == 7 and info["nonfinite_steps"] == 1  # 8 windows, one skipped
    weights = load_model_state(tmp_path / "final.pt")
    assert all(torch.isfinite(w).all() for w in weights.values())


def test_config_is_checked(tmp_path):
    cfg = load_config("mini", ds_args(2, "train.accum_grad=4", "train.grad_clip=1.5"))
    ds = deepspeed_config(cfg)
    assert ds["gradient_accumulation_steps"] == 4 and ds["gradient_clipping"] == 1.5
    bad = tmp_path / "fp16.json"
    bad.write_text(json.dumps({"zero_optimization": {"stage": 2}, "fp16": {"enabled": True}}))
    cfg.train.deepspeed_config = str(bad)
    with pytest.raises(ValueError, match="fp16.enabled.*train.dtype=bf16"):
        deepspeed_config(cfg)
    bad.write_text(json.dumps({"zero_optimization": {"stage": 3}}))
    with pytest.raises(ValueError, match="stage=3"):
        deepspeed_config(cfg)
    cfg.train.deepspeed_config = ""
    with pytest.raises(ValueError, match="train.deepspeed_config"):
        deepspeed_config(cfg)


def test_stage2_two_processes_stay_identical_and_step_switches_on_both_at_once(corpus, tmp_path):
    # STEP (compress=sparse_2_4_step): ZeRO steps each rank's optimizer on its own shard of the
    # parameters, yet the variance change that decides the switch must be the whole model's
    step = ["compress=sparse_2_4_step", "optim.switch_min_steps=0", "optim.switch_window=1"]
    run = ds_args(2, "train.max_epoch=2", "train.accum_grad=2", *step)
    check(run_train(corpus.overrides(tmp_path, *run), nproc=2, module="tests.train.hooks",
                    env={"DUMP_PARAMS": "1"}))  # fmt: skip
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.params.pt") for r in (0, 1))
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    assert ckpt.read_info(tmp_path / "1.yaml")["step"] == 2  # 2 batches per rank and epoch
    optim0, optim1 = (torch.load(tmp_path / f"rank{r}.optim.pt") for r in (0, 1))
    assert len(optim0["changes"]) == 1  # measured from update 2 on
    assert optim0["changes"] == optim1["changes"]
    assert (optim0["phase"], optim0["switch_step"]) == (optim1["phase"], optim1["switch_step"])
