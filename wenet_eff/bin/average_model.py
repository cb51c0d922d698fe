"""Average checkpoints into one model (WeNet's average_model.py flags and choice: see
wenet_eff.train.average).

    python -m wenet_eff.bin.average_model --dst_model exp/x/avg_5.pt --src_path exp/x \\
        --num 5 [--val_best] [--mode hybrid|epoch|step] [--min_epoch 0] [--max_epoch 100] \\
        [--min_step 0] [--max_step 100000]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from wenet_eff.train.average import MODES, average_checkpoints, select_checkpoints
from wenet_eff.train.checkpoint import atomic_save

logger = logging.getLogger("wenet_eff.average_model")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dst_model", required=True, help="averaged model to write")
    parser.add_argument("--src_path", required=True, help="experiment dir with NAME.pt/NAME.yaml")
    parser.add_argument("--num", type=int, default=5, help="number of checkpoints to average")
    parser.add_argument(
        "--val_best", action="store_true", help="take the best by cv loss, not the latest"
    )
    parser.add_argument(
        "--mode", default="hybrid", choices=MODES, help="epoch, step or both checkpoints"
    )
    parser.add_argument("--min_epoch", type=int, default=0, help="first eligible epoch")
    parser.add_argument("--max_epoch", type=int, default=sys.maxsize, help="last eligible epoch")
    parser.add_argument("--min_step", type=int, default=0, help="first eligible step")
    parser.add_argument("--max_step", type=int, default=sys.maxsize, help="last eligible step")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = parse_args(argv)
    try:
        paths = select_checkpoints(
            args.src_path,
            args.num,
            args.val_best,
            args.min_epoch,
            args.max_epoch,
            args.min_step,
            args.max_step,
            args.mode,
        )
    except (FileNotFoundError, ValueError) as exc:  # nothing to average: say why, no traceback
        sys.exit(f"average_model: {exc}")
    logger.info("averaging %s", ", ".join(str(p) for p in paths))
    avg = average_checkpoints(paths)
    Path(args.dst_model).parent.mkdir(parents=True, exist_ok=True)
    atomic_save(avg, args.dst_model)
    logger.info("wrote %s", args.dst_model)


if __name__ == "__main__":
    main()
