"""Output-norm monitor and divergence guard: what they measure, when they fire, and the
trainer's rollback to the last good checkpoint with a lowered learning rate."""

from __future__ import annotations

import logging
import math

import pytest
import torch
import torch.nn as nn
from omegaconf import OmegaConf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.train.helpers import check, run_train
from tests.train.test_trainer import MeanRegressor, batch, fit
from wenet_eff.config import GuardConfig
from wenet_eff.nn.attention import MultiHeadedAttention, StabilityConfig
from wenet_eff.nn.linear import linear
from wenet_eff.train import checkpoint as ckpt
from wenet_eff.train.stability import DivergenceGuard, OutputNormMonitor
from wenet_eff.train.trainer import TrainingDiverged


class TwoLayers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = linear(8, 8, role="ffn.w_1")
        self.attn = MultiHeadedAttention(2, 8, 0.0, StabilityConfig(softmax_cap=1.0))

    def forward(self, x):
        y = self.fc(x)
        return self.attn(y, y, y, torch.ones(0, 0, 0, dtype=torch.bool))[0]


def test_monitor_measures_output_rms_and_raw_max_logit_then_unhooks():
    model = TwoLayers()
    monitor = OutputNormMonitor(model, interval=5)
    assert [monitor.due(u) for u in (4, 5, 10)] == [False, True, True]
    x1, x2 = torch.randn(2, 3, 8), torch.randn(1, 6, 8)
    monitor.arm()
    model(x1)
    model(x2)  # two micro-batches: one RMS over both
    values = monitor.collect()
    ys = [model.fc(x).detach().flatten() for x in (x1, x2)]
    expected = torch.cat(ys).square().mean().sqrt().item()
    assert values["linear_rms/fc"] == pytest.approx(expected, rel=1e-5)
    assert values["linear_rms_max/ffn.w_1"] == values["linear_rms_mean/ffn.w_1"]
    assert {"linear_rms/attn.linear_q", "linear_rms/attn.linear_out"} <= values.keys()
    # the raw (uncapped) max logit of both forwards
    with torch.no_grad():
        raw = []
        for x in (x1, x2):
            q, k, _ = model.attn.forward_qkv(model.fc(x), model.fc(x), model.fc(x))
            raw.append((q @ k.transpose(-2, -1)).max() / math.sqrt(model.attn.d_k))
    assert values["attn_logit_max/attn"] == pytest.approx(max(raw).item(), rel=1e-5)
    assert values["attn_logit_max/all"] == values["attn_logit_max/attn"]
    # nothing stays hooked: later forwards record nothing
    assert not model.fc._forward_hooks and not model.attn.record_logits
    model(x1)
    assert monitor.collect() == {}


def guard_cfg(**kw):
    return OmegaConf.structured(GuardConfig(enabled=True, **kw))


def test_guard_fires_on_a_run_of_spikes_only():
    guard = DivergenceGuard(guard_cfg(window=10, min_history=4, patience=2, spike_factor=3.0))
    for u in range(1, 5):
        assert not guard.observe(u, 1.0 + 0.1 * u).diverged
    assert not guard.observe(5, 5.0).diverged  # one spike: not yet
    assert not guard.observe(6, 1.2).diverged  # the run is broken
    assert len(guard.history) == 5  # the spike never entered the history
    assert not guard.observe(7, 9.0).diverged
    verdict = guard.observe(8, math.nan)  # non-finite counts as a spike
    assert verdict.diverged and verdict.first_bad_update == 7
    assert "updates 7-8" in verdict.reason


def test_guard_needs_history_before_judging_values_but_not_nans():
    guard = DivergenceGuard(guard_cfg(min_history=3, patience=1))
    assert not guard.observe(1, 100.0).diverged  # no reference yet
    assert guard.observe(2, math.inf).diverged


def test_guard_norm_limit_and_config_errors():
    guard = DivergenceGuard(guard_cfg(max_linear_rms=50.0))
    assert not guard.observe_norms(10, 49.0).diverged
    assert guard.observe_norms(20, 51.0).first_bad_update == 20
    with pytest.raises(ValueError, match="train.guard.spike_factor"):
        DivergenceGuard(guard_cfg(spike_factor=0.5))
    with pytest.raises(ValueError, match="train.guard.action"):
        DivergenceGuard(guard_cfg(action="retry"))
    with pytest.raises(ValueError, match="min_history=60 must be <= train.guard.window=50"):
        DivergenceGuard(guard_cfg(min_history=60))
    assert guard.observe_norms(30, math.nan).diverged


def test_guard_keeps_the_resume_state_of_a_checkpoint_from_before_any_spike_run(tmp_path):
    # saves every 2 updates, patience 3: at step 12, step_8 (<= 12 - 3) and the newer ones keep
    # their state (each newer one becomes the target later); keep_checkpoints=1 deletes the rest
    fit_spiking(tmp_path, set(), "train.save_interval=2", "train.guard.patience=3",
                "train.keep_checkpoints=1")  # fmt: skip
    states = sorted(p.name for p in tmp_path.glob("*.state.pt"))
    assert states == ["0.state.pt", "step_10.state.pt", "step_12.state.pt", "step_8.state.pt"]
    assert [n for n, _ in ckpt.list_checkpoints(tmp_path)] == ["step_8", "step_10", "step_12", "0"]


