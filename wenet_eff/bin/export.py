"""Export a trained model to a runtime model directory (AOTInductor .pt2 + weights + ONNX +
meta.json).

    python -m wenet_eff.bin.export --config exp/mini/train.yaml --checkpoint exp/mini/avg_2.pt \
        --chunk_size 16 --num_left_chunks 4 --out_dir exp/mini/runtime_fp32
    python -m wenet_eff.bin.export ... --precisions int8 --out_dir exp/mini/runtime_int8
    python -m wenet_eff.bin.export --config exp/mini_qat_int4/train.yaml \
        --checkpoint exp/mini_qat_int4/packed.pt --formats pt2 --out_dir exp/mini_qat_int4/runtime

Writes `encoder_chunk.pt2` (the streaming step for this chunk size and number of left
chunks), `encoder_full.pt2` (full context), `decoder.pt2` (attention rescoring), compiled
without their weights, which are in `weights.bin` once for all graphs; the same graphs as
`.onnx` for onnxruntime, `units.txt` and `meta.json` (wenet_eff.export.package). The C++
runtime reads the directory: `runtime/build/decoder_main --model_dir DIR ...`.

`--precisions` (fp32, bf16, int8) are the kernel paths compiled, NAME.pt2 for fp32 and
NAME.<precision>.pt2 for the others; the runtime picks the one that is fastest on its CPU
(int8 with AVX-512 VNNI / AVX-VNNI / AMX, bf16 with AMX / AVX512-BF16, else fp32). A QAT or
N:M checkpoint (or its `bin.pack` file) is exported as trained: the integer codes, scales and
zero points QAT learned, packed at their bit width (N:M: kept values + positions), not a float
copy; the int8 path multiplies those codes (w8a8 / w4a8 / w2a8). Without `--precisions`, a
float model (N:M sparse ones included) gets fp32 and a quantized one fp32 + int8 (+ bf16 when
most weights are in sub-channel groups). The .onnx graphs are float, and with int8 among the
precisions also onnxruntime's quantization of them (NAME.int8.onnx).

`--jobs N` exports N pieces at once in spawned processes (each holds a copy of the model; the
AOTInductor compiles are mostly single-threaded Python, so this is what makes export faster
on a multi-core machine).

`--check` compares every exported .pt2 / .onnx graph with the PyTorch model on random input
and prints the largest absolute differences (wenet_eff.export.verify).
"""

from __future__ import annotations

import argparse
import json
import logging
import warnings

from wenet_eff.export.kernels import PRECISIONS
from wenet_eff.export.package import PIECES, export_model
from wenet_eff.model import load_model


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", required=True, help="experiment train.yaml")
    p.add_argument("--checkpoint", required=True, help="state_dict, packed model or averaged .pt")
    p.add_argument("--masks", default="", help="a mask file (bin.masks) applied first")
    p.add_argument("--out_dir", required=True, help="the runtime model directory to write")
    p.add_argument("--units", default="", help="units.txt (default: the config's tokenizer)")
    p.add_argument("--chunk_size", type=int, default=16, help="encoder frames per step (<=0: none)")
    p.add_argument("--num_left_chunks", type=int, default=4, help="left chunks in the cache (>0)")
    p.add_argument(
        "--precisions",
        nargs="+",
        default=[],
        choices=list(PRECISIONS),
        help="kernel paths of the .pt2 graphs (default: fp32; quantized models: fp32 int8)",
    )
    p.add_argument("--formats", nargs="+", default=["pt2", "onnx"], choices=["pt2", "onnx"])
    p.add_argument("--pieces", nargs="+", default=list(PIECES), choices=list(PIECES))
    p.add_argument("--check", action="store_true", help="compare the exports with PyTorch")
    p.add_argument(
        "--jobs", type=int, default=1, help="pieces exported at once, in spawned processes"
    )
    p.add_argument("--override", nargs="*", default=[], help="config overrides key=value")
    return p


def main(argv: list[str] | None = None) -> dict:
    parser = get_parser()
    args, unknown = parser.parse_known_args(argv)
    if "--int8" in unknown:  # the flag of earlier versions
        parser.error("--int8 is now --precisions: e.g. --precisions fp32 int8")
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1 (got {args.jobs})")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    for name in ("onnxscript", "onnx_ir", "root", "torch"):
        logging.getLogger(name).setLevel(logging.ERROR)  # exporter chatter (torchvision ops...)
    warnings.filterwarnings("ignore")
    cfg, model = load_model(args.config, args.checkpoint, args.override, args.masks)
    units = args.units or str(cfg.tokenizer.units)
    meta = export_model(
        model,
        cfg,
        args.out_dir,
        units,
        chunk_size=args.chunk_size,
        num_left_chunks=args.num_left_chunks,
        precisions=tuple(args.precisions),
        formats=tuple(args.formats),
        pieces=tuple(args.pieces),
        jobs=args.jobs,
    )
    print(f"wrote {args.out_dir}: {', '.join(sorted(meta['files']))}")
    for precision, summary in meta["kernel_paths"].items():
        print(f"  {precision}: layers per kernel path {summary['layers']}")
    print(json.dumps(meta["export_seconds"]))
    if args.check:
        from wenet_eff.export.verify import format_check, verify_export

        _, reference = load_model(args.config, args.checkpoint, args.override, args.masks)
        report = verify_export(reference, args.out_dir)
        print(format_check(report))
        meta["check"] = report
    return meta


if __name__ == "__main__":
    main()
