"""Training-stability instruments: linear-output norms, attention logits, a divergence guard.

With a high learning rate the RMS of the outputs of linear layers (QKV, Proj and FC2 first)
grows update by update until training diverges (Rybakov et al. 2024). `OutputNormMonitor`
measures it: on a monitored update it hooks every weight layer built by the `nn.linear`
factory and every attention module, and reports

- `linear_rms/<layer>`: RMS of the layer's output over the update's micro-batches;
- `linear_rms_max/<role>` and `linear_rms_mean/<role>`: over the layers of each role
  (`attn.qkv`, `attn.out`, `ffn.w_1`, `ffn.w_2`, ...);
- `attn_logit_max/<layer>` and `attn_logit_max/all`: the largest attention logit (before any
  softmax capping).

Between monitored updates nothing is hooked, so the cost is a few reductions every
`train.monitor_interval` updates (see `bench.monitor_overhead`).

`DivergenceGuard` decides from the per-update loss (per input frame, so long and short
batches compare) and a monitored update's output RMS whether training is diverging.
`RollbackGuard` runs it in a (distributed) training run (`train.guard`): every rank judges the
same numbers, the resume state of the checkpoint a rollback may need is kept, and on a
divergence it picks the newest checkpoint from before it and sets the newer ones aside as
`NAME.diverged.*` (once; a second divergence, or `train.guard.action=stop`, stops training).
The trainer then reloads that checkpoint with the learning rate x `train.guard.lr_factor`.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
from omegaconf import DictConfig

from wenet_eff.nn.attention import MultiHeadedAttention
from wenet_eff.nn.linear import weight_layers
from wenet_eff.train import checkpoint as ckpt
from wenet_eff.train.dist import DistContext

logger = logging.getLogger("wenet_eff.train")

ADVICE = (
    "Lower optim.lr, raise optim.warmup_steps, or train with a stability option "
    "(stability=qk_norm_cap or stability=qkv_norm)."
)


class TrainingDiverged(RuntimeError):
    """Training cannot go on: too many non-finite steps in a row, or a divergence the guard does
    not roll back. bin/train.py logs the message of this class and its subclasses, and exits 1."""


class OutputNormMonitor:
    """RMS of every weight layer's output and the max attention logit, on chosen updates.

    Args:
        model: the plain model (not the DDP wrapper; hooks on its modules fire either way).
        interval: monitor every `interval`-th update (0: never).

    Use: `arm()` before the micro-batches of a monitored update, `collect()` after it.
    """

    def __init__(self, model: nn.Module, interval: int) -> None:
        if interval < 0:
            raise ValueError(f"train.monitor_interval={interval} must be >= 0")
        self.interval = interval
        self.layers = weight_layers(model)
        self.attention = [
            (name, m) for name, m in model.named_modules() if isinstance(m, MultiHeadedAttention)
        ]
        self.handles: list = []
        self.sums: dict[str, list[torch.Tensor]] = {}
        self.logits: dict[str, list[torch.Tensor]] = {}

    def due(self, update: int) -> bool:
        """Whether update number `update` (1-based) is monitored."""
        return self.interval > 0 and update % self.interval == 0

    @property
    def armed(self) -> bool:
        return bool(self.handles)

    def arm(self) -> None:
        """Hook the layers (idempotent); measurements add up until `collect`."""
        if self.armed:
            return
        for name, layer in self.layers:
            self.handles.append(layer.register_forward_hook(self._hook(name)))
        for name, attn in self.attention:
            attn.record_logits = True
            self.handles.append(attn.register_forward_hook(self._logit_hook(name)))

    def _hook(self, name: str):
        def hook(_module, _inputs, output) -> None:
            if isinstance(output, torch.Tensor) and output.numel():
                y = output.detach().float()
                self.sums.setdefault(name, []).append(
                    torch.stack([y.square().sum(), y.new_tensor(float(y.numel()))])
                )

        return hook

    def _logit_hook(self, name: str):
        def hook(module, _inputs, _output) -> None:
            if module.max_logit is not None:
                self.logits.setdefault(name, []).append(module.max_logit.float())
                module.max_logit = None

        return hook

    def collect(self) -> dict[str, float]:
        """Unhook and return the measurements since `arm` (empty when nothing ran)."""
        for handle in self.handles:
            handle.remove()
        self.handles = []
        for _, attn in self.attention:
            attn.record_logits = False
            attn.max_logit = None
        names = list(self.sums)
        lnames = list(self.logits)
        if not names and not lnames:
            return {}
        # one device sync for everything
        packed = [torch.stack(self.sums[n]).sum(0) for n in names]
        peaks = [torch.stack(self.logits[n]).max() for n in lnames]
        parts = [torch.stack(packed).flatten()] if packed else []
        flat = torch.cat(parts + ([torch.stack(peaks)] if peaks else [])).tolist()
        self.sums, self.logits = {}, {}
        out: dict[str, float] = {}
        roles: dict[str, list[float]] = {}
        role_of = {name: layer.role for name, layer in self.layers}
        for i, name in enumerate(names):
            rms = math.sqrt(flat[2 * i] / max(flat[2 * i + 1], 1.0))
            out[f"linear_rms/{name}"] = rms
            roles.setdefault(role_of[name], []).append(rms)
        for role, values in roles.items():
            out[f"linear_rms_max/{role}"] = max(values)
            out[f"linear_rms_mean/{role}"] = sum(values) / len(values)
        logit_values = flat[2 * len(names) :]
        for name, value in zip(lnames, logit_values, strict=True):
            out[f"attn_logit_max/{name}"] = value
        if logit_values:
            out["attn_logit_max/all"] = max(logit_values)
        return out


def max_linear_rms(values: dict[str, float]) -> float:
    """The largest `linear_rms/...` of a `collect()` result (0 when none)."""
    return max((v for k, v in values.items() if k.startswith("linear_rms/")), default=0.0)


@dataclass
class Verdict:
    """What the guard concluded after an update."""

    diverged: bool
    reason: str = ""
    first_bad_update: int = 0  # the first update of the spike run (its rollback point)


class DivergenceGuard:
    """Loss-spike and runaway-growth detector (`train.guard`, see config.GuardConfig).

    `observe(update, loss_per_frame)` after every update (a non-finite value for a skipped
    one); `observe_norms(update, rms)` after a monitored one. A loss is a spike when it is not
    finite (a skipped update: from the first update on) or above `spike_factor` x the median
    of the last `window` good losses, once `min_history` good ones are known; spikes never enter
    the history, so a sustained divergence cannot raise its own reference. `patience` spikes in
    a row are a divergence.
    """

    def __init__(self, cfg) -> None:
        for key in ("window", "min_history", "patience"):
            if cfg[key] < 1:
                raise ValueError(f"train.guard.{key}={cfg[key]} must be >= 1")
        if cfg.min_history > cfg.window:
            raise ValueError(
                f"train.guard.min_history={cfg.min_history} must be <= train.guard.window="
                f"{cfg.window} (the history holds at most `window` losses)"
            )
        if cfg.spike_factor <= 1.0:
            raise ValueError(f"train.guard.spike_factor={cfg.spike_factor} must be > 1")
        if not 0.0 < cfg.lr_factor < 1.0:
            raise ValueError(f"train.guard.lr_factor={cfg.lr_factor} must be in (0, 1)")
        if cfg.action not in ("rollback", "stop"):
            raise ValueError(f"train.guard.action='{cfg.action}' is not one of rollback, stop")
        self.cfg = cfg
        self.history: deque[float] = deque(maxlen=cfg.window)
        self.run: list[tuple[int, float]] = []  # the current spike run: (update, value)

    def reference(self) -> float | None:
        """The median of the recent good losses, or None while too few are known."""
        if len(self.history) < self.cfg.min_history:
            return None
        return statistics.median(self.history)

    def observe(self, update: int, value: float) -> Verdict:
        ref = self.reference()
        spike = not math.isfinite(value) or (
            ref is not None and value > self.cfg.spike_factor * ref
        )
        if not spike:
            self.run = []
            self.history.append(value)
            return Verdict(False)
        self.run.append((update, value))
        if len(self.run) < self.cfg.patience:
            return Verdict(False)
        shown = ", ".join(f"{v:.4g}" for _, v in self.run)
        ref_text = f"{ref:.4g}" if ref is not None else "n/a"
        return Verdict(
            True,
            f"{len(self.run)} loss spikes in a row at updates {self.run[0][0]}-{update} "
            f"(loss per frame {shown}; median of the last {len(self.history)} good updates "
            f"{ref_text}, spike factor {self.cfg.spike_factor})",
            self.run[0][0],
        )

    def observe_norms(self, update: int, rms: float) -> Verdict:
        limit = self.cfg.max_linear_rms
        if limit > 0 and not rms <= limit:  # a NaN RMS is over any limit
            return Verdict(
                True,
                f"a linear layer's output RMS reached {rms:.4g} at update {update} "
                f"(train.guard.max_linear_rms={limit})",
                update,
            )
        return Verdict(False)

    def reset_run(self) -> None:
        """Forget the spike run (after a rollback); the good history stays."""
        self.run = []


class Diverging(Exception):
    """Raised inside an epoch when the divergence guard fires (on every rank at once)."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.reason)
        self.verdict = verdict


