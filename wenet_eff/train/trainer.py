"""The training loop of a U2++ model: one file to read a training step top to bottom.

Per micro-batch: forward (in bf16 autocast where `train.dtype` says so; `auto` is resolved once
at the start and logged, see precision.py), backward of loss / accum_grad. At the end
of an accumulation window (`train.accum_grad` micro-batches, or fewer at the end of an
epoch): clip to `train.grad_clip`, then update the model and scheduler, unless some rank
saw a non-finite loss or the gradient norm is not finite; such a step is skipped, logged
with its batch keys and counted, and `train.max_nan_steps` in a row stop training. How
gradients accumulate, clip and update, and what checkpoints keep of the optimizer, is the
engine's (engine.py: plain/DDP, expert parallel, DeepSpeed); this loop is the same for all.

Ranks stay in lock step: before each micro-batch every rank says whether it still has one
(all-reduced), and an epoch ends when any rank runs out, so uneven data never hangs DDP.
Knowing one batch ahead also tells the last micro-batch of an epoch, which closes the window.

An epoch that ends without a single micro-batch trained, so without an update (every
utterance skipped by the data pipeline: wrong units.txt, text normalisation, audio paths),
stops training with the skip counts; so does a validation without a single cv utterance with a
finite loss, once its checkpoint is written (cv_loss null). Epochs whose windows were all
non-finite are left to `train.max_nan_steps`.

Stability (see stability.py): every `train.monitor_interval` updates the output RMS of every
weight layer and the max attention logit go to TensorBoard (`stability/...`). With
`train.guard.enabled`, a divergence (loss spikes in a row, or a runaway output RMS) rolls the
run back to the newest checkpoint from before it with the learning rate lowered
(`train.guard.lr_factor`), once: the checkpoints written after it are renamed `NAME.diverged.*`
(kept, but never resumed from), and a second divergence stops training with TrainingDiverged.

Checkpoints (see checkpoint.py): `N` after epoch N, `step_S` every `train.save_interval`
updates; each records how many loader batches every rank consumed in the epoch, so a rerun
resumes from the newest one exactly there (see resume.py: the data is deterministic given its
settings and the epoch; when those changed, the epoch restarts from its first batch).
"""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from wenet_eff import compress
from wenet_eff.nn.moe import moe_layers
from wenet_eff.train import checkpoint as ckpt
from wenet_eff.train import resume
from wenet_eff.train.dist import DistContext
from wenet_eff.train.engine import build_engine
from wenet_eff.train.optim import StepAdam
from wenet_eff.train.precision import resolve_dtype
from wenet_eff.train.reporting import LOSS_KEYS, IntervalStats, Reporter, format_skips, loss_values
from wenet_eff.train.resume import EpochState, Progress
from wenet_eff.train.stability import (
    Diverging,
    OutputNormMonitor,
    RollbackGuard,
    TrainingDiverged,
    Verdict,
)
from wenet_eff.train.validate import batch_forward, cv_losses

logger = logging.getLogger("wenet_eff.train")


class NothingTrained(TrainingDiverged):
    """An epoch ended without a single optimizer update on any rank: no utterance of it
    reached the model."""


class NothingValidated(TrainingDiverged):
    """A validation had no cv utterance with a finite loss on any rank: training would go on
    with cv_loss null, which nothing can select checkpoints by."""


@dataclass
class _Pulled:
    batch: dict | None  # None: this rank's loader is exhausted
    position: int  # loader batches consumed once this batch is used
    skipped: Counter  # skipped-utterance counts carried by it (and empty batches before it)


@dataclass
class _Window:
    """The accumulation window in progress, on this rank."""

    batches: int = 0  # micro-batches so far
    bad: bool = False  # one of them had a non-finite loss
    loss: float = 0.0  # sum of loss x utterances over those with a finite loss
    frames: float = 0.0  # and their input frames


