"""Plot an experiment's training curves: train and cv loss (total, CTC, attention) per epoch.

Reads the epoch checkpoints' `N.yaml` files of EXP_DIR and writes EXP_DIR/training_curves.png.
The full per-step curves are in EXP_DIR/tensorboard (`tensorboard --logdir EXP_DIR`).

Usage: plot_training.py exp/mini
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from wenet_eff.train.checkpoint import checkpoint_kind, list_checkpoints  # noqa: E402


def epoch_infos(exp_dir: str) -> list[dict]:
    """The training info of each epoch checkpoint, in epoch order."""
    return [
        info for name, info in list_checkpoints(exp_dir) if checkpoint_kind(name, info) == "epoch"
    ]


def plot(exp_dir: str, out: str) -> None:
    infos = epoch_infos(exp_dir)
    if not infos:
        sys.exit(f"{exp_dir}: no epoch checkpoints (N.yaml) to plot")
    epochs = [info["epoch"] for info in infos]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, part in zip(axes, ("loss", "loss_ctc", "loss_att"), strict=True):
        for split, style in (("train", "-o"), ("cv", "-s")):
            key = f"{split}_{part}" if part != "loss" else f"{split}_loss"
            values = [info.get(key) for info in infos]
            if any(v is not None for v in values):
                ax.plot(epochs, values, style, label=split, markersize=3)
        ax.set_title(part)
        ax.set_xlabel("epoch")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"{exp_dir}: per-utterance losses")
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("exp_dir")
    parser.add_argument("--out", help="PNG path (default EXP_DIR/training_curves.png)")
    args = parser.parse_args()
    plot(args.exp_dir, args.out or str(Path(args.exp_dir) / "training_curves.png"))


if __name__ == "__main__":
    main()
