"""Sparsity masks: save them as small files, fold them into weights for export, compare them.

    # the mask a sparse run learned (S3-Router: one file per domain over a shared base)
    python -m wenet_eff.bin.masks save --config exp/dom/train.yaml --checkpoint exp/dom/final.pt \
        --base exp/mini/avg_2.pt --out exp/dom/masks.pt
    # export: a float checkpoint with the masks multiplied in, sparsity per layer (N:M checked)
    python -m wenet_eff.bin.masks fold --config exp/mini_2_4/train.yaml \
        --checkpoint exp/mini_2_4/avg_2.pt --out exp/mini_2_4/folded.pt
    # base + mask file -> folded float checkpoint (what recognize --masks does in memory)
    python -m wenet_eff.bin.masks apply --config exp/mini/train.yaml --base exp/mini/avg_2.pt \
        --masks exp/dom/masks.pt --out exp/dom/folded.pt
    # mask similarity per layer (IoU of kept and of removed weights), table + bar plot
    python -m wenet_eff.bin.masks compare exp/dom_a/masks.pt exp/dom_b/masks.pt --plot iou.png

`fold` writes OUT, OUT with suffix .yaml (the config, sparsity off: decode with it), and
OUT.sparsity.json; it fails when a model trained with N:M masks is not exactly N:M.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from omegaconf import OmegaConf

from wenet_eff.compress import sparse_layers
from wenet_eff.compress.masks import (
    apply_masks,
    folded_state_dict,
    load_masks,
    mask_iou,
    model_masks,
    save_masks,
    sparsity_report,
)  # fmt: skip
from wenet_eff.config import load_config
from wenet_eff.model import build_model, load_model
from wenet_eff.weights import load_weights


def _load(args):
    cfg, model = load_model(args.config, args.checkpoint, args.override)
    if not sparse_layers(model):
        raise SystemExit(f"{args.config}: no sparsity configured (compress.sparsity.enabled)")
    return cfg, model


def cmd_save(args) -> dict:
    cfg, model = _load(args)
    masks = model_masks(model)
    meta = OmegaConf.to_container(cfg.compress.sparsity, resolve=True)
    size = save_masks(masks, args.out, base=args.base, meta=meta)
    kept = sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())
    # against the full checkpoint a domain would otherwise ship: the base model's
    full = args.base if args.base and Path(args.base).is_file() else args.checkpoint
    checkpoint = Path(full).stat().st_size
    info = {
        "layers": len(masks), "mask_bytes": size, "kept": kept,
        "checkpoint_bytes": checkpoint, "ratio": checkpoint / size,
    }  # fmt: skip
    Path(f"{args.out}.json").write_text(json.dumps(info, indent=2))
    print(
        f"wrote {args.out}: {len(masks)} layers, {kept:.4f} of their weights kept, "
        f"{size:,} bytes ({checkpoint / size:.1f}x smaller than {full})"
    )
    return info


def _write_folded(cfg, state: dict, out: str, layers: list[str]) -> dict:
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, out_path)
    folded_cfg = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
    folded_cfg.compress.sparsity.enabled = False
    OmegaConf.save(folded_cfg, out_path.with_suffix(".yaml"))
    scfg = cfg.compress.sparsity
    nm = (scfg.n, scfg.m) if scfg.enabled and scfg.method == "nm" else None
    report = sparsity_report(state, layers, nm)
    Path(f"{out}.sparsity.json").write_text(json.dumps(report, indent=2))
    print(format_sparsity(report))
    print(f"wrote {out}, {out_path.with_suffix('.yaml')} and {out}.sparsity.json")
    if nm is not None and not report["total"]["nm_ok"]:
        bad = [n for n, r in report["layers"].items() if not r["nm_ok"]]
        raise SystemExit(f"not {nm[0]}:{nm[1]} after folding: {bad[:5]}")
    return report


def cmd_fold(args) -> dict:
    cfg, model = _load(args)
    layers = [name for name, _ in sparse_layers(model)]
    return _write_folded(cfg, folded_state_dict(model), args.out, layers)


def cmd_apply(args) -> dict:
    cfg = load_config(args.config, args.override)
    model = build_model(cfg)
    load_weights(model, args.base, "--base")
    masks, _ = load_masks(args.masks)
    apply_masks(model, masks, args.masks)
    return _write_folded(cfg, model.state_dict(), args.out, list(masks))


def cmd_compare(args) -> dict:
    a, _ = load_masks(args.a)
    b, _ = load_masks(args.b)
    result = mask_iou(a, b)
    result["removed_fraction"] = [
        sum(int((~m).sum()) for m in x.values()) / sum(m.numel() for m in x.values())
        for x in (a, b)
    ]
    print(f"{'layer':<52}{'kept IoU':>10}{'removed IoU':>13}")
    for name, row in result["layers"].items():
        print(f"{name:<52}{row['kept_iou']:>10.4f}{row['removed_iou']:>13.4f}")
    total = result["total"]
    print(f"{'all layers':<52}{total['kept_iou']:>10.4f}{total['removed_iou']:>13.4f}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    if args.plot:
        plot_iou(result, args.plot, f"{args.a} vs {args.b}")
        print(f"wrote {args.plot}")
    return result


def plot_iou(result: dict, path: str, title: str) -> None:
    """Per-layer bars of the removed-weight IoU (the dashed line: two random removals)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(result["layers"])
    removed = [result["layers"][n]["removed_iou"] for n in names]
    fig, ax = plt.subplots(figsize=(max(7, 0.22 * len(names)), 4.5))
    ax.bar(range(len(names)), removed, color="tab:blue")
    # two independent random masks removing fractions p and q: IoU = pq / (p + q - pq)
    layers = result.get("removed_fraction")
    if layers:
        p, q = layers
        ax.axhline(p * q / (p + q - p * q), color="tab:red", ls="--", label="random masks")
        ax.legend()
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels([n.replace("encoder.encoders.", "enc").replace("decoder.", "dec.")
                        for n in names], rotation=90, fontsize=6)  # fmt: skip
    ax.set_ylabel("IoU of removed weights")
    ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def format_sparsity(report: dict) -> str:
    nm = "nm_ok" in report["total"]
    lines = [f"{'layer':<52}{'params':>10}{'sparsity':>10}" + ("   N:M" if nm else "")]
    for name, row in [*report["layers"].items(), ("whole (masked layers)", report["total"])]:
        line = f"{name:<52}{row['params']:>10,}{row['sparsity']:>10.4f}"
        lines.append(line + (f"   {'ok' if row['nm_ok'] else 'NO'}" if nm else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("save", "fold"):
        s = sub.add_parser(name)
        s.add_argument("--config", required=True, help="the sparse experiment's train.yaml")
        s.add_argument("--checkpoint", required=True)
        s.add_argument("--out", required=True)
        s.add_argument("--override", nargs="*", default=[])
        if name == "save":
            s.add_argument("--base", default="", help="the shared checkpoint the mask sits on")
    s = sub.add_parser("apply")
    s.add_argument("--config", required=True, help="the base model's train.yaml")
    s.add_argument("--base", required=True)
    s.add_argument("--masks", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--override", nargs="*", default=[])
    s = sub.add_parser("compare")
    s.add_argument("a")
    s.add_argument("b")
    s.add_argument("--json", default="")
    s.add_argument("--plot", default="", help="PNG of the per-layer IoU")
    args = p.parse_args(argv)
    commands = {"save": cmd_save, "fold": cmd_fold, "apply": cmd_apply, "compare": cmd_compare}
    return commands[args.command](args)


if __name__ == "__main__":
    main()