class RollbackGuard:
    """The divergence guard of a training run and the choice of its rollback (`train.guard`).

    Args:
        tcfg: the `train` config (`guard`, `monitor_interval`); with `guard.enabled` false
            every method does nothing.
        exp_dir: the experiment directory.
        ctx: rank and world size (every method is a collective: all ranks call it).
    """

    def __init__(self, tcfg: DictConfig, exp_dir: Path, ctx: DistContext) -> None:
        self.cfg, self.exp_dir, self.ctx = tcfg.guard, exp_dir, ctx
        self.guard = DivergenceGuard(tcfg.guard) if tcfg.guard.enabled else None
        if self.guard is not None and tcfg.guard.max_linear_rms > 0 and not tcfg.monitor_interval:
            raise ValueError(
                "train.guard.max_linear_rms needs train.monitor_interval > 0 (the output "
                "norms are only measured on monitored updates)"
            )

    def watch(self, update: int, loss: float, frames: float, updated: bool, norms: dict) -> None:
        """Judge update number `update` (made or skipped) on the numbers of every rank.

        Args:
            update: its 1-based number.
            loss, frames: this rank's sum of loss x utterances over the update's micro-batches
                with a finite loss, and their input frames.
            updated: whether the model was updated (not: a skipped, non-finite update).
            norms: this rank's `OutputNormMonitor.collect()` of a monitored update, else {}.

        Raises:
            Diverging: on every rank alike, when the guard sees a divergence.
        """
        if self.guard is None:
            return
        loss, frames, bad = self.ctx.sum([loss, frames, float(not updated)])
        verdict = self.guard.observe(update, loss / frames if frames > 0 and not bad else math.nan)
        if not verdict.diverged and norms and updated:
            ranks = self.ctx.gather(max_linear_rms(norms))
            rms = math.nan if any(math.isnan(v) for v in ranks) else max(ranks)  # worst rank
            verdict = self.guard.observe_norms(update, rms)
        if verdict.diverged:
            raise Diverging(verdict)

    def protected(self, step: int) -> list[str]:
        """The checkpoints whose resume state to keep at update `step`: the newest one a
        divergence found from here on could roll back to (step <= `step` - patience) and every
        newer one (each becomes that target later). None with the guard off."""
        if self.guard is None:
            return []
        horizon = step - self.cfg.patience
        listed = [
            (name, int(info.get("step", 0)))
            for name, info in ckpt.list_checkpoints(self.exp_dir)
            if ckpt.has_resume_state(self.exp_dir, name)
        ]
        old = [i for i, (_, saved_step) in enumerate(listed) if saved_step <= horizon]
        return [name for name, _ in listed[old[-1] if old else 0 :]]

    def rollback_target(
        self, verdict: Verdict, rollbacks: int, lr_scale: float
    ) -> tuple[str, dict]:
        """Act on a divergence: choose the checkpoint to roll back to and set the newer ones
        aside, or stop.

        Args:
            verdict: the guard's verdict (`Diverging.verdict`).
            rollbacks, lr_scale: the run's rollbacks so far and its learning-rate factor.

        Returns:
            the newest checkpoint with resume state from before the divergence, and its info.

        Raises:
            TrainingDiverged: with `train.guard.action=stop`, after an earlier rollback, or when
                no such checkpoint exists.
        """
        if self.cfg.action == "stop":
            raise TrainingDiverged(f"training diverged: {verdict.reason}. {ADVICE}")
        if rollbacks >= 1:
            raise TrainingDiverged(
                f"training diverged again after a rollback (learning rate x{lr_scale:g}): "
                f"{verdict.reason}. Stopping. {ADVICE}"
            )
        # the loss of update u is computed with the weights after update u - 1: a checkpoint
        # from before the first bad update's weights has step < first_bad_update - 1
        good = [
            (name, info)
            for name, info in ckpt.list_checkpoints(self.exp_dir)
            if int(info.get("step", 0)) < verdict.first_bad_update - 1
            and ckpt.has_resume_state(self.exp_dir, name)
        ]
        if not good:
            raise TrainingDiverged(
                f"training diverged: {verdict.reason}, and no checkpoint from before update "
                f"{verdict.first_bad_update - 1} exists to roll back to (set train.save_interval "
                f"so the guard has one). {ADVICE}"
            )
        target, info = good[-1]
        self.ctx.barrier()  # every rank has listed the checkpoints before rank 0 renames any
        if self.ctx.is_main:
            moved = ckpt.set_aside_after(self.exp_dir, target)
            logger.warning(
                "divergence guard: %s. Rolling back to checkpoint %s with the learning rate x%g%s",
                *(verdict.reason, target, self.cfg.lr_factor),
                f"; set aside as *.diverged: {', '.join(moved)}" if moved else "",
            )
        self.ctx.barrier()
        self.guard.reset_run()
        return target, info
