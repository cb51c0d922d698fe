"""tools/compress_table.py: the QAT table with the C++ runtime's figures of stage 11 beside the
Python WER (runtime directory size, kernel path, WER, agreement with the eager decode and RTF),
where a run has them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
OVERALL = "Overall -> {:.2f} % N=100 C=90 S=5 D=3 I=2\n"


def _wer(path: Path, wer: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(OVERALL.format(wer))


def _runtime(
    exp: Path, name: str, files: dict[str, int], wer: float, rtf: float, path: str, text: str = ""
):
    """A runtime directory whose files have the given sizes, decoded at full context into
    `text` (decoder_main's `key transcript` lines)."""
    rt = exp / name
    rt.mkdir(parents=True)
    for f, size in files.items():
        (rt / f).write_bytes(b"\0" * size)
    (rt / "units.txt").write_text("<blank> 0\n")
    (rt / "meta.json").write_text(json.dumps({"files": {f: f for f in files}}))
    _wer(rt / "test" / "chunk-1" / "wer", wer)
    (rt / "test" / "chunk-1" / "rtf.json").write_text(json.dumps({"rtf": rtf, "kernel_path": path}))
    (rt / "test" / "chunk-1" / "text").write_text(text)
    return (
        sum(files.values()) + (rt / "units.txt").stat().st_size + (rt / "meta.json").stat().st_size
    )


def test_table_has_the_runtime_columns(tmp_path):
    float_dir, qat = tmp_path / "mini", tmp_path / "mini_qat_int4"
    eager = "u1 a cat\nu2 the dog\nu3 sat\nu4 \n"  # the eager decodes (u4: empty)
    for exp, wer in ((float_dir, 40.0), (qat, 42.0)):
        _wer(exp / "test" / "attention_rescoring" / "wer", wer)
        (exp / "test" / "attention_rescoring" / "text").write_text(eager)
    quant = {"bits": 4, "symmetric": True, "granularity": "channel", "clip": "none",
             "estimator": "ste", "learnable_scale": False, "norm_decay": 0.0,
             "native_int": False, "bits_by_role": []}  # fmt: skip
    (qat / "train.yaml").write_text(yaml.safe_dump({"compress": {"quant": quant}}))
    (qat / "packed.pt.size.json").write_text(
        json.dumps({"total": {"packed_bytes": 2_000_000, "ratio": 7.5, "float32_bytes": 15e6}})
    )
    # the float model's runtime from stage 7; the QAT run's from stage 11 (.onnx not counted)
    # C++ agrees with eager on every float transcript; on 3 of the QAT run's 4 (u2 differs)
    _runtime(float_dir, "runtime_fp32", {"weights.bin": 15_000_000, "x.onnx": 9}, 40.1, 0.05,
             "fp32", eager)  # fmt: skip
    size = _runtime(qat, "runtime", {"weights.bin": 2_000_000, "encoder_full.pt2": 300_000},
                    42.2, 0.048, "fp32", "u1 a cat\nu2 the log\nu3 sat\nu4\n")  # fmt: skip
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'tools'}:{REPO}"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "compress_table.py"), "--float_dir", str(float_dir),
         "--modes", "attention_rescoring", str(qat)],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert (
        "| C++ kernel path | C++ attention_rescoring WER % | identical to eager % "
        "| C++ - eager WER | C++ RTF |"
    ) in proc.stdout
    assert f"| 42.00 (+5.0 %) | {size / 1e6:.2f} | fp32 | 42.20 | 75.0 | +0.20 | 0.0480 |" in (
        proc.stdout
    )
    assert "| 40.00 (+0.0 %) | 15.00 | fp32 | 40.10 | 100.0 | +0.10 | 0.0500 |" in proc.stdout
    rows = json.loads((float_dir / "compress_table.json").read_text())["qat_rows"]
    assert rows[1]["runtime"]["dir"] == str(qat / "runtime")
    assert rows[1]["runtime"]["identical"] == 0.75
