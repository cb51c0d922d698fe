"""End to end: the mini recipe's stages (-1..12 and its own 20-22) on a tiny corpus with a tiny
model.

Synthesises ~80 utterances with the real TTS engines, prepares real test prompts, computes
CMVN and units, trains for a few epochs, averages, decodes with all four modes on both test sets
and scores them, exports and decodes in C++, then checks that a rerun keeps what exists
(idempotent stages): the default run's end-to-end test. The streaming, compression, adaptation,
sweep and table stages on the same trained model are `heavy` (make test-all).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.tiny import TINY

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "recipes" / "mini" / "s0"
MODES = ["ctc_greedy_search", "ctc_prefix_beam_search", "attention", "attention_rescoring"]

needs_tts = pytest.mark.skipif(
    not (shutil.which("espeak-ng") and shutil.which("flite") and shutil.which("ffmpeg")),
    reason="TTS engines / ffmpeg not installed (make test installs them)",
)


def _run(s0: Path, *args: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("MAIN_ROOT", None)  # path.sh finds the repository through the copy's tools link
    proc = subprocess.run(
        ["bash", "run.sh", *args], cwd=s0, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


@dataclass
class Recipe:
    s0: Path  # a copy of recipes/mini/s0 that the stages ran in
    opts: list[str]  # the tiny corpus and model options of every run.sh call
    runtime_log: str  # what stages 6-7 printed


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> Recipe:
    """Stages -1..5 (synthesis, data, CMVN, units, LM, training, averaging, decoding with and
    without the LM) of a copy of the recipe, with a tiny corpus and model."""
    s0 = tmp_path_factory.mktemp("mini") / "s0"
    s0.mkdir()
    for name in ("run.sh", "path.sh", "local", "conf"):
        src = RECIPE / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, s0 / name)
    (s0 / "tools").symlink_to(REPO / "tools")
    model = [o for o in TINY if not o.startswith("model.vocab_size")]
    opts = [
        "--num_sentences", "70", "--num_test", "8", "--num_dev", "6", "--max_test_real", "10",
        "--max_epoch", "3", "--average_num", "2", "--beam_size", "4", "--lm_beam_size", "4",
        "--nj", "2",
        "--runtime_precisions", "fp32", "--runtime_formats", "pt2",  # int8/onnx: tests/runtime
        # the server's batched step: tests/runtime/test_server.py (one compile less here)
        "--runtime_pieces", "encoder_chunk encoder_full decoder",
        "--train_opts", " ".join([*model, "optim.warmup_steps=20", "data.batch_type=static",
                                  "data.batch_size=8", "optim.lr=0.002",
                                  "train.log_interval=5"]),
    ]  # fmt: skip
    _run(s0, "--stage", "-1", "--stop_stage", "5", *opts)
    # stages 6-7, a run of their own (each run has 10 minutes): the export (fp32 .pt2 only,
    # checked against PyTorch) and the C++ runtime; AOTInductor compiles take minutes here, so
    # the int8 and ONNX exports are left to tests/runtime
    return Recipe(s0, opts, _run(s0, "--stage", "6", "--stop_stage", "7", *opts))


@needs_tts
@pytest.mark.slow
@pytest.mark.timeout(1800)  # the fixture's stages, with three AOTInductor compiles: ~10 min loaded
def test_mini_recipe_trains_decodes_and_runs_in_cpp(recipe):
    """Stages -1..7: what make demo runs, checked; then a rerun keeps what exists."""
    s0, opts, log = recipe.s0, recipe.opts, recipe.runtime_log
    for split in ("train", "dev", "test", "test_real"):
        assert (s0 / "data" / split / "data.list").stat().st_size > 0
    exp = s0 / "exp" / "mini_moe"
    cfg = yaml.safe_load((exp / "train.yaml").read_text())
    units = (s0 / "data" / "dict" / "units.txt").read_text().splitlines()
    assert cfg["model"]["vocab_size"] == len(units)
    infos = [yaml.safe_load((exp / f"{e}.yaml").read_text()) for e in range(3)]
    assert infos[-1]["cv_loss"] < infos[0]["cv_loss"]  # it learns something in three epochs
    assert (exp / "avg_2.pt").exists() and (exp / "final.pt").exists()
    for test_set in ("test", "test_real"):
        ref_keys = {
            line.split()[0] for line in (s0 / "data" / test_set / "text").read_text().splitlines()
        }
        for mode in MODES:
            hyp = (exp / test_set / mode / "text").read_text().splitlines()
            assert {line.split(maxsplit=1)[0] for line in hyp} == ref_keys
            wer = (exp / test_set / mode / "wer").read_text()
            assert re.search(r"^Overall -> \d+\.\d\d % N=\d+ C=\d+ S=\d+ D=\d+ I=\d+", wer, re.M)
    table = (exp / "wer_table.md").read_text()
    assert all(mode in table for mode in MODES)
    # the word 3-gram LM of the training text (stage 2), fused in stage 5 into lm/<mode>
    assert (s0 / "data" / "lm" / "3gram.arpa").read_text().startswith("\n\\data\\")
    for test_set in ("test", "test_real"):
        for mode in ("ctc_prefix_beam_search", "attention_rescoring"):
            wer = (exp / test_set / "lm" / mode / "wer").read_text()
            assert re.search(r"^Overall -> \d+\.\d\d % N=", wer, re.M)
            assert f"| lm/{mode} |" in table
    # stages 6-7 (the fixture's last run): the fp32 .pt2 export and the C++ runtime
    assert not (exp / "runtime_int8").exists()
    rt = exp / "runtime_fp32"
    meta = json.loads((rt / "meta.json").read_text())
    assert meta["int8"] is False and meta["chunk_size"] == 16
    assert sorted(p.name for p in rt.glob("*.pt2")) == [
        "decoder.pt2", "encoder_chunk.pt2", "encoder_full.pt2"
    ]  # fmt: skip
    assert not list(rt.glob("*.onnx"))
    for test_set in ("test", "test_real"):
        for result in (rt / test_set / f"{lm}chunk{c}" for lm in ("", "lm/") for c in (-1, 16)):
            keys = {
                line.split(maxsplit=1)[0] for line in (result / "text").read_text().splitlines()
            }
            assert keys == {
                line.split()[0]
                for line in (s0 / "data" / test_set / "text").read_text().splitlines()
            }
            assert json.loads((result / "rtf.json").read_text())["rtf"] > 0
            assert re.search(r"^Overall -> ", (result / "wer").read_text(), re.M)
    assert "max |diff| per output" in log
    runtime_table = (exp / "runtime_table.md").read_text()
    assert "runtime_fp32 | test_real | no | 16 (4)" in runtime_table
    assert "runtime_fp32 | test_real | yes | 16 (4)" in runtime_table
    # at full context, with and without the LM, C++ writes Python's transcripts (fp32)
    rows = json.loads((exp / "runtime_table.json").read_text())["runtime_rows"]
    full = [r for r in rows if r["chunk"] == -1]
    assert len(full) == 4 and all(r["identical"] == 1.0 for r in full), full
    assert all(r["wer"] == r["python_wer"] for r in full)

    again = _run(s0, "--stage", "1", "--stop_stage", "5", *opts)
    assert "exp/mini_moe/final.pt exists, kept" in again
    assert "data/train/global_cmvn exists, kept" in again


@needs_tts
@pytest.mark.slow
@pytest.mark.heavy
@pytest.mark.timeout(1800)
def test_mini_recipe_streaming_compression_adaptation_sweep_and_tables(recipe):
    """Stages 8-12 and 20-22 on the fixture's trained model."""
    s0, opts = recipe.s0, recipe.opts
    exp = s0 / "exp" / "mini_moe"

    # streaming fine-tuning (stage 8) and decoding per chunk size (stage 9)
    log = _run(s0, "--stage", "8", "--stop_stage", "9", *opts, "--ft_steps", "6",
               "--ft_warmup", "2", "--decoding_chunks", "4 -1", "--ft_average_num", "1",
               "--init_checkpoint", "exp/mini_moe/avg_2.pt")  # fmt: skip
    streaming = s0 / "exp" / "mini_moe_streaming"
    assert "weights initialised from exp/mini_moe/avg_2.pt" in log
    enc = yaml.safe_load((streaming / "train.yaml").read_text())["model"]["encoder"]
    assert enc["use_dynamic_chunk"] and enc["causal"]
    table = (streaming / "wer_table.md").read_text()
    assert "test/chunk4 WER %" in table and "test/full WER %" in table
    for name in ("chunk4", "full"):
        assert (streaming / "test" / name / "attention_rescoring" / "wer").exists()

    # QAT, 2:4 sparse and both at once (stage 10); packing the QAT models, folding the sparse
    # one with the N:M check, decoding them, the packed QAT models in the C++ runtime (fp32
    # graphs only: each compile takes minutes here), size and sparsity tables (stage 11)
    compress = [*opts, "--compress_configs", "qat_int4 sparse_2_4 int4_sparse_2_4",
                "--compress_steps", "6",
                "--compress_warmup", "2", "--ft_average_num", "1", "--init_checkpoint",
                "exp/mini_moe/avg_2.pt", "--compress_runtime_precisions", "fp32"]  # fmt: skip
    _run(s0, "--stage", "10", "--stop_stage", "10", *compress)
    log = _run(s0, "--stage", "11", "--stop_stage", "11", *compress)
    qat = s0 / "exp" / "mini_moe_qat_int4"
    assert (qat / "packed.pt").stat().st_size < (exp / "avg_2.pt").stat().st_size / 5
    assert (qat / "test" / "attention_rescoring" / "wer").exists()
    meta = json.loads((qat / "runtime" / "meta.json").read_text())
    assert meta["packed"] and meta["layers"]["encoder.encoders.0.self_attn.linear_q"]["bits"] == 4
    assert json.loads((qat / "runtime" / "test" / "chunk-1" / "rtf.json").read_text())["rtf"] > 0
    table = (exp / "compress_table.md").read_text()
    assert "4-bit sym channel ste" in table and "float32" in table
    assert "C++ kernel path" in table and "| fp32 |" in table
    assert (exp / "compress_wer_vs_size.png").stat().st_size > 0
    sparse = s0 / "exp" / "mini_moe_sparse_2_4"
    report = json.loads((sparse / "folded.pt.sparsity.json").read_text())["total"]
    assert report["nm_ok"] and report["sparsity"] == 0.5
    assert (sparse / "test" / "attention_rescoring" / "wer").exists()
    assert "| 2:4 SR-STE | 50.0% | yes |  |" in (exp / "sparse_table.md").read_text()
    # 4-bit 2:4 in the runtime as its codes and positions; both tables list it
    both = s0 / "exp" / "mini_moe_int4_sparse_2_4"
    layer = json.loads((both / "runtime" / "meta.json").read_text())["layers"][
        "encoder.encoders.0.self_attn.linear_q"
    ]
    assert layer["bits"] == 4 and layer["nm"] == [2, 4]
    assert "| 2:4 SR-STE + int4 | 50.0% | yes |" in (exp / "sparse_table.md").read_text()
    # the C++ runtime's transcripts are the eager packed models' (stage 11's agreement columns)
    rows = json.loads((exp / "compress_table.json").read_text())["qat_rows"]
    runs = {os.path.basename(r["exp"]): r["runtime"] for r in rows[1:]}
    assert set(runs) == {"mini_moe_qat_int4", "mini_moe_int4_sparse_2_4"}
    for name, runtime in runs.items():
        assert runtime["identical"] == 1.0 and runtime["wer_diff"] == 0.0, (name, runtime)

    # a held-out voice: S3-Router masks vs fine-tuning all weights (stages 20-21)
    log = _run(s0, "--stage", "20", "--stop_stage", "21", *opts, "--adapt_voices", "flite-awb",
               "--num_adapt", "8", "--num_adapt_dev", "3", "--num_adapt_test", "5",
               "--adapt_steps", "4", "--adapt_warmup", "1", "--average_num", "1",
               "--init_checkpoint", "exp/mini_moe/avg_2.pt")  # fmt: skip
    router = s0 / "exp" / "mini_moe_adapt_flite-awb_router"
    assert len((s0 / "data" / "domain_flite-awb" / "test" / "text").read_text().splitlines()) == 5
    mask_info = json.loads((router / "masks.pt.json").read_text())
    assert mask_info["ratio"] >= 25 and abs(mask_info["kept"] - 0.9) < 1e-3
    hyp = router / "domain_flite-awb" / "test" / "attention_rescoring" / "text"
    assert len(hyp.read_text().splitlines()) == 5
    table = (exp / "adapt_table.md").read_text()
    assert "S3-Router mask (keep 0.9)" in table and "fine-tune all weights" in table

    # the stability lr sweep (stage 22): two variants x two learning rates, a few updates each
    log = _run(s0, "--stage", "22", "--stop_stage", "22", *opts, "--sweep_variants",
               "none qk_norm_cap", "--sweep_lrs", "0.002 3.0", "--sweep_steps", "4",
               "--sweep_warmup", "1")  # fmt: skip
    sweep = json.loads((s0 / "exp" / "lr_sweep" / "sweep.json").read_text())
    assert [r["variant"] for r in sweep["summary"]["rows"]] == ["none", "qk_norm_cap"]
    assert len(sweep["runs"]) == 4 and (s0 / "exp" / "lr_sweep" / "linear_norms.png").exists()
    assert "highest learning rate without divergence" in log

    # tables and plots of every experiment (stage 12), with the RTF of the runtime stage
    _run(s0, "--stage", "12", "--stop_stage", "12", *opts)
    tables = json.loads((s0 / "exp" / "tables" / "tables.json").read_text())
    wer = json.loads((exp / "wer_table.json").read_text())["results"]
    md = (s0 / "exp" / "tables" / "tables.md").read_text()
    assert f"{wer['test']['attention_rescoring']['wer']:.2f}" in md
    assert (s0 / "exp" / "tables" / "wer_vs_rtf.png").read_bytes()[:4] == b"\x89PNG"
    assert tables
