"""The training loop in-process: accumulation, skipped steps, empty batches, epochs without
updates, stopping and resuming (also after the data order changed).

Most tests use a tiny linear stand-in with the ASR model's call signature, whose updates are
exact to compare; the last ones train the real tiny U2++ on real batches.
"""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn as nn
from omegaconf import DictConfig
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import wenet_eff
from wenet_eff.config import load_config, resolve_vocab_size
from wenet_eff.data.dataset import build_dataloader
from wenet_eff.data.tokenizer import build_tokenizer
from wenet_eff.train import checkpoint as ckpt
from wenet_eff.train.dist import DistContext
from wenet_eff.train.trainer import NothingTrained, Trainer, TrainingDiverged
from wenet_eff.weights import load_model_state


class MeanRegressor(nn.Module):
    """loss_i = (w . mean_t x_i - |text_i|)^2 averaged over utterances; NaN for keys 'bad*'
    (the trainer passes no keys, so bad batches carry NaN features)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Linear(80, 1)

    def forward(self, speech, speech_lengths, text, text_lengths):
        mask = torch.arange(speech.size(1))[None, :, None] < speech_lengths[:, None, None]
        mean = (speech * mask).sum(1) / speech_lengths[:, None]
        loss = ((self.w(mean).squeeze(-1) - text_lengths.float()) ** 2).mean()
        return {"loss": loss, "loss_ctc": loss, "loss_att": None}


class Epochs:
    """A stand-in dataset: only remembers the epoch."""

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch


def batch(name: str, n: int = 2, frames: int = 6, seed: int = 0, skipped=None) -> dict:
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(n, frames, 80, generator=g)
    if name.startswith("bad"):
        feats[0, 0, 0] = float("nan")
    return {
        "keys": [f"{name}{i}" for i in range(n)],
        "feats": feats,
        "feats_lengths": torch.full((n,), frames),
        "target": torch.randint(1, 5, (n, 3), generator=g),
        "target_lengths": torch.tensor([3, 2, 1, 3][:n]),
        "skipped": skipped or {},
    }


def empty(skipped: dict) -> dict:
    return {
        "keys": [],
        "feats": torch.zeros(0, 0, 80),
        "feats_lengths": torch.zeros(0, dtype=torch.int64),
        "target": torch.zeros(0, 0, dtype=torch.int64),
        "target_lengths": torch.zeros(0, dtype=torch.int64),
        "skipped": skipped,
    }


def cat(*batches: dict) -> dict:
    return {
        "keys": sum((b["keys"] for b in batches), []),
        **{
            k: torch.cat([b[k] for b in batches])
            for k in ("feats", "feats_lengths", "target", "target_lengths")
        },
        "skipped": {},
    }


def stand_in_cfg(exp_dir, *overrides: str) -> DictConfig:
    return load_config(
        "mini",
        [
            f"train.exp_dir={exp_dir}",
            "model.vocab_size=5",
            "optim.scheduler=constant",
            "optim.warmup_steps=0",
            "optim.lr=0.01",
            "train.log_interval=1",
            *overrides,
        ],
    )


def fit(exp_dir, loader: list[dict], *overrides: str, cv: list[dict] | None = None) -> Trainer:
    torch.manual_seed(0)
    trainer = Trainer(
        stand_in_cfg(exp_dir, *overrides),
        MeanRegressor(),
        loader,
        Epochs(),
        cv or [loader[0]],
        DistContext(),
    )
    trainer.fit()
    return trainer


def record_grads(trainer: Trainer) -> list[torch.Tensor]:
    """Record the weight gradient each optimizer step is given."""
    seen = []
    trainer.engine.optimizer.register_step_pre_hook(
        lambda *_: seen.append(trainer.model.w.weight.grad.clone())
    )
    return seen


def test_accumulation_equals_one_big_batch(tmp_path):
    a, b = batch("a", seed=1), batch("b", seed=2)
    runs = {}
    for name, loader, accum in (("accum", [a, b], 2), ("big", [cat(a, b)], 1)):
        torch.manual_seed(0)
        cfg = stand_in_cfg(tmp_path / name, f"train.accum_grad={accum}", "train.max_epoch=1")
        trainer = Trainer(cfg, MeanRegressor(), loader, Epochs(), [a], DistContext())
        runs[name] = (trainer, record_grads(trainer))
        trainer.fit()
    (t_acc, g_acc), (t_big, g_big) = runs["accum"], runs["big"]
    assert t_acc.progress.step == t_big.progress.step == 1
    torch.testing.assert_close(g_acc[0], g_big[0])
    torch.testing.assert_close(t_acc.model.w.weight, t_big.model.w.weight)


def test_epoch_end_closes_a_partial_window(tmp_path):
    trainer = fit(
        tmp_path, [batch("a"), batch("b"), batch("c")], "train.accum_grad=2", "train.max_epoch=2"
    )
    assert trainer.progress.step == 4  # (2 + 1 micro-batches) per epoch -> 2 updates
    assert [n for n, _ in ckpt.list_checkpoints(tmp_path)] == ["0", "1"]
    assert ckpt.read_info(tmp_path / "1.yaml")["step"] == 4


def test_nonfinite_loss_skips_the_step(tmp_path, caplog):
    good = [batch("a", seed=1), batch("c", seed=3)]
    with caplog.at_level(logging.WARNING, logger="wenet_eff.train"):
        skipping = fit(tmp_path / "skip", [good[0], batch("bad"), good[1]], "train.max_epoch=1")
    clean = fit(tmp_path / "clean", good, "train.max_epoch=1")
    assert skipping.progress.step == clean.progress.step == 2
    assert skipping.progress.nonfinite_total == 1 and skipping.progress.nonfinite_run == 0
    assert torch.equal(skipping.model.w.weight, clean.model.w.weight)  # no trace of the bad step
    assert "['bad0', 'bad1']" in caplog.text and "step 2 skipped" in caplog.text
    assert ckpt.read_info(tmp_path / "skip" / "0.yaml")["nonfinite_steps"] == 1


def test_repeated_nonfinite_losses_stop_training(tmp_path):
    with pytest.raises(TrainingDiverged, match=r"3 consecutive.*train.max_nan_steps=3"):
        fit(tmp_path, [batch("bad", seed=i) for i in range(5)], "train.max_nan_steps=3")


def test_empty_batches_only_carry_skip_counts(tmp_path, caplog):
    loader = [empty({"too_long": 2}), batch("a"), empty({"unreadable": 1, "too_long": 1})]
    cv = [empty({"too_short": 2}), batch("v", skipped={"unknown_token": 1})]
    with caplog.at_level(logging.INFO, logger="wenet_eff.train"):
        trainer = fit(tmp_path, loader, "train.max_epoch=1", cv=cv)
    assert trainer.progress.step == 1
    assert "skipped 4 utterances: too_long=3, unreadable=1" in caplog.text
    assert "cv skipped 3 utterances: too_short=2, unknown_token=1" in caplog.text
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    scalars = {tag: events.Scalars(tag)[-1].value for tag in events.Tags()["scalars"]}
    assert scalars["data/skipped_total"] == 4 and scalars["data/cv_skipped_total"] == 3
    assert scalars["data/cv_skipped/too_short"] == 2


def test_an_epoch_without_updates_stops_training(tmp_path):
    # every utterance skipped (e.g. a units.txt that does not fit the text): no checkpoint
    loader = [empty({"unknown_token": 4}), empty({"unknown_token": 3, "missing_file": 1})]
    with pytest.raises(NothingTrained) as info:
        fit(tmp_path, loader, "train.max_epoch=2")
    assert isinstance(info.value, TrainingDiverged)  # bin/train.py: logged, exit 1
    message = str(info.value)
    assert "epoch 0 ended without a single optimizer update" in message
    assert "8 utterances: missing_file=1, unknown_token=7" in message
    assert "tokenizer.units" in message and "data.train_data" in message
    assert not ckpt.list_checkpoints(tmp_path) and not (tmp_path / "final.pt").exists()


def test_max_steps_stops_mid_epoch_and_resume_continues_exactly(tmp_path):
    loader = [batch(name, seed=i) for i, name in enumerate("abcd")]
    stopped = fit(tmp_path / "run", loader, "train.max_epoch=1", "train.max_steps=3")
    assert stopped.progress.step == 3
    assert [n for n, _ in ckpt.list_checkpoints(tmp_path / "run")] == ["step_3"]
    assert (tmp_path / "run" / "final.pt").resolve().name == "step_3.pt"
    resumed = fit(tmp_path / "run", loader, "train.max_epoch=1")
    whole = fit(tmp_path / "whole", loader, "train.max_epoch=1")
    assert resumed.progress.step == whole.progress.step == 4
    assert torch.equal(resumed.model.w.weight, whole.model.w.weight)
    assert (tmp_path / "run" / "final.pt").resolve().name == "0.pt"


@pytest.mark.parametrize(
    "change", ["data.batch_size=3", "data.num_workers=5", "data.seed=1", "data.train_data=b.list"]
)
def test_resume_after_a_data_order_change_restarts_the_epoch(tmp_path, caplog, change):
    loader = [batch(name, seed=i) for i, name in enumerate("abcd")]
    fit(tmp_path, loader, "train.max_epoch=1", "train.max_steps=3")
    with caplog.at_level(logging.INFO, logger="wenet_eff.train"):
        resumed = fit(tmp_path, loader, "train.max_epoch=1", change)
    key, value = change.split("=")
    assert f"{key}: " in caplog.text and f" -> {value}" in caplog.text
    assert "epoch 0 restarts from its first batch" in caplog.text
    assert "resuming from step_3: epoch 0, step 3, 0 batches into the epoch" in caplog.text
    assert resumed.progress.step == 3 + 4  # all 4 batches of epoch 0 again, none skipped


def test_init_checkpoint_loads_weights_only(tmp_path):
    source = MeanRegressor()
    ckpt.atomic_save(source.state_dict(), tmp_path / "init.pt")
    cfg = stand_in_cfg(tmp_path / "exp", f"train.init_checkpoint={tmp_path / 'init.pt'}")
    trainer = Trainer(cfg, MeanRegressor(), [batch("a")], Epochs(), [batch("a")], DistContext())
    assert torch.equal(trainer.model.w.weight, source.w.weight) and trainer.progress.step == 0
    ckpt.atomic_save({"other.weight": torch.zeros(1)}, tmp_path / "wrong.pt")
    with pytest.raises(ValueError, match="train.init_checkpoint .*wrong.pt does not fit"):
        fit(tmp_path / "exp2", [batch("a")], f"train.init_checkpoint={tmp_path / 'wrong.pt'}")


def real_setup(corpus, exp_dir, *extra: str):
    cfg = load_config("mini", corpus.overrides(exp_dir, *extra))
    cfg.model.vocab_size = resolve_vocab_size(cfg)
    tokenizer = build_tokenizer(cfg.tokenizer)
    train_loader, train_set = build_dataloader(cfg.data, cfg.data.train_data, tokenizer, True)
    cv_loader, _ = build_dataloader(cfg.data, cfg.data.cv_data, tokenizer, False)
    torch.manual_seed(0)
    model = wenet_eff.build_model(cfg)
    return cfg, Trainer(cfg, model, train_loader, train_set, cv_loader, DistContext())


def test_real_model_checkpoints_and_tensorboard(corpus, tmp_path):
    cfg, trainer = real_setup(corpus, tmp_path, "train.max_epoch=2")
    trainer.fit()
    assert trainer.progress.step == 8  # 16 utterances in batches of 4, two epochs
    fresh = wenet_eff.build_model(cfg)
    fresh.load_state_dict(load_model_state(tmp_path / "final.pt"), strict=True)
    info = ckpt.read_info(tmp_path / "1.yaml")
    assert info["epoch"] == 1 and info["kind"] == "epoch" and info["step"] == 8
    # WeNet's average_model.py reads these: the checkpoint's name and its cv losses
    assert info["tag"] == "1" and info["loss_dict"]["loss"] == info["cv_loss"]
    assert {"lr", "cv_loss", "cv_loss_ctc", "cv_loss_att", "train_loss", "save_time"} <= info.keys()
    assert info["cv_loss"] > 0
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss", "train/loss_ctc", "train/loss_att", "train/lr", "train/grad_norm"} <= tags
    assert {
        "train/frames_per_s",
        "cv/loss",
        "cv/loss_ctc",
        "cv/loss_att",
        "data/skipped_total",
    } <= tags


def test_real_model_bf16(corpus, tmp_path):
    _, trainer = real_setup(corpus, tmp_path, "train.dtype=bf16", "train.max_steps=2")
    trainer.fit()
    assert trainer.progress.step == 2
    assert ckpt.read_info(tmp_path / "step_2.yaml")["cv_loss"] > 0


def test_dtype_auto_is_resolved_at_the_start_and_logged(corpus, tmp_path, caplog):
    # the tiny model is far narrower than bf16 needs to win, on any device
    with caplog.at_level("INFO", logger="wenet_eff.train"):
        _, trainer = real_setup(corpus, tmp_path, "train.dtype=auto")
    assert not trainer.bf16
    assert "training in fp32 (train.dtype=auto: " in caplog.text
    with pytest.raises(ValueError, match=r"train\.dtype: 'fp16'"):
        real_setup(corpus, tmp_path / "bad", "train.dtype=fp16")


def test_moe_model_trains_and_logs_expert_usage(corpus, tmp_path):
    overrides = ["model/ffn=moe", "model.moe.load_balance_weight=0.01", "train.max_steps=4"]
    _, trainer = real_setup(corpus, tmp_path, *overrides, "train.log_interval=2")
    gate = trainer.model.encoder.encoders[0].feed_forward.gate.weight
    before = gate.detach().clone()
    trainer.fit()
    assert trainer.progress.step == 4
    assert not torch.equal(gate, before)  # the router learns (no auxiliary loss needed for it)
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train/loss_moe", "moe/max_load"} <= tags
    usage = [t for t in tags if t.startswith("moe_usage/encoder.encoders.0.feed_forward/")]
    assert len(usage) == 8
    total = sum(events.Scalars(t)[-1].value for t in usage)
    assert total == pytest.approx(2.0, abs=1e-4)  # fractions of frames sum to k


def test_qat_model_with_norm_decay_trains_and_logs_its_loss(corpus, tmp_path, caplog):
    overrides = ["compress=qat_int4_rand", "train.max_steps=4", "train.log_interval=2"]
    cfg, trainer = real_setup(corpus, tmp_path, *overrides)
    layer = trainer.model.encoder.encoders[0].self_attn.linear_q
    before = layer.weight.detach().clone()
    with caplog.at_level("INFO", logger="wenet_eff.train"):
        trainer.fit()
    assert trainer.progress.step == 4 and not torch.equal(layer.weight, before)
    assert any(" quant " in r.getMessage() for r in caplog.records)
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert "train/loss_quant" in set(events.Tags()["scalars"])
    # the checkpoint decodes through the same config (quantizers rebuilt by build_model)
    model = wenet_eff.build_model(cfg)
    model.load_state_dict(load_model_state(tmp_path / "final.pt"), strict=True)


def test_step_optimizer_switches_to_2_4_masks_and_logs_it(corpus, tmp_path, caplog):
    overrides = [
        "compress=sparse_2_4_step",
        "optim.switch_min_steps=0",
        "optim.switch_max_steps=3",
        "train.max_steps=5",
    ]
    cfg, trainer = real_setup(corpus, tmp_path, *overrides)
    layer = trainer.model.encoder.encoders[0].feed_forward.w_1
    assert cfg.optim.name == "step" and not layer.sparsifier.active  # dense precondition phase
    with caplog.at_level("INFO", logger="wenet_eff.train"):
        trainer.fit()
    assert trainer.engine.optimizer.param_groups[0]["switch_step"] == 3 and layer.sparsifier.active
    assert any("STEP: precondition phase over after 3 updates" in r.getMessage()
               for r in caplog.records)  # fmt: skip
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert events.Scalars("optim/step_switch")[-1].value == 3
    # a fresh trainer on the same exp dir resumes in the mask-learning phase
    _, again = real_setup(corpus, tmp_path, *overrides)
    assert (
        again.engine.optimizer.masking
        and again.model.encoder.encoders[0].feed_forward.w_1.sparsifier.active
    )
