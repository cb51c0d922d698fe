"""`python -m wenet_eff.bin.train` with test hooks, for subprocess tests.

    python -m tests.train.hooks OVERRIDES...

Environment:
    KILL_AT_STEP=N   SIGKILL this process in the middle of the first micro-batch trained after
                     update N (after its forward, before its backward): a real crash, no cleanup.
    NAN_AT_STEP=N    the first micro-batch trained after update N gets a NaN feature (on rank 0).
    DUMP_PARAMS=1    after training, every rank writes its parameters to exp_dir/rankR.params.pt
                     and its optimizer's first parameter group (less the parameters, so STEP's
                     phase and switch statistic) to exp_dir/rankR.optim.pt.
    SPIKE_AT_STEPS=a,b  the loss of rank 0's micro-batches trained after updates a, b, ... is
                     multiplied by 1000 (the first time only: a replay after a rollback is clean).
"""

from __future__ import annotations

import os
import runpy
import signal

import torch

import wenet_eff.train.trainer as trainer_module
from wenet_eff.train.trainer import Trainer


def _install() -> None:
    kill_at = int(os.environ.get("KILL_AT_STEP", 0))
    nan_at = int(os.environ.get("NAN_AT_STEP", -1))
    train_batch = Trainer._train_batch
    poisoned = []

    def hooked(self: Trainer, batch: dict, epoch: int, boundary: bool) -> None:
        if kill_at and self.progress.step >= kill_at:
            self.model.register_forward_hook(lambda *_: os.kill(os.getpid(), signal.SIGKILL))
        if self.progress.step == nan_at and self.ctx.rank == 0 and not poisoned:
            poisoned.append(batch["keys"])
            batch["feats"][0, 0, 0] = float("nan")
        train_batch(self, batch, epoch, boundary)

    Trainer._train_batch = hooked
    spikes = {int(s) for s in os.environ.get("SPIKE_AT_STEPS", "").split(",") if s}
    if spikes:
        forward = trainer_module.batch_forward
        spiked: set[int] = set()
        current = {"step": -1, "rank": 0}

        def spiking_forward(*args, **kwargs):
            out = forward(*args, **kwargs)
            step = current["step"]
            if current["rank"] == 0 and step in spikes and step not in spiked:
                out["loss"] = out["loss"] * 1000.0
            return out

        def tracking(self: Trainer, batch: dict, epoch: int, boundary: bool) -> None:
            current["step"], current["rank"] = self.progress.step, self.ctx.rank
            hooked(self, batch, epoch, boundary)
            if boundary and current["step"] in spikes:
                spiked.add(current["step"])

        trainer_module.batch_forward = spiking_forward
        Trainer._train_batch = tracking
    if os.environ.get("DUMP_PARAMS"):
        fit = Trainer.fit

        def fit_and_dump(self: Trainer) -> None:
            fit(self)
            params = {k: v.detach().cpu() for k, v in self.model.state_dict().items()}
            torch.save(params, self.exp_dir / f"rank{self.ctx.rank}.params.pt")
            group = self.engine.optimizer.param_groups[0]
            torch.save(
                {k: v for k, v in group.items() if k != "params"},
                self.exp_dir / f"rank{self.ctx.rank}.optim.pt",
            )

        Trainer.fit = fit_and_dump


if __name__ == "__main__":
    _install()
    # run as __main__, as `python -m wenet_eff.bin.train` does (Hydra finds conf/ by file path)
    runpy.run_module("wenet_eff.bin.train", run_name="__main__", alter_sys=True)
