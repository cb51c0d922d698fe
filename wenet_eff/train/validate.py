"""Validation: per-utterance cv losses over every rank's share of the cv data."""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Iterable

import torch

from wenet_eff.train.dist import DistContext
from wenet_eff.train.reporting import LossMeter, loss_values

logger = logging.getLogger("wenet_eff.train")


def batch_forward(
    model: torch.nn.Module, batch: dict, device: torch.device, bf16: bool
) -> dict[str, torch.Tensor | None]:
    """`model(feats, feats_lengths, target, target_lengths)` on `device`, in bf16 autocast
    when asked: {"loss", "loss_ctc", "loss_att"}."""
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        return model(
            batch["feats"].to(device),
            batch["feats_lengths"].to(device),
            batch["target"].to(device),
            batch["target_lengths"].to(device),
        )


@torch.no_grad()
def cv_losses(
    model: torch.nn.Module,
    loader: Iterable[dict],
    ctx: DistContext,
    bf16: bool,
    lockstep: dict | None = None,
) -> tuple[dict[str, float], Counter]:
    """Validate on every rank's share of the cv data. A collective: every rank calls it.

    Batches with a non-finite loss are logged and left out. The model is back in train mode
    after. With `lockstep` (a stand-in batch: expert parallelism, whose forward is a
    collective) every rank forwards once per step until all are done; a rank out of data
    forwards the stand-in and ignores it.

    Returns:
        utterance-weighted mean losses over all ranks ({loss, loss_ctc, loss_att}, plus `utts`
        and `frames`), and the cv utterances the data pipeline skipped, by reason, over all
        ranks.
    """
    model.eval()
    meter = LossMeter()
    skipped: Counter = Counter()
    batches = iter(loader)
    while True:
        batch = next(batches, None)
        if batch is not None:
            skipped.update(batch.get("skipped") or {})
        if lockstep is not None:
            if not ctx.any_true(batch is not None):
                break
            if batch is None or not batch["keys"]:
                batch_forward(model, lockstep, ctx.device, bf16)
                continue
        elif batch is None:
            break
        if not batch["keys"]:
            continue
        losses = loss_values(batch_forward(model, batch, ctx.device, bf16))
        if all(math.isfinite(v) for v in losses.values()):
            meter.add(losses, len(batch["keys"]), int(batch["feats_lengths"].sum()))
        else:
            logger.warning("rank %d: non-finite cv loss %s in %s", ctx.rank, losses, batch["keys"])
    model.train()
    return meter.totals(ctx), sum(ctx.gather(skipped), Counter())
