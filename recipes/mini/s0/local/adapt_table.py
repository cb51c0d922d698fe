"""Domain adaptation table: per held-out voice, the base model, fine-tuning all weights and
S3-Router masks (base + mask file) on the domain's test set, with the mask file's size.

Reads DIR/domain_<voice>/test/<mode>/wer (the base model), DIR_adapt_<voice>_full/... (all
weights fine-tuned), DIR_adapt_<voice>_router/... (the mask over the frozen base) and the
router run's masks.pt.json (bin.masks save: bytes, kept fraction, ratio to its checkpoint);
and DIR/adapt_mask_iou.json when there are two voices. Prints Markdown, writes JSON (--json).

Usage: adapt_table.py --dir exp/mini --init_checkpoint exp/mini/avg_2.pt \
           --modes "ctc_greedy_search attention_rescoring" flite-awb espeak-en-gb-scotland-f5
"""

from __future__ import annotations

import argparse
import json
import os

from wer_table import mode_wers  # tools/ (path.sh puts it on PYTHONPATH)


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
    header = " | ".join(f"{m} WER %" for m in modes)
    print(f"| held-out voice | model | {header} | per-domain file | x smaller than checkpoint |")
    print("|---|---|" + "---:|" * len(modes) + "---:|---:|")
    for row in rows:
        size = row["domain_bytes"]
        ratio = f"{full_bytes / size:.1f}x" if size and size != full_bytes else "1x" if size else ""
        shown = f"{size / 1e6:.2f} MB" if size >= 1e5 else (f"{size / 1e3:.1f} kB" if size else "-")
        wers = " | ".join(f"{row['wer'][m]:.2f}" for m in modes)
        print(f"| {row['voice']} | {row['model']} | {wers} | {shown} | {ratio} |")
    iou_path = os.path.join(args.dir, "adapt_mask_iou.json")
    iou = None
    if os.path.exists(iou_path):
        with open(iou_path, encoding="utf-8") as f:
            iou = json.load(f)["total"]
        print(
            f"\nMask similarity between the voices' masks: IoU of kept weights "
            f"{iou['kept_iou']:.4f}, IoU of removed weights {iou['removed_iou']:.4f} "
            f"(two independent random 10 % removals would give about 0.053)"
        )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"rows": rows, "mask_iou": iou, "checkpoint_bytes": full_bytes}, f, indent=2)


if __name__ == "__main__":
    main()
