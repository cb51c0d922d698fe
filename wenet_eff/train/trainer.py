"""The training loop of a U2++ model: one file to read a training step top to bottom.

Per micro-batch: forward (bf16 autocast optional), backward of loss / accum_grad. At the end
of an accumulation window (`train.accum_grad` micro-batches, or fewer at the end of an
epoch): clip to `train.grad_clip`, then update the model and scheduler, unless some rank
saw a non-finite loss or the gradient norm is not finite; such a step is skipped, logged
with its batch keys and counted, and `train.max_nan_steps` in a row stop training.

Ranks stay in lock step: before each micro-batch every rank says whether it still has one
(all-reduced), and an epoch ends when any rank runs out, so uneven data never hangs DDP.
Knowing one batch ahead also tells the last micro-batch of an epoch, which closes the window.

An epoch that ends without a single micro-batch trained, so without an update (every
utterance skipped by the data pipeline: wrong units.txt, text normalisation, audio paths),
stops training with the skip counts. Epochs whose windows were all non-finite are left to
`train.max_nan_steps`.

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
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from wenet_eff import compress
from wenet_eff.nn.moe import moe_layers
from wenet_eff.train import checkpoint as ckpt
from wenet_eff.train import resume
from wenet_eff.train.dist import DistContext, deepspeed_initialize
from wenet_eff.train.expert_parallel import ExpertParallel, dummy_batch
from wenet_eff.train.optim import StepAdam, build_optimizer, build_scheduler, scale_lr
from wenet_eff.train.reporting import LOSS_KEYS, LossMeter, Reporter, format_skips, loss_values
from wenet_eff.train.resume import EpochState, Progress
from wenet_eff.train.stability import DivergenceGuard, OutputNormMonitor, Verdict, max_linear_rms
from wenet_eff.train.validate import batch_forward, cv_losses

logger = logging.getLogger("wenet_eff.train")


class TrainingDiverged(RuntimeError):
    """Too many consecutive steps had a non-finite loss or gradient norm. Training cannot go
    on: bin/train.py logs the message of this class and its subclasses, and exits 1."""


class _Diverging(Exception):
    """Raised inside an epoch when the divergence guard fires (every rank at once)."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.reason)
        self.verdict = verdict


class NothingTrained(TrainingDiverged):
    """An epoch ended without a single optimizer update on any rank: no utterance of it
    reached the model."""


