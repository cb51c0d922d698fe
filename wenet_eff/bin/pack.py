"""Pack a QAT checkpoint into real low-bit storage and print the size table.

    python -m wenet_eff.bin.pack --config exp/mini_int4/train.yaml \
        --checkpoint exp/mini_int4/avg_2.pt --out exp/mini_int4/packed.pt

The config must be the QAT experiment's (its `compress` section says how each layer is
quantized). Writes the packed file, `<out>.size.json`, and prints bytes per layer group
(float32 vs packed) and for the whole model. Load it with
`wenet_eff.model.load_packed(path)`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from wenet_eff.compress import is_quantized
from wenet_eff.compress.pack import format_report, save_packed
from wenet_eff.model import load_model


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", required=True, help="the QAT experiment's train.yaml")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", required=True, help="packed model path")
    p.add_argument("--override", nargs="*", default=[], help="config overrides key=value")
    args = p.parse_args(argv)
    cfg, model = load_model(args.config, args.checkpoint, args.override)
    if not is_quantized(cfg):
        raise SystemExit(
            f"{args.config}: no compression configured (compress.quant.enabled is false); "
            "pack the checkpoint of a QAT run (compress=qat_int8, ...)"
        )
    report = save_packed(model, cfg, args.out)
    print(format_report(report))
    json_path = Path(f"{args.out}.size.json")
    json_path.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out} and {json_path}")
    return report


if __name__ == "__main__":
    main()
