"""Size x WER table of QAT experiments against their float model.

Reads FLOAT_DIR/test/<mode>/wer (the float model, or better the float control run fine-tuned
like the QAT runs) and, for each QAT experiment dir, its train.yaml (compress
settings), packed.pt.size.json (bin.pack) and test/<mode>/wer, and where stage 11 decoded it in
the C++ runtime (EXP/runtime, for the float model also EXP/runtime_fp32 of stage 7) the
runtime directory's size, the kernel path, WER and RTF at full context
(runtime/test/chunk-1/{wer,rtf.json,text}) and its agreement with the eager decode of the same
model (EXP/test/attention_rescoring/text: for a QAT run the packed model, which computes what the
fake-quant model trained): the share of identical transcripts and the WER difference; prints a
Markdown table and
writes the same rows as JSON with its provenance (FLOAT_DIR/compress_table.json, for RESULTS.md)
and a WER-against-size plot (FLOAT_DIR/compress_wer_vs_size.png).

Usage: compress_table.py --float_dir exp/mini --modes "ctc_greedy_search attention_rescoring" \
           exp/mini_qat_int8 exp/mini_qat_int4
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import yaml
from runtime_table import python_side  # tools/ (path.sh puts it on PYTHONPATH)
from wer_table import mode_wers

from wenet_eff.bench.common import write_json
from wenet_eff.bench.results import parse_overall
from wenet_eff.bench.sections import compress_table
from wenet_eff.export.package import runtime_bytes


def describe(quant: dict) -> str:
    """A short label of the quantizer settings, e.g. `4-bit sym channel ste`."""
    kind = "binary" if quant["bits"] == 1 else ("sym" if quant["symmetric"] else "asym")
    parts = [f"{quant['bits']}-bit", kind, quant["granularity"]]
    if quant["granularity"] == "subchannel":
        parts[-1] += f"/{quant['block_size']}"
    if quant["clip"] != "none":
        parts.append(f"clip={quant['clip']}")
    parts.append(quant["estimator"])
    if quant["learnable_scale"]:
        parts.append("learnable scale")
    if quant["norm_decay"] > 0:
        parts.append(f"norm decay {quant['norm_decay']:g}")
    if quant["native_int"]:
        parts.append("native int")
    if quant["bits_by_role"]:
        parts.append("(" + ", ".join(quant["bits_by_role"]) + ")")
    return " ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--float_dir", required=True, help="the float baseline's exp dir")
    parser.add_argument("--modes", required=True, help="space-separated")
    parser.add_argument("--test_set", default="test")
    parser.add_argument("qat_dirs", nargs="+")
    args = parser.parse_args()
    modes = args.modes.split()

    def wers(exp: str) -> dict[str, float]:
        return mode_wers(os.path.join(exp, args.test_set), modes)

    def runtime(exp: str) -> dict | None:
        for name in ("runtime", "runtime_fp32"):
            result = os.path.join(exp, name, args.test_set, "chunk-1")
            if os.path.exists(os.path.join(result, "rtf.json")):
                with open(os.path.join(result, "rtf.json"), encoding="utf-8") as f:
                    rtf = json.load(f)
                wer = parse_overall(os.path.join(result, "wer"))["wer"]
                # eager's attention_rescoring of the same model: {"python_wer", "identical"}
                eager = python_side(exp, args.test_set, False, os.path.join(result, "text"))
                return {"dir": os.path.join(exp, name),
                        "bytes": runtime_bytes(os.path.join(exp, name)),
                        "kernel_path": rtf.get("kernel_path", ""), "rtf": rtf["rtf"],
                        "wer": wer, "identical": eager.get("identical"),
                        "wer_diff": wer - eager["python_wer"] if eager else None}  # fmt: skip
        return None

    rows = []
    for exp in args.qat_dirs:
        with open(os.path.join(exp, "packed.pt.size.json"), encoding="utf-8") as f:
            size = json.load(f)
        with open(os.path.join(exp, "train.yaml"), encoding="utf-8") as f:
            quant = yaml.safe_load(f)["compress"]["quant"]
        rows.append(
            {
                "exp": exp,
                "quant": describe(quant),
                "bytes": size["total"]["packed_bytes"],
                "ratio": size["total"]["ratio"],
                "wer": wers(exp),
                "runtime": runtime(exp),
            }
        )
    float_bytes = size["total"]["float32_bytes"]
    rows.insert(
        0, {"exp": args.float_dir, "quant": "float32", "bytes": float_bytes, "ratio": 1.0,
            "wer": wers(args.float_dir), "runtime": runtime(args.float_dir)}
    )  # fmt: skip
    data = {"float_dir": args.float_dir, "test_set": args.test_set, "modes": modes,
            "qat_rows": rows}  # fmt: skip
    print(compress_table(data), end="")
    write_json(data, os.path.join(args.float_dir, "compress_table.json"))
    plot(rows, modes[-1], os.path.join(args.float_dir, "compress_wer_vs_size.png"))


def plot(rows: list[dict], mode: str, path: str) -> None:
    """WER against packed size (log scale), one labelled point per experiment."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, row in enumerate(rows):
        size, wer = row["bytes"] / 1e6, row["wer"][mode]
        ax.scatter(size, wer, color="tab:blue" if row["quant"] != "float32" else "tab:red")
        label = row["quant"].split(" (")[0]
        ax.annotate(
            label,
            (size, wer),
            textcoords="offset points",
            xytext=(4, 4 if i % 2 else -10),
            fontsize=7,
        )
    ax.set_xscale("log")
    ax.set_xlabel("packed model size (MB, log scale)")
    ax.set_ylabel(f"{mode} WER %")
    ax.set_title("QAT: WER against model size")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"{path} written", file=sys.stderr)


if __name__ == "__main__":
    main()
