"""What training reports: loss meters, log lines, TensorBoard scalars and the progress bar.

Only rank 0 writes TensorBoard and shows the bar; meters are summed over ranks first, so
every number is global (losses per utterance, throughput in input frames per second).
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections import Counter
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from wenet_eff.data.batching import INFORMATIONAL_REASONS
from wenet_eff.train.dist import DistContext

logger = logging.getLogger("wenet_eff.train")

LOSS_KEYS = ("loss", "loss_ctc", "loss_att", "loss_moe", "loss_quant")


def loss_values(out: dict) -> dict[str, float]:
    """The model's loss terms as floats (one device sync); terms it left out (None) are absent."""
    keys = [k for k in LOSS_KEYS if out.get(k) is not None]
    values = torch.stack([out[k].detach().float() for k in keys]).tolist()
    return dict(zip(keys, values, strict=True))


class LossMeter:
    """Utterance-weighted sums of the loss terms, with the utterances and input frames seen.

    A term the model leaves out (None, e.g. loss_att when ctc_weight=1) is simply not counted.
    """

    def __init__(self, sums: list[float] | None = None) -> None:
        # per loss key: (weighted sum, utterances), then total utterances, total frames
        size = 2 * len(LOSS_KEYS) + 2
        self.sums = list(sums) if sums is not None else [0.0] * size
        if len(self.sums) < size:  # a checkpoint from before a key was added: its sums are zero
            self.sums[-2:-2] = [0.0] * (size - len(self.sums))

    def add(self, losses: dict[str, float], utts: int, frames: int) -> None:
        """Add one batch's per-utterance losses, weighted by its `utts` utterances."""
        for i, key in enumerate(LOSS_KEYS):
            if key in losses:
                self.sums[2 * i] += losses[key] * utts
                self.sums[2 * i + 1] += utts
        self.sums[-2] += utts
        self.sums[-1] += frames

    def totals(self, ctx: DistContext) -> dict[str, float]:
        """Means over all ranks ({loss, loss_ctc, loss_att} present when counted), plus
        `utts` and `frames` summed. A collective: every rank must call it."""
        sums = ctx.sum(self.sums)
        out = {
            key: sums[2 * i] / sums[2 * i + 1]
            for i, key in enumerate(LOSS_KEYS)
            if sums[2 * i + 1] > 0
        }
        out["utts"], out["frames"] = sums[-2], sums[-1]
        return out


def format_losses(values: dict[str, float]) -> str:
    """`loss 12.345 ctc 20.1 att 9.8` for whichever terms are present."""
    return " ".join(f"{k.removeprefix('loss_')} {values[k]:.3f}" for k in LOSS_KEYS if k in values)


def format_skips(skipped: Counter) -> str:
    """`4 utterances: too_long=3, unreadable=1` (total, then by reason), or `0 utterances: none`;
    informational counts of kept utterances (e.g. unknown tokens mapped to <unk>) follow apart."""
    dropped = {r: n for r, n in skipped.items() if r not in INFORMATIONAL_REASONS}
    reasons = ", ".join(f"{reason}={n}" for reason, n in sorted(dropped.items())) or "none"
    kept = ", ".join(f"{r}={n}" for r, n in sorted(skipped.items()) if r in INFORMATIONAL_REASONS)
    return f"{sum(dropped.values())} utterances: {reasons}" + (f" (kept: {kept})" if kept else "")


class IntervalStats:
    """What the log line of the last `train.log_interval` updates reports: losses, mean
    gradient norm, throughput and the MoE layers' expert usage.

    Args:
        moe: the model's MoE layers, (name, layer) as `nn.moe.moe_layers` lists them.
    """

    def __init__(self, moe: list[tuple[str, torch.nn.Module]]) -> None:
        self.moe = moe
        self.reset()

    def reset(self) -> None:
        """Start a new interval (now)."""
        self.meter = LossMeter()  # micro-batches with a finite loss add to it
        self.norms: list[float] = []
        self.usage: dict[str, torch.Tensor] = {}  # MoE layer -> summed usage
        self.batches = 0
        self.start = time.perf_counter()

    def batch_done(self) -> None:
        """Count a trained micro-batch and the expert usage of its forward."""
        for name, layer in self.moe:
            if layer.usage is not None:
                self.usage[name] = self.usage.get(name, 0) + layer.usage
        self.batches += 1

    def report(
        self, reporter: Reporter, ctx: DistContext, epoch: int, step: int, lr: float
    ) -> None:
        """Report the interval (a collective: every rank calls it), then start the next."""
        stats = self.meter.totals(ctx)
        fps = stats["frames"] / max(time.perf_counter() - self.start, 1e-9)
        norm = sum(self.norms) / max(len(self.norms), 1)
        reporter.train_interval(epoch, step, stats, lr, norm, fps)
        if self.moe:
            batches = max(self.batches, 1)
            usage = {n: (u / batches).tolist() for n, u in self.usage.items()}
            reporter.expert_usage(usage, self.moe[0][1].k, step)
        self.reset()


