"""Sparse upcycling: turn a dense checkpoint into an MoE checkpoint that starts where it was.

    python -m wenet_eff.bin.upcycle --config exp/dense/train.yaml \
        --checkpoint exp/dense/final.pt --out_dir exp/moe_upcycled [--n_expert 8 --k 2]

Writes `out_dir/train.yaml` (the dense config with MoE FFNs) and `out_dir/upcycled.pt` (every
expert a copy of the dense FFN, routers small and random), then checks that the two models give
the same encoder output on random input. Continue training with
`train.init_checkpoint=out_dir/upcycled.pt model/ffn=moe`, or decode `out_dir` directly.
A WeNet experiment directory works as `--config` (its train.yaml is imported).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch

from wenet_eff.config import load_config, save_config
from wenet_eff.model import build_model
from wenet_eff.nn.moe import upcycle_state_dict
from wenet_eff.weights import load_weights

PARTS = {"both": ("encoder", "decoder"), "encoder": ("encoder",), "decoder": ("decoder",)}


def main(argv: list[str] | None = None) -> float:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", required=True, help="the dense model's train.yaml")
    p.add_argument("--checkpoint", required=True, help="the dense weights (N.pt / final.pt)")
    p.add_argument("--out_dir", required=True)
    p.add_argument("--n_expert", type=int, default=8)
    p.add_argument("--k", type=int, default=2, help="experts per frame (n_expert_activated)")
    p.add_argument("--parts", choices=sorted(PARTS), default="both", help="which FFNs")
    p.add_argument("--router_init_std", type=float, default=0.02)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    dense_cfg = load_config(args.config)
    overrides = []
    for part in PARTS[args.parts]:
        overrides += [
            f"model.{part}.mlp_type=moe",
            f"model.{part}.n_expert={args.n_expert}",
            f"model.{part}.n_expert_activated={args.k}",
        ]
    moe_cfg = load_config(args.config, overrides)
    dense = build_model(dense_cfg)
    load_weights(dense, args.checkpoint, "--checkpoint")
    moe = build_model(moe_cfg)
    state = upcycle_state_dict(dense.state_dict(), moe, args.router_init_std, args.seed)
    moe.load_state_dict(state, strict=True)

    diff = _check(dense, moe, dense_cfg.model.input_dim)
    if diff > 1e-4:
        raise SystemExit(
            f"upcycling: the MoE model's encoder output differs from the dense one by {diff:.2e}"
            " (expected < 1e-4); nothing written"
        )
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "upcycled.pt.tmp"
    torch.save(state, tmp)
    os.replace(tmp, out / "upcycled.pt")
    save_config(moe_cfg, out / "train.yaml")
    params = moe.num_params()
    print(
        f"{out}/upcycled.pt: {params['total']:,} parameters ({params['active']:,} active) from "
        f"{dense.num_params()['total']:,} dense; {args.n_expert} experts, top-{args.k}, "
        f"{args.parts}; max |encoder out MoE - dense| = {diff:.2e}"
    )
    return diff


@torch.inference_mode()
def _check(dense: torch.nn.Module, moe: torch.nn.Module, input_dim: int) -> float:
    """Max abs difference of the encoder outputs on 3 s of random features."""
    dense.eval()
    moe.eval()
    feats = torch.randn(1, 300, input_dim, generator=torch.Generator().manual_seed(0))
    lens = torch.tensor([300])
    return float((dense.encoder(feats, lens)[0] - moe.encoder(feats, lens)[0]).abs().max())


if __name__ == "__main__":
    main()
