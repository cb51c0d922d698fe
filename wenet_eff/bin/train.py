"""Train a U2++ model (Hydra app; WeNet-style experiment directory).

    python -m wenet_eff.bin.train model=mini data.train_data=data/train/data.list \\
        data.cv_data=data/dev/data.list tokenizer.units=data/dict/units.txt \\
        cmvn.file=data/train/global_cmvn train.exp_dir=exp/mini train.max_epoch=5
    torchrun --nproc_per_node=2 -m wenet_eff.bin.train ...        # DDP
    ... train.train_engine=deepspeed train.deepspeed_config=conf/ds_stage2.json
    torchrun ... -m wenet_eff.bin.train --config conf/train.yaml --data_type raw \\
        --train_data data/train/data.list --cv_data data/dev/data.list --model_dir exp/x  # WeNet's

Rerunning the same command resumes from the newest complete checkpoint in train.exp_dir. One
run at a time trains into an experiment directory (`exp_dir/train.lock`, train/lock.py), and a
run that cannot start or resume there (a model that does not fit the checkpoint, a checkpoint
without its resume state, ...) leaves it as it was: train.yaml is written once the checkpoint
to resume (or train.init_checkpoint) has been loaded.
"""

from __future__ import annotations

import logging
import random
import sys
from functools import partial
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig

from wenet_eff import build_model
from wenet_eff.bin.wenet_flags import is_wenet_command, train_config
from wenet_eff.config import (
    check_values,
    register_schema,
    resolve_special_tokens,
    resolve_vocab_size,
    save_config,
)
from wenet_eff.data.dataset import build_dataloader
from wenet_eff.data.tokenizer import build_tokenizer
from wenet_eff.nn.subsampling import subsampled_frames
from wenet_eff.train.checkpoint import NoResumeState
from wenet_eff.train.dist import DistContext, cleanup_distributed, init_distributed
from wenet_eff.train.lock import ExperimentLocked, lock_experiment
from wenet_eff.train.stability import TrainingDiverged
from wenet_eff.train.trainer import Trainer

logger = logging.getLogger("wenet_eff.train")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def train(cfg: DictConfig) -> None:
    """Check the config, lock the experiment directory, build data, model and trainer (which
    loads the checkpoint to resume), then write `exp_dir/train.yaml` and train."""
    check_values(cfg)
    for key in ("train_data", "cv_data"):
        if not cfg.data[key]:
            raise ValueError(f"data.{key} is empty: set it to a data.list (or shard list)")
    ctx = init_distributed(cfg.train)
    if not ctx.is_main:
        logging.getLogger().setLevel(logging.WARNING)
    lock = None
    try:
        lock = lock_experiment(cfg.train.exp_dir, ctx)
        _train(cfg, ctx)
    finally:
        if lock is not None:
            lock.release()
        cleanup_distributed()


def _train(cfg: DictConfig, ctx: DistContext) -> None:
    """Build data, model and trainer; write train.yaml once the trainer has loaded the weights
    it starts from; train."""
    cfg.model.vocab_size = resolve_vocab_size(cfg)
    # written out, so the experiment (and its WeNet export) names the ids it was trained with
    cfg.tokenizer.special_tokens = resolve_special_tokens(cfg).as_dict()
    tokenizer = build_tokenizer(cfg.tokenizer)
    # utterances CTC cannot align to the encoder's frames are skipped, not trained as loss 0
    ctc_frames = partial(subsampled_frames, cfg.model.encoder.input_layer)
    train_loader, train_set = build_dataloader(
        cfg.data, cfg.data.train_data, tokenizer, True, ctx.rank, ctx.world_size, ctc_frames
    )
    cv_loader, _ = build_dataloader(
        cfg.data, cfg.data.cv_data, tokenizer, False, ctx.rank, ctx.world_size, ctc_frames
    )
    seed_everything(cfg.train.seed)  # the same initial weights on every rank
    model = build_model(cfg)
    seed_everything(cfg.train.seed + ctx.rank)  # different dropout masks per rank
    if ctx.is_main:
        counts = model.num_params()
        logger.info(
            "model %s: %d parameters (%d active), vocab %d, %d process(es), engine %s",
            cfg.model.name,
            counts["total"],
            counts["active"],
            cfg.model.vocab_size,
            ctx.world_size,
            cfg.train.train_engine,
        )
    trainer = Trainer(cfg, model, train_loader, train_set, cv_loader, ctx)
    if ctx.is_main:  # the run can start or resume: now it may change the experiment
        save_config(cfg, Path(cfg.train.exp_dir) / "train.yaml")
    trainer.fit()


@hydra.main(config_path="../conf", config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    try:
        train(cfg)
    except (TrainingDiverged, ExperimentLocked, NoResumeState) as exc:
        logger.error("%s", exc)
        sys.exit(1)


if __name__ == "__main__":
    register_schema()
    if is_wenet_command(sys.argv[1:]):  # WeNet's flags: --config --model_dir --train_data ...
        main(train_config(sys.argv[1:]))
    else:
        main()
