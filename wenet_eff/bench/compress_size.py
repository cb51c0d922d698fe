"""Packed model sizes per compression config and model shape (real packing, random weights).

    python -m wenet_eff.bench.compress_size --models mini u2pp_conformer paper_dense_225m

Packs each model (vocabulary 5002 unless --vocab_size) with each packaged compress config
exactly as `bin.pack` does and reports float32 bytes, packed bytes and the ratio for the whole
model (biases, norms and CMVN stay float32 and are included); for the model without its edge
layers (the front-end convolution, the token embeddings and the output layers, which the
low-bit configs keep at 8 bits: the targets' "8-bit embeddings/outputs reported separately"),
biases and norms still included; for the edge layers alone; and for the layers at the
config's main bit width alone.
`int4_sparse_2_4` stores its 2:4 layers as 2 levels of every 4 plus their positions.
Sizes do not depend on the weight values. Writes JSON and prints a table.
"""

from __future__ import annotations

import argparse

import torch

import wenet_eff
from wenet_eff.bench.common import environment, write_json
from wenet_eff.compress.pack import pack_model, size_report

# kept at 8 bits by the low-bit configs, reported on their own
EDGE_ROLES = ("subsampling.conv", "embedding", "output")

CONFIGS = [
    "qat_int8", "mixed_4_8", "qat_int4", "int4_sparse_2_4", "qat_int2", "qat_int2_subchannel",
    "binary",
]  # fmt: skip


def measure(model_name: str, config: str, vocab_size: int, overrides=()) -> dict:
    torch.manual_seed(0)
    cfg = wenet_eff.load_config(
        model_name, [f"model.vocab_size={vocab_size}", f"compress={config}", *overrides]
    )
    model = wenet_eff.build_model(cfg)
    report = size_report(model, pack_model(model, cfg))
    bits = cfg.compress.quant.bits
    main = [r for k, r in report["roles"].items() if f"({bits}-bit" in k]
    main_float = sum(r["float32_bytes"] for r in main)
    main_packed = sum(r["packed_bytes"] for r in main)
    edge = {k: r for k, r in report["roles"].items() if k.split(" (")[0] in EDGE_ROLES}
    edge_float = sum(r["float32_bytes"] for r in edge.values())
    edge_packed = sum(r["packed_bytes"] for r in edge.values())
    edge_bits = sorted({k.split("(")[1].split("-bit")[0] for k in edge})
    total = report["total"]
    return {
        "model": model_name,
        "compress": config,
        "params": report["total"]["params"],
        "float32_bytes": report["total"]["float32_bytes"],
        "packed_bytes": report["total"]["packed_bytes"],
        "ratio": report["total"]["ratio"],
        "bits": cfg.compress.quant.bits,
        # the layers at the config's main bit width alone (8-bit front end / outputs left out)
        "main_bits_ratio": main_float / main_packed,
        "edge_float32_bytes": edge_float,
        "edge_packed_bytes": edge_packed,
        "edge_bits": "/".join(edge_bits),
        "without_edge_ratio": (total["float32_bytes"] - edge_float)
        / (total["packed_bytes"] - edge_packed),
        "other_float_bytes": report["other_float"]["bytes"],
        "roles": report["roles"],
    }


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--models", nargs="+", default=["mini", "u2pp_conformer"])
    p.add_argument("--configs", nargs="+", default=CONFIGS)
    p.add_argument("--vocab_size", type=int, default=5002)
    p.add_argument(
        "--override", nargs="*", default=[],
        help="config overrides for every config, e.g. compress.quant.block_size=128",
    )  # fmt: skip
    p.add_argument("--out", default="bench_results/compress_size.json")
    args = p.parse_args(argv)
    rows = [
        measure(m, c, args.vocab_size, args.override) for m in args.models for c in args.configs
    ]
    if args.override:
        print("overrides: " + " ".join(args.override))
    print(f"packed sizes (vocabulary {args.vocab_size})")
    print(
        f"{'model':<18}{'compress':<22}{'params':>12}{'float32 MB':>12}{'packed MB':>11}"
        f"{'ratio':>8}{'without edge':>14}{'edge MB':>9}{'edge bits':>11}{'b-bit layers only':>19}"
    )
    for r in rows:
        print(
            f"{r['model']:<18}{r['compress']:<22}{r['params']:>12,}"
            f"{r['float32_bytes'] / 1e6:>12.2f}{r['packed_bytes'] / 1e6:>11.2f}"
            f"{r['ratio']:>8.2f}{r['without_edge_ratio']:>14.2f}"
            f"{r['edge_packed_bytes'] / 1e6:>9.2f}{r['edge_bits']:>11}"
            f"{r['main_bits_ratio']:>19.2f}"
        )
    print(
        "without edge: the whole model minus the front-end conv, token embeddings and output "
        "layers (edge MB: their packed size, at edge bits)"
    )
    result = {
        "vocab_size": args.vocab_size, "overrides": args.override, "results": rows,
        **environment(),
    }  # fmt: skip
    write_json(result, args.out)
    return result


if __name__ == "__main__":
    main()