class Spiking(MeanRegressor):
    """The stand-in whose loss is multiplied by 1000 on its forwards number `spikes`."""

    def __init__(self, spikes: set[int]) -> None:
        super().__init__()
        self.spikes, self.calls = spikes, 0

    def forward(self, *args):
        out = super().forward(*args)
        if self.training:
            self.calls += 1
            if self.calls in self.spikes:
                out["loss"] = out["loss"] * 1000.0
                out["loss_ctc"] = out["loss"]
        return out


GUARD = [
    "train.guard.enabled=true",
    "train.guard.window=10",
    "train.guard.min_history=4",
    "train.guard.patience=2",
    "train.save_interval=3",
    "train.max_epoch=1",
    "train.monitor_interval=0",
]


def fit_spiking(exp_dir, spikes: set[int], *overrides: str):
    import tests.train.test_trainer as t

    original = t.MeanRegressor
    t.MeanRegressor = lambda: Spiking(spikes)  # fit() builds its model by this name
    try:
        return fit(exp_dir, [batch("a", seed=i) for i in range(12)], *GUARD, *overrides)
    finally:
        t.MeanRegressor = original


def test_guard_rolls_back_to_the_last_good_checkpoint_with_a_lower_lr(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="wenet_eff.train"):
        # updates 8-10 spike once; step_9 is saved mid-run, the guard fires at 10
        trainer = fit_spiking(tmp_path, {8, 9, 10}, "train.guard.patience=3")
    assert "Rolling back to checkpoint step_6 with the learning rate x0.5" in caplog.text
    assert "set aside as *.diverged: step_9" in caplog.text
    assert (tmp_path / "step_9.diverged.pt").is_file()
    assert ckpt.read_info(tmp_path / "step_9.diverged.yaml")["rollbacks"] == 0
    assert ckpt.read_info(tmp_path / "step_9.yaml")["rollbacks"] == 1  # written by the replay
    # the target was rewritten at once with the rollback in its resume state
    assert ckpt.read_info(tmp_path / "step_6.yaml")["rollbacks"] == 1
    p = trainer.progress
    assert p.step == 12 and p.rollbacks == 1 and p.lr_scale == 0.5  # all 12 batches trained
    assert trainer.lr == pytest.approx(0.005)  # optim.lr=0.01 (constant) halved
    info = ckpt.read_info(tmp_path / "0.yaml")
    assert info["rollbacks"] == 1 and info["lr_scale"] == 0.5 and info["lr"] == 0.005
    # the halved lr is in the resume state: a rerun in the same dir keeps it
    assert ckpt.load_train_state(tmp_path / "0.state.pt")["scheduler"]["base_lrs"] == [0.005]


def test_guard_stops_when_divergence_repeats_after_the_rollback(tmp_path):
    with pytest.raises(TrainingDiverged, match="again after a rollback"):
        fit_spiking(tmp_path, {8, 9, 10, 11, 12, 13, 14, 15, 16, 17})


def test_guard_without_an_earlier_checkpoint_or_in_stop_mode_stops(tmp_path):
    with pytest.raises(TrainingDiverged, match="no checkpoint from before update 4"):
        fit_spiking(tmp_path / "a", {5, 6}, "train.save_interval=0")
    with pytest.raises(TrainingDiverged, match="training diverged: 2 loss spikes"):
        fit_spiking(tmp_path / "b", {8, 9}, "train.guard.action=stop")


def test_real_model_logs_output_norms_and_max_logits(corpus, tmp_path):
    exp = tmp_path / "exp"
    check(
        run_train(
            corpus.overrides(
                exp, "train.max_epoch=1", "train.monitor_interval=2", "stability=qk_norm_cap"
            )
        )
    )
    events = EventAccumulator(str(exp / "tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert "stability/linear_rms_max/attn.qkv" in tags
    assert "stability/linear_rms/encoder.encoders.0.feed_forward.w_2" in tags
    assert "stability/attn_logit_max/encoder.encoders.0.self_attn" in tags
    steps = [e.step for e in events.Scalars("stability/attn_logit_max/all")]
    assert steps == [2, 4]  # 4 updates, monitored every 2


def test_guard_stops_on_a_runaway_output_rms_at_a_monitored_update(tmp_path):
    import tests.train.test_trainer as t

    class Tagged(MeanRegressor):  # its layer comes from the factory, so the monitor sees it
        def __init__(self) -> None:
            super().__init__()
            self.w = linear(80, 1, role="output")

    original = t.MeanRegressor
    t.MeanRegressor = Tagged
    try:
        with pytest.raises(TrainingDiverged, match="output RMS reached .* at update 4"):
            fit(tmp_path, [batch("a", seed=i) for i in range(6)], *GUARD,
                "train.monitor_interval=4", "train.guard.max_linear_rms=1e-6",
                "train.guard.action=stop")  # fmt: skip
    finally:
        t.MeanRegressor = original