class Trainer:
    """Trains `model` on `train_loader`, validating on `cv_loader` after every epoch.

    Args:
        cfg: the whole resolved config (train, optim, model, data).
        model: the ASR model; `model(feats, feats_lengths, target, target_lengths)` returns
            {"loss", "loss_ctc", "loss_att"}.
        train_loader, train_set: training batches and the dataset behind them (`set_epoch`).
        cv_loader: validation batches (this rank's share).
        ctx: rank, world size and device from `dist.init_distributed`.
    """

    def __init__(
        self,
        cfg: DictConfig,
        model: torch.nn.Module,
        train_loader: DataLoader,
        train_set: Any,
        cv_loader: DataLoader,
        ctx: DistContext,
    ) -> None:
        tcfg = cfg.train
        dtype, why = resolve_dtype(tcfg.dtype, cfg.model.encoder.output_size, ctx.device)
        if ctx.is_main:
            logger.info("training in %s (train.dtype=%s: %s)", dtype, tcfg.dtype, why)
        self.cfg, self.tcfg, self.ctx = cfg, tcfg, ctx
        self.exp_dir = Path(tcfg.exp_dir)
        self.train_loader, self.train_set, self.cv_loader = train_loader, train_set, cv_loader
        self.bf16 = dtype == "bf16"
        self.model = model.to(ctx.device)  # the plain module: what N.pt holds
        self.progress = Progress()
        self.epoch_state = EpochState()
        self.resume_rng: dict | None = None
        self.data_order = resume.data_order(cfg, ctx.world_size)
        self.window = _Window()
        self.guard = RollbackGuard(tcfg, self.exp_dir, ctx)

        resume_from = resume.resume_point(self.exp_dir, ctx)
        if resume_from:
            saved = ckpt.load_resumable(self.model, self.exp_dir, resume_from)
        elif tcfg.init_checkpoint:
            # a float checkpoint fine-tunes with QAT: quantizer state starts from its weights
            derived = compress.load_weights(
                self.model, tcfg.init_checkpoint, "train.init_checkpoint", training=True
            )
            if ctx.is_main:
                logger.info(
                    "weights initialised from %s%s",
                    tcfg.init_checkpoint,
                    " (float weights: quantizer state derived from them)" if derived else "",
                )
        # whole weights are loaded: the engine may now shard them (expert parallelism)
        self.engine = build_engine(cfg, self.model, ctx)
        self.norms = OutputNormMonitor(self.model, tcfg.monitor_interval)
        self.interval = IntervalStats(moe_layers(self.model))
        if resume_from:
            self._resume(resume_from, saved)
        self.report = Reporter(self.exp_dir, ctx, self.progress.step + 1 if resume_from else None)
        if isinstance(self.engine.optimizer, StepAdam):
            self.engine.optimizer.on_switch = self._step_switched
        self._follow_step_phase()

    def _follow_step_phase(self) -> None:
        """STEP: N:M masks are on in its mask-learning phase (also after a resume or rollback)."""
        if isinstance(self.engine.optimizer, StepAdam):
            compress.set_masking(self.model, self.engine.optimizer.masking)

    def _step_switched(self, update: int) -> None:
        compress.set_masking(self.model, True)
        changes = self.engine.optimizer.param_groups[0]["changes"]
        if self.ctx.is_main:
            logger.info(
                "STEP: precondition phase over after %d updates (variance change %.4f per "
                "update); Adam's variance is frozen and N:M masks are on from here",
                update,
                changes[-1] if changes else float("nan"),
            )
        self.report.scalars("optim", {"step_switch": float(update)}, update)

    # ------------------------------------------------------------------ the loop

    def fit(self) -> None:
        """Train until `train.max_epoch` epochs or `train.max_steps` updates, then link final.pt."""
        try:
            while self.progress.epoch < self.tcfg.max_epoch and not self._steps_done():
                try:
                    self._train_epoch(self.progress.epoch)
                except Diverging as diverging:
                    self._roll_back(diverging.verdict)
        finally:
            self.report.close()
        if self.ctx.is_main:
            done = ckpt.list_checkpoints(self.exp_dir)
            if done:
                ckpt.link_final(self.exp_dir, done[-1][0])
                logger.info("final.pt -> %s.pt", done[-1][0])

    def _train_epoch(self, epoch: int) -> None:
        self.train_set.set_epoch(epoch)
        self.engine.train()
        state = self.epoch_state
        # RNG states come back where they were saved: before the epoch's loader at an epoch
        # boundary, after it (creating a loader iterator draws from torch's RNG) within one
        if self.resume_rng is not None and state.position == 0:
            ckpt.set_rng_state(self.resume_rng)
            self.resume_rng = None
        batches = iter(self.train_loader)
        for _ in range(state.position):  # already trained on before the restart
            next(batches, None)
        if self.resume_rng is not None:
            ckpt.set_rng_state(self.resume_rng)
            self.resume_rng = None
        self.report.start_epoch(epoch, state.position)
        self.interval.reset()
        mark = time.perf_counter()

        cur = self._pull(batches, state.position)
        cur_ok = self.ctx.all_true(cur.batch is not None)
        stopped = False
        while cur_ok:
            nxt = self._pull(batches, cur.position)
            nxt_ok = self.ctx.all_true(nxt.batch is not None)
            state.position = cur.position
            state.skipped.update(cur.skipped)
            state.batches += 1
            self.window.batches += 1
            boundary = self.window.batches == self.tcfg.accum_grad or not nxt_ok
            if self.norms.due(self.progress.step + 1):
                self.norms.arm()
            self._train_batch(cur.batch, epoch, boundary)
            self.report.batch_done()
            cur, cur_ok = nxt, nxt_ok
            if not boundary:
                continue
            window, self.window = self.window, _Window()
            updated, grad_norm = self.engine.step(self.ctx.any_true(window.bad))
            self._watch(window, updated)
            if not updated:
                self._count_nonfinite()
                continue
            self.progress.nonfinite_run = 0
            self.progress.step += 1
            compress.on_update(self.model, self.progress.step)  # pruning schedules
            self.interval.norms.append(grad_norm)
            if self.progress.step % self.tcfg.log_interval == 0:
                self.interval.report(self.report, self.ctx, epoch, self.progress.step, self.lr)
            saving = (
                self.tcfg.save_interval > 0 and self.progress.step % self.tcfg.save_interval == 0
            )
            stopped = self._steps_done() and cur_ok
            if saving or stopped:
                self.progress.train_time_s += time.perf_counter() - mark
                mark = time.perf_counter()
                name = f"step_{self.progress.step}"
                cv, cv_skipped = self._cv()
                self._save(name, epoch, "step", cv)
                self._check_cv(name, cv, cv_skipped)
            if stopped:
                break
        if cur.batch is None:
            state.skipped.update(cur.skipped)
        elif not stopped:
            logger.info(
                "rank %d: other ranks ran out of data; rest of epoch %d unused",
                self.ctx.rank,
                epoch,
            )
        self.report.end_epoch()
        self.progress.train_time_s += time.perf_counter() - mark
        if not stopped:
            self._end_epoch(epoch)

    def _pull(self, batches: Any, position: int) -> _Pulled:
        """This rank's next batch with utterances; empty batches only carry skip counts."""
        skipped: Counter = Counter()
        for batch in batches:
            position += 1
            skipped.update(batch.get("skipped") or {})
            if batch["keys"]:
                return _Pulled(batch, position, skipped)
        return _Pulled(None, position, skipped)

    # ------------------------------------------------------------------ one step

    def _train_batch(self, batch: dict, epoch: int, boundary: bool) -> None:
        """Forward and backward one micro-batch; gradients accumulate until `boundary`."""
        with self.engine.accumulating(boundary):
            out = batch_forward(self.engine.module, batch, self.ctx.device, self.bf16)
            self.engine.backward(out["loss"], boundary)
        losses = loss_values(out)
        self.interval.batch_done()
        if all(math.isfinite(v) for v in losses.values()):
            utts, frames = len(batch["keys"]), int(batch["feats_lengths"].sum())
            self.interval.meter.add(losses, utts, frames)
            self.epoch_state.meter.add(losses, utts, frames)
            self.window.loss += losses["loss"] * utts
            self.window.frames += frames
        else:
            self.window.bad = True
            logger.warning(
                "rank %d epoch %d: non-finite loss %s in batch %s",
                *(self.ctx.rank, epoch, losses, batch["keys"]),
            )

    def _watch(self, window: _Window, updated: bool) -> None:
        """After an update (or a skipped one): report the monitored output norms, and let the
        guard judge it (raises Diverging)."""
        update = self.progress.step + 1  # the number this update has (or would have had)
        values = self.norms.collect() if self.norms.armed else {}
        if values and updated:
            self.report.scalars("stability", values, update)
        self.guard.watch(update, window.loss, window.frames, updated, values)

    def _roll_back(self, verdict: Verdict) -> None:
        """Reload the checkpoint the guard rolls back to, with the learning rate lowered by
        `train.guard.lr_factor` (or stop: the guard raises TrainingDiverged)."""
        self.norms.collect()
        self.report.end_epoch()
        p, factor = self.progress, self.tcfg.guard.lr_factor
        target, info = self.guard.rollback_target(verdict, p.rollbacks, p.lr_scale)
        rollbacks, lr_scale = p.rollbacks + 1, p.lr_scale * factor
        self._resume(target, self.engine.load_resumable(self.exp_dir, target))
        self.progress.rollbacks, self.progress.lr_scale = rollbacks, lr_scale
        self.engine.scale_lr(factor)
        self._follow_step_phase()  # its phase came back with its state
        self.window = _Window()
        self.report.close()
        self.report = Reporter(self.exp_dir, self.ctx, self.progress.step + 1)
        self.report.scalars(
            "train", {"rollback": float(verdict.first_bad_update)}, self.progress.step
        )
        # rewrite the target with the rollback and the lowered lr in its resume state, so a
        # crash from here resumes with them (and never rolls back twice)
        if self.resume_rng is not None:
            ckpt.set_rng_state(self.resume_rng)  # the state saved for the epoch's position
        cv = {k: info.get(f"cv_{k}") for k in LOSS_KEYS}
        train = {k: info.get(f"train_{k}") for k in LOSS_KEYS}
        self._save(target, int(info["epoch"]), ckpt.checkpoint_kind(target, info), cv, train)

    def _count_nonfinite(self) -> None:
        p = self.progress
        p.nonfinite_run += 1
        p.nonfinite_total += 1
        if self.ctx.is_main:
            logger.warning(
                "step %d skipped: non-finite loss or gradient norm (%d in a row, %d in total)",
                p.step + 1,
                p.nonfinite_run,
                p.nonfinite_total,
            )
        self.report.scalars("train", {"nonfinite_steps": float(p.nonfinite_total)}, p.step)
        if p.nonfinite_run >= self.tcfg.max_nan_steps:
            raise TrainingDiverged(
                f"{p.nonfinite_run} consecutive steps had a non-finite loss or gradient norm "
                f"(train.max_nan_steps={self.tcfg.max_nan_steps}) at step {p.step}: training "
                "diverged. Lower optim.lr, raise optim.warmup_steps, check the data, or resume "
                "from an earlier checkpoint."
            )

    def _steps_done(self) -> bool:
        return self.tcfg.max_steps > 0 and self.progress.step >= self.tcfg.max_steps

    @property
    def lr(self) -> float:
        return self.engine.lr

    # ------------------------------------------------------------------ epochs and checkpoints

    def _cv(self) -> tuple[dict[str, float], Counter]:
        return cv_losses(self.model, self.cv_loader, self.ctx, self.bf16, self.engine.lockstep)

    def _end_epoch(self, epoch: int) -> None:
        skipped = sum(self.ctx.gather(self.epoch_state.skipped), Counter())
        train = self.epoch_state.meter.totals(self.ctx)
        if self.epoch_state.batches == 0:  # the same on every rank: all of them raise
            raise NothingTrained(self._nothing_trained(epoch, skipped, train))
        cv, cv_skipped = self._cv()
        self.report.epoch_summary(epoch, self.progress.step, train, cv, skipped, cv_skipped)
        self.report.scalars("cv", {k: cv[k] for k in LOSS_KEYS if k in cv}, self.progress.step)
        self.progress.epoch = epoch + 1
        self.epoch_state = EpochState()
        self._save(str(epoch), epoch, "epoch", cv, train)
        self._check_cv(str(epoch), cv, cv_skipped)

    def _check_cv(self, name: str, cv: dict[str, float], skipped: Counter) -> None:
        """After checkpoint `name` is written: stop (NothingValidated, on every rank alike)
        when its validation had no cv utterance with a finite loss."""
        if cv["utts"] > 0:
            return
        raise NothingValidated(
            f"the validation of checkpoint {name} had no cv utterance with a finite loss: the "
            f"data pipeline skipped {format_skips(skipped)} of data.cv_data "
            f"({self.cfg.data.cv_data}), the others (if any) had a non-finite loss (logged "
            f"above). Checkpoint {name} is saved with cv_loss null. Fix data.cv_data (its audio "
            "paths, its transcripts against tokenizer.units, data.filter) and rerun to resume."
        )

    def _nothing_trained(self, epoch: int, skipped: Counter, train: dict[str, float]) -> str:
        data, tok = self.cfg.data, self.cfg.tokenizer
        return (
            f"epoch {epoch} ended without a single optimizer update: the data pipeline skipped "
            f"{format_skips(skipped)}; {int(train['utts'])} utterances trained with a finite "
            f"loss. Check data.train_data ({data.train_data}): that its audio paths exist "
            f"(missing_file, bad_audio), that tokenizer.units ({tok.units}) and "
            f"tokenizer.normalize ({tok.normalize}) fit its transcripts (unknown_token, "
            "empty_text), and that data.filter fits its lengths (too_long, too_short; "
            "ctc_infeasible: more tokens than the subsampled audio has frames)."
        )

    def _save(self, name: str, epoch: int, kind: str, cv: dict, train: dict | None = None) -> None:
        """Write checkpoint `name` (a collective: every rank calls it; rank 0 writes files)."""
        if train is None:
            train = self.epoch_state.meter.totals(self.ctx)
        ranks = self.ctx.gather(resume.rank_entry(self.epoch_state))
        weights, engine_state = self.engine.save(self.exp_dir, name)
        if self.ctx.is_main:
            p = self.progress
            state = resume.resume_state(self.engine.name, p, self.data_order, ranks, engine_state)
            info = resume.checkpoint_info(name, epoch, kind, p, self.lr, cv, train)
            ckpt.write_checkpoint(self.exp_dir, name, weights, info, state)
            ckpt.prune(self.exp_dir, name, self.tcfg.keep_checkpoints, self.guard.protected(p.step))
            logger.info("saved checkpoint %s (epoch %d, step %d)", name, epoch, p.step)
        self.ctx.barrier()

    def _resume(self, name: str, saved: dict) -> None:
        """Take up checkpoint `name`'s resume state (its weights are loaded already)."""
        self.progress, self.epoch_state, self.resume_rng = resume.restore(
            saved, self.exp_dir, name, self.engine.name, self.data_order, self.ctx
        )
        self.engine.load(self.exp_dir, name, saved)