@dataclass
class _Pulled:
    batch: dict | None  # None: this rank's loader is exhausted
    position: int  # loader batches consumed once this batch is used
    skipped: Counter  # skipped-utterance counts carried by it (and empty batches before it)


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
        for key in ("accum_grad", "log_interval"):
            if tcfg[key] < 1:
                raise ValueError(f"train.{key}={tcfg[key]} must be >= 1")
        if tcfg.dtype not in ("fp32", "bf16"):
            raise ValueError(f"train.dtype: '{tcfg.dtype}' is not one of fp32, bf16")
        self.cfg, self.tcfg, self.ctx = cfg, tcfg, ctx
        self.exp_dir = Path(tcfg.exp_dir)
        self.train_loader, self.train_set, self.cv_loader = train_loader, train_set, cv_loader
        self.deepspeed = tcfg.train_engine == "deepspeed"
        self.bf16 = tcfg.dtype == "bf16"
        self.model = model.to(ctx.device)  # the plain module: what N.pt holds
        self.moe = moe_layers(self.model)
        self.progress = Progress()
        self.epoch_state = EpochState()
        self.resume_rng: dict | None = None
        self.data_order = resume.data_order(cfg, ctx.world_size)
        self.window = 0  # micro-batches in the current accumulation window
        self.window_bad = False
        self.window_loss = [0.0, 0.0]  # the window's sum of loss x utterances, input frames
        self.guard = DivergenceGuard(tcfg.guard) if tcfg.guard.enabled else None
        if self.guard is not None and tcfg.guard.max_linear_rms > 0 and not tcfg.monitor_interval:
            raise ValueError(
                "train.guard.max_linear_rms needs train.monitor_interval > 0 (the output "
                "norms are only measured on monitored updates)"
            )
        if tcfg.expert_parallel < 1:
            raise ValueError(f"train.expert_parallel={tcfg.expert_parallel} must be >= 1")

        resume_from = ckpt.latest_resumable(self.exp_dir)
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
        # whole weights are loaded; now each rank drops the experts other ranks keep
        self.ep = (
            ExpertParallel(self.model, tcfg.expert_parallel, ctx, tcfg.train_engine, cfg.optim.name)
            if tcfg.expert_parallel > 1
            else None
        )
        self.norms = OutputNormMonitor(self.model, tcfg.monitor_interval)
        self.optimizer = build_optimizer(self.model.parameters(), cfg.optim)
        self.scheduler = build_scheduler(
            self.optimizer, cfg.optim, tcfg.max_steps, cfg.model.encoder.output_size
        )
        if self.deepspeed:
            self.engine = deepspeed_initialize(self.model, self.optimizer, self.scheduler, cfg)
        elif ctx.world_size > 1:
            device_ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            if self.ep is not None:  # each rank's experts are its own: not all-reduced by DDP
                DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
                    self.model, self.ep.names
                )
            self.engine = DistributedDataParallel(
                self.model,
                device_ids=device_ids,
                find_unused_parameters=self.model.may_leave_parameters_unused(),
            )
        else:
            self.engine = self.model
        if resume_from:
            self._resume(resume_from, saved)
        self.monitor = Reporter(self.exp_dir, ctx, self.progress.step + 1 if resume_from else None)
        if isinstance(self.optimizer, StepAdam):  # N:M masks go on when STEP switches phase
            compress.set_masking(self.model, self.optimizer.masking)
            self.optimizer.on_switch = self._step_switched

    def _step_switched(self, update: int) -> None:
        compress.set_masking(self.model, True)
        changes = self.optimizer.param_groups[0]["changes"]
        if self.ctx.is_main:
            logger.info(
                "STEP: precondition phase over after %d updates (variance change %.4f per "
                "update); Adam's variance is frozen and N:M masks are on from here",
                update,
                changes[-1] if changes else float("nan"),
            )
        self.monitor.scalars("optim", {"step_switch": float(update)}, update)

    # ------------------------------------------------------------------ the loop

    def fit(self) -> None:
        """Train until `train.max_epoch` epochs or `train.max_steps` updates, then link final.pt."""
        try:
            while self.progress.epoch < self.tcfg.max_epoch and not self._steps_done():
                try:
                    self._train_epoch(self.progress.epoch)
                except _Diverging as diverging:
                    self._roll_back(diverging.verdict)
        finally:
            self.monitor.close()
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
        self.monitor.start_epoch(epoch, state.position)
        self._interval_reset()
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
            self.window += 1
            boundary = self.window == self.tcfg.accum_grad or not nxt_ok
            if self.norms.due(self.progress.step + 1):
                self.norms.arm()
            self._train_batch(cur.batch, epoch, boundary)
            self.monitor.batch_done()
            cur, cur_ok = nxt, nxt_ok
            if not boundary:
                continue
            self.window = 0
            updated, grad_norm = self._update()
            self._watch(updated)
            if not updated:
                self._count_nonfinite()
                continue
            self.progress.nonfinite_run = 0
            self.progress.step += 1
            compress.on_update(self.model, self.progress.step)  # pruning schedules
            self.interval_norms.append(grad_norm)
            if self.progress.step % self.tcfg.log_interval == 0:
                self._log_interval(epoch)
            saving = (
                self.tcfg.save_interval > 0 and self.progress.step % self.tcfg.save_interval == 0
            )
            stopped = self._steps_done() and cur_ok
            if saving or stopped:
                self.progress.train_time_s += time.perf_counter() - mark
                mark = time.perf_counter()
                self._save(f"step_{self.progress.step}", epoch, "step", self._cv()[0])
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
        self.monitor.end_epoch()
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
        if self.deepspeed:
            self.engine.set_gradient_accumulation_boundary(boundary)
        # DDP all-reduces gradients in backward; within a window that waits for its last batch
        ddp_defer = isinstance(self.engine, DistributedDataParallel) and not boundary
        with self.engine.no_sync() if ddp_defer else nullcontext():
            out = batch_forward(self.engine, batch, self.ctx.device, self.bf16)
            if self.deepspeed:
                self.engine.backward(out["loss"])  # DeepSpeed divides by accum_grad itself
            else:
                (out["loss"] / self.tcfg.accum_grad).backward()
        if self.deepspeed and not boundary:
            self.engine.step()  # DeepSpeed counts micro-batches in step(); no update here
        losses = loss_values(out)
        for name, layer in self.moe:
            if layer.usage is not None:
                self.interval_usage[name] = self.interval_usage.get(name, 0) + layer.usage
        self.interval_batches += 1
        if all(math.isfinite(v) for v in losses.values()):
            utts, frames = len(batch["keys"]), int(batch["feats_lengths"].sum())
            self.interval_meter.add(losses, utts, frames)
            self.epoch_state.meter.add(losses, utts, frames)
            self.window_loss[0] += losses["loss"] * utts
            self.window_loss[1] += frames
        else:
            self.window_bad = True
            logger.warning(
                "rank %d epoch %d: non-finite loss %s in batch %s",
                *(self.ctx.rank, epoch, losses, batch["keys"]),
            )

    def _update(self) -> tuple[bool, float]:
        """Close the accumulation window. Returns (the model was updated, gradient norm)."""
        bad = self.ctx.any_true(self.window_bad)
        self.window_bad = False
        if self.deepspeed:
            skipped_before = self.engine.skipped_steps
            self.engine.step()  # clips, and skips the update itself when the norm is not finite
            norm = self.engine.get_global_grad_norm()
            grad_norm = float(norm) if norm is not None else math.nan
            updated = self.engine.skipped_steps == skipped_before
            if bad and updated:
                logger.warning("non-finite loss but finite gradients: DeepSpeed updated anyway")
            return updated, grad_norm
        max_norm = self.tcfg.grad_clip if self.tcfg.grad_clip > 0 else math.inf
        if self.ep is not None:
            self.ep.sync_grads()
            grad_norm = self.ep.clip_grads(max_norm)
        else:
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm))
        updated = not bad and math.isfinite(grad_norm)
        if updated:
            self.optimizer.step()
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return updated, grad_norm

    def _watch(self, updated: bool) -> None:
        """After an update (or a skipped one): report the monitored output norms, and let the
        guard judge the update's loss per frame (summed over ranks, so every rank agrees)."""
        update = self.progress.step + 1  # the number this update has (or would have had)
        values = self.norms.collect() if self.norms.armed else {}
        if values and updated:
            self.monitor.scalars("stability", values, update)
        window, self.window_loss = self.window_loss, [0.0, 0.0]
        if self.guard is None:
            return
        loss, frames, bad = self.ctx.sum([*window, float(not updated)])
        verdict = self.guard.observe(update, loss / frames if frames > 0 and not bad else math.nan)
        if not verdict.diverged and values and updated:
            ranks = self.ctx.gather(max_linear_rms(values))
            rms = math.nan if any(math.isnan(v) for v in ranks) else max(ranks)  # worst rank
            verdict = self.guard.observe_norms(update, rms)
        if verdict.diverged:
            raise _Diverging(verdict)

    def _roll_back(self, verdict: Verdict) -> None:
        """Act on a divergence: reload the newest checkpoint from before it with a lower
        learning rate (once), or stop."""
        p, gcfg = self.progress, self.tcfg.guard
        self.norms.collect()
        self.monitor.end_epoch()
        advice = (
            "Lower optim.lr, raise optim.warmup_steps, or train with a stability option "
            "(stability=qk_norm_cap or stability=qkv_norm)."
        )
        if gcfg.action == "stop":
            raise TrainingDiverged(f"training diverged: {verdict.reason}. {advice}")
        if p.rollbacks >= 1:
            raise TrainingDiverged(
                f"training diverged again after a rollback (learning rate x{p.lr_scale:g}): "
                f"{verdict.reason}. Stopping. {advice}"
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
                f"so the guard has one). {advice}"
            )
        target, info = good[-1]
        self.ctx.barrier()  # every rank has listed the checkpoints before rank 0 renames any
        if self.ctx.is_main:
            moved = ckpt.set_aside_after(self.exp_dir, target)
            logger.warning(
                "divergence guard: %s. Rolling back to checkpoint %s with the learning rate x%g%s",
                *(verdict.reason, target, gcfg.lr_factor),
                f"; set aside as *.diverged: {', '.join(moved)}" if moved else "",
            )
        self.ctx.barrier()
        # with expert parallelism the checkpoint has every expert; this rank keeps its own
        skip = ckpt.other_ranks_experts(self.model) if self.ep is not None else None
        saved = ckpt.load_resumable(self.model, self.exp_dir, target, skip)
        rollbacks, lr_scale = p.rollbacks + 1, p.lr_scale * gcfg.lr_factor
        self._resume(target, saved)
        self.progress.rollbacks, self.progress.lr_scale = rollbacks, lr_scale
        scale_lr(self.optimizer, self.scheduler, gcfg.lr_factor)
        if isinstance(self.optimizer, StepAdam):  # its phase came back with its state
            compress.set_masking(self.model, self.optimizer.masking)
        self.optimizer.zero_grad(set_to_none=True)
        self.window, self.window_bad, self.window_loss = 0, False, [0.0, 0.0]
        self.guard.reset_run()
        self.monitor.close()
        self.monitor = Reporter(self.exp_dir, self.ctx, self.progress.step + 1)
        self.monitor.scalars(
            "train", {"rollback": float(verdict.first_bad_update)}, self.progress.step
        )
        # rewrite the target with the rollback and the lowered lr in its resume state, so a
        # crash from here resumes with them (and never rolls back twice)
        if self.resume_rng is not None:
            ckpt.set_rng_state(self.resume_rng)  # the state saved for the epoch's position
        cv = {k: info.get(f"cv_{k}") for k in LOSS_KEYS}
        train = {k: info.get(f"train_{k}") for k in LOSS_KEYS}
        self._save(target, int(info["epoch"]), str(info["tag"]), cv, train)

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
        self.monitor.scalars("train", {"nonfinite_steps": float(p.nonfinite_total)}, p.step)
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
        return float(self.optimizer.param_groups[0]["lr"])

    # ------------------------------------------------------------------ reporting

    def _interval_reset(self) -> None:
        self.interval_meter = LossMeter()
        self.interval_norms: list[float] = []
        self.interval_usage: dict[str, torch.Tensor] = {}  # MoE layer -> summed usage
        self.interval_batches = 0
        self.interval_start = time.perf_counter()

    def _log_interval(self, epoch: int) -> None:
        stats = self.interval_meter.totals(self.ctx)
        fps = stats["frames"] / max(time.perf_counter() - self.interval_start, 1e-9)
        norm = sum(self.interval_norms) / max(len(self.interval_norms), 1)
        self.monitor.train_interval(epoch, self.progress.step, stats, self.lr, norm, fps)
        if self.moe:
            batches = max(self.interval_batches, 1)
            usage = {n: (u / batches).tolist() for n, u in self.interval_usage.items()}
            self.monitor.expert_usage(usage, self.moe[0][1].k, self.progress.step)
        self._interval_reset()

    def _cv(self) -> tuple[dict[str, float], Counter]:
        lockstep = dummy_batch(self.cfg.model.input_dim) if self.ep is not None else None
        return cv_losses(self.model, self.cv_loader, self.ctx, self.bf16, lockstep)

    def _end_epoch(self, epoch: int) -> None:
        skipped = sum(self.ctx.gather(self.epoch_state.skipped), Counter())
        train = self.epoch_state.meter.totals(self.ctx)
        if self.epoch_state.batches == 0:  # the same on every rank: all of them raise
            raise NothingTrained(self._nothing_trained(epoch, skipped, train))
        cv, cv_skipped = self._cv()
        self.monitor.epoch_summary(epoch, self.progress.step, train, cv, skipped, cv_skipped)
        self.monitor.scalars("cv", {k: cv[k] for k in LOSS_KEYS if k in cv}, self.progress.step)
        self.progress.epoch = epoch + 1
        self.epoch_state = EpochState()
        self._save(str(epoch), epoch, "epoch", cv, train)

    def _nothing_trained(self, epoch: int, skipped: Counter, train: dict[str, float]) -> str:
        data, tok = self.cfg.data, self.cfg.tokenizer
        return (
            f"epoch {epoch} ended without a single optimizer update: the data pipeline skipped "
            f"{format_skips(skipped)}; {int(train['utts'])} utterances trained with a finite "
            f"loss. Check data.train_data ({data.train_data}): that its audio paths exist "
            f"(missing_file, bad_audio), that tokenizer.units ({tok.units}) and "
            f"tokenizer.normalize ({tok.normalize}) fit its transcripts (unknown_token, "
            "empty_text), and that data.filter fits its lengths (too_long, too_short)."
        )

    # ------------------------------------------------------------------ checkpoints

    def _save(self, name: str, epoch: int, tag: str, cv: dict, train: dict | None = None) -> None:
        """Write checkpoint `name` (a collective: every rank calls it; rank 0 writes files)."""
        if train is None:
            train = self.epoch_state.meter.totals(self.ctx)
        ranks = self.ctx.gather(resume.rank_entry(self.epoch_state))
        if self.deepspeed:
            self.engine.save_checkpoint(
                str(self.exp_dir / ckpt.DEEPSPEED_DIR), tag=name, save_latest=False
            )
            self.ctx.barrier()  # every rank's partition is on disk before the yaml marks it done
        if self.ep is not None:  # every rank's experts and optimizer state, on rank 0
            ep_weights = self.ep.full_state(self.model)
            ep_optimizers = self.ep.optimizer_states(self.optimizer)
        if self.ctx.is_main:
            p = self.progress
            optim = (None, None) if self.deepspeed else (self.optimizer, self.scheduler)
            state = resume.resume_state(self.tcfg.train_engine, p, self.data_order, ranks, *optim)
            info = resume.checkpoint_info(epoch, tag, p, self.lr, cv, train)
            if self.ep is not None:
                weights = ep_weights
                state.pop("optimizer")  # rank 0's alone: the record holds every rank's
                state["expert_parallel"] = self.ep.record(ep_optimizers)
            else:
                weights = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
            ckpt.write_checkpoint(self.exp_dir, name, weights, info, state)
            ckpt.prune(self.exp_dir, name, self.tcfg.keep_checkpoints, self._guard_protected())
            logger.info("saved checkpoint %s (epoch %d, step %d)", name, epoch, p.step)
        self.ctx.barrier()

    def _guard_protected(self) -> list[str]:
        """With the guard on, the checkpoints to keep with their resume state: the newest one a
        divergence found from here on could roll back to (step <= current step - patience) and
        every newer one (each becomes that target later)."""
        if self.guard is None:
            return []
        horizon = self.progress.step - self.tcfg.guard.patience
        listed = [
            (name, int(info.get("step", 0)))
            for name, info in ckpt.list_checkpoints(self.exp_dir)
            if ckpt.has_resume_state(self.exp_dir, name)
        ]
        old = [i for i, (_, step) in enumerate(listed) if step <= horizon]
        return [name for name, _ in listed[old[-1] if old else 0 :]]

    def _resume(self, name: str, saved: dict) -> None:
        """Take up checkpoint `name`'s resume state (its weights are loaded already)."""
        self.progress, self.epoch_state, self.resume_rng = resume.restore(
            saved, self.exp_dir, name, self.tcfg.train_engine, self.data_order, self.ctx
        )
        if self.deepspeed:
            self.engine.load_checkpoint(str(self.exp_dir / ckpt.DEEPSPEED_DIR), tag=name)
        elif self.ep is not None:
            self.optimizer.load_state_dict(self.ep.own_optimizer_state(saved, name))
            self.scheduler.load_state_dict(saved["scheduler"])
        else:
            if "expert_parallel" in saved:
                raise ValueError(
                    f"checkpoint {name} was trained with train.expert_parallel="
                    f"{saved['expert_parallel']['size']}; resume it with the same setting, or "
                    f"train into a new train.exp_dir with train.init_checkpoint={name}.pt"
                )
            self.optimizer.load_state_dict(saved["optimizer"])
            self.scheduler.load_state_dict(saved["scheduler"])