class Reporter:
    """Rank 0's reporting: logging, TensorBoard under `exp_dir/tensorboard`, a tqdm bar.

    Other ranks get a Reporter that does nothing, so the trainer calls it unconditionally.

    Args:
        exp_dir: the experiment directory.
        ctx: this process's rank.
        purge_step: TensorBoard drops the events from this step on (a resumed or rolled-back
            run rewrites them), or None.
    """

    def __init__(self, exp_dir: Path, ctx: DistContext, purge_step: int | None) -> None:
        self.active = ctx.is_main
        self.writer = (
            SummaryWriter(str(exp_dir / "tensorboard"), purge_step=purge_step)
            if self.active
            else None
        )
        self.bar: tqdm | None = None

    def start_epoch(self, epoch: int, position: int) -> None:
        """Open the progress bar of `epoch` (shown on a terminal only), at batch `position`."""
        show = self.active and sys.stderr.isatty()
        self.bar = tqdm(desc=f"epoch {epoch}", unit="batch", initial=position, disable=not show)

    def batch_done(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def end_epoch(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def scalars(self, prefix: str, values: dict[str, float], step: int) -> None:
        """TensorBoard `prefix/name` scalars at `step` (non-finite values are skipped)."""
        if self.writer is None:
            return
        for name, value in values.items():
            if value is not None and math.isfinite(value):
                self.writer.add_scalar(f"{prefix}/{name}", value, step)
        self.writer.flush()

    def train_interval(
        self,
        epoch: int,
        step: int,
        losses: dict[str, float],
        lr: float,
        grad_norm: float,
        fps: float,
    ) -> None:
        """Report the last `log_interval` updates."""
        if not self.active:
            return
        line = (
            f"epoch {epoch} step {step} | {format_losses(losses)} | lr {lr:.3e} | "
            f"grad_norm {grad_norm:.3f} | {fps:.0f} frames/s"
        )
        logger.info(line)
        if self.bar is not None:
            self.bar.set_postfix_str(f"step {step} {format_losses(losses)} lr {lr:.2e}")
        values = {k: losses[k] for k in losses if k in LOSS_KEYS}
        self.scalars(
            "train", {**values, "lr": lr, "grad_norm": grad_norm, "frames_per_s": fps}, step
        )

    def expert_usage(self, usage: dict[str, list[float]], k: int, step: int) -> None:
        """TensorBoard `moe_usage/<layer>/expert<e>`: fraction of frames per expert (sums to k
        per layer), and `moe/max_load`: the busiest expert's share over a balanced one's."""
        if self.writer is None or not usage:
            return
        for layer, fractions in usage.items():
            for e, value in enumerate(fractions):
                self.writer.add_scalar(f"moe_usage/{layer}/expert{e}", value, step)
        max_load = max(max(f) * len(f) / k for f in usage.values())
        self.writer.add_scalar("moe/max_load", max_load, step)
        self.writer.flush()

    def epoch_summary(
        self,
        epoch: int,
        step: int,
        train: dict[str, float],
        cv: dict[str, float],
        skipped: Counter,
        cv_skipped: Counter,
    ) -> None:
        """Log the finished epoch: train and cv losses, and the utterances the data pipeline
        skipped by reason, in training (`data/skipped*`) and in validation (`data/cv_skipped*`)."""
        if not self.active:
            return
        logger.info(
            "epoch %d done at step %d | train %s | cv %s | skipped %s | cv skipped %s",
            *(epoch, step, format_losses(train), format_losses(cv)),
            *(format_skips(skipped), format_skips(cv_skipped)),
        )
        for name, counts in (("skipped", skipped), ("cv_skipped", cv_skipped)):
            self.scalars(f"data/{name}", {r: float(n) for r, n in counts.items()}, step)
            total = sum(n for r, n in counts.items() if r not in INFORMATIONAL_REASONS)
            self.scalars("data", {f"{name}_total": float(total)}, step)

    def close(self) -> None:
        self.end_epoch()
        if self.writer is not None:
            self.writer.close()
