"""Export an experiment as a WeNet experiment directory (train.yaml, final.pt, units.txt,
global_cmvn) that WeNet's `init_model` + `load_checkpoint` load with no missing or unexpected
keys, giving this model's outputs.

    python -m wenet_eff.bin.export_wenet --config exp/x/train.yaml --checkpoint exp/x/avg_5.pt \
        --out_dir exp/x/wenet

Settings WeNet has no way to express (stability norms, compression, MoE capacity and auxiliary
losses, non-WeNet optimizers or schedulers, ...) are refused by name; nothing is written then.
The directory written is read back through our WeNet import and checked to give bit-identical
outputs (wenet_eff.export.wenet).
"""

from __future__ import annotations

import argparse
import sys

from wenet_eff.export.wenet import WeNetExportError, export_wenet
from wenet_eff.model import load_model


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", required=True, help="experiment train.yaml (ours or WeNet's)")
    p.add_argument("--checkpoint", required=True, help="state_dict: N.pt, final.pt, avg_K.pt")
    p.add_argument("--out_dir", required=True, help="the WeNet experiment directory to write")
    p.add_argument("--override", nargs="*", default=[], help="config overrides key=value")
    args = p.parse_args(argv)
    cfg, model = load_model(args.config, args.checkpoint, args.override)
    try:
        raw = export_wenet(cfg, model, args.out_dir)
    except WeNetExportError as exc:
        sys.exit(f"export_wenet: {exc}")
    special = raw["tokenizer_conf"]["special_tokens"]
    print(
        f"{args.out_dir}: WeNet experiment (train.yaml, final.pt, units.txt"
        f"{', global_cmvn' if 'cmvn' in raw else ''}); vocab {raw['output_dim']}, "
        f"special tokens {special}; read back bit-identical"
    )
    if cfg.tokenizer.normalize != "none":
        print(
            f"note: this model was trained on text normalised by tokenizer.normalize="
            f"{cfg.tokenizer.normalize}; WeNet tokenizes text as it is, so normalise "
            "transcripts the same way in data prep before training or scoring with WeNet"
        )
    return raw


if __name__ == "__main__":
    main()
