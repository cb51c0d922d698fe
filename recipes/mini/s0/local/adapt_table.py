"""Domain adaptation table: per held-out voice, the base model, fine-tuning all weights and
S3-Router masks (base + mask file) on the domain's test set, with the mask file's size.

Reads DIR/domain_<voice>/test/<mode>/wer (the base model), DIR_adapt_<voice>_full/... (all
weights fine-tuned), DIR_adapt_<voice>_router/... (the mask over the frozen base) and the
router run's masks.pt.json (bin.masks save: bytes, kept fraction, ratio to its checkpoint);
and DIR/adapt_mask_iou.json when there are two voices. Prints Markdown, writes JSON with its
provenance (--json, for RESULTS.md).

Usage: adapt_table.py --dir exp/mini --init_checkpoint exp/mini/avg_2.pt \
           --modes "ctc_greedy_search attention_rescoring" flite-awb espeak-en-gb-scotland-f5
"""

from __future__ import annotations

import argparse
import json
import os

from wer_table import mode_wers  # tools/ (path.sh puts it on PYTHONPATH)

from wenet_eff.bench.common import write_json
from wenet_eff.bench.sections import adapt_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", required=True, help="the base experiment dir")
    parser.add_argument("--init_checkpoint", required=True)
    parser.add_argument("--modes", required=True, help="space-separated")
    parser.add_argument("--json", default="")
    parser.add_argument("voices", nargs="+")
    args = parser.parse_args()
    modes = args.modes.split()
    full_bytes = os.path.getsize(args.init_checkpoint)
    rows = []
    for voice in args.voices:
        test = os.path.join(f"domain_{voice}", "test")
        runs = {
            "base": os.path.join(args.dir, test),
            "fine-tune all weights": os.path.join(f"{args.dir}_adapt_{voice}_full", test),
            "S3-Router mask (keep 0.9)": os.path.join(f"{args.dir}_adapt_{voice}_router", test),
        }
        with open(f"{args.dir}_adapt_{voice}_router/masks.pt.json", encoding="utf-8") as f:
            mask = json.load(f)
        for name, path in runs.items():
            wer = mode_wers(path, modes)
            per_domain = {"base": 0, "fine-tune all weights": full_bytes}.get(
                name, mask["mask_bytes"]
            )
            rows.append({"voice": voice, "model": name, "wer": wer, "domain_bytes": per_domain})
    iou_path = os.path.join(args.dir, "adapt_mask_iou.json")
    iou = None
    if os.path.exists(iou_path):
        with open(iou_path, encoding="utf-8") as f:
            iou = json.load(f)["total"]
    data = {"dir": args.dir, "modes": modes, "adapt_rows": rows, "mask_iou": iou,
            "checkpoint_bytes": full_bytes}  # fmt: skip
    print(adapt_table(data), end="")
    if args.json:
        write_json(data, args.json)


if __name__ == "__main__":
    main()
