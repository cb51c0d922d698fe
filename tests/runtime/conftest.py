"""Fixtures for the export and C++ runtime tests: a tiny experiment directory (config,
checkpoint, units) exported once per session, and the runtime built once per session."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr
import torch
from omegaconf import OmegaConf

import wenet_eff
from tests.tiny import TINY

# 12 units: blank, unk, 9 symbols with "▁" (a space), sos/eos
UNITS = ["<blank>", "<unk>", "▁", "A", "B", "C", "D", "E", "F", "G", "H", "<sos/eos>"]
CHUNK, LEFT = 4, 2
ASTERISK = Path("/usr/share/asterisk/sounds/en")
PROMPTS = ["hello-world", "vm-goodbye", "agent-pass", "conf-onlyperson", "vm-intro"]


def make_experiment(root, name: str, *overrides: str):
    """train.yaml + model.pt + units.txt of a random tiny model under root/name."""
    exp = root / name
    exp.mkdir(parents=True)
    (exp / "units.txt").write_text("".join(f"{u} {i}\n" for i, u in enumerate(UNITS)))
    cfg = wenet_eff.load_config("mini", [*TINY, f"tokenizer.units={exp / 'units.txt'}", *overrides])
    torch.manual_seed(0)
    model = wenet_eff.build_model(cfg).eval()
    # sharper, varied posteriors than a fresh init: scale the CTC head
    with torch.no_grad():
        model.ctc.ctc_lo.weight.mul_(8.0)
    torch.save(model.state_dict(), exp / "model.pt")
    OmegaConf.save(cfg, exp / "train.yaml")
    return exp


def export(exp, out: str, *extra: str):
    from wenet_eff.bin import export as export_cli

    export_cli.main(
        [
            "--config", str(exp / "train.yaml"),
            "--checkpoint", str(exp / "model.pt"),
            "--out_dir", str(exp / out),
            "--chunk_size", str(CHUNK),
            "--num_left_chunks", str(LEFT),
            *extra,
        ]
    )  # fmt: skip
    return exp / out


@pytest.fixture(scope="session")
def dense_exp(tmp_path_factory):
    return make_experiment(tmp_path_factory.mktemp("runtime"), "dense")


@pytest.fixture(scope="session")
def dense_fp32(dense_exp):
    """The tiny dense model exported in fp32, .pt2 and .onnx (two pieces at a time, in spawned
    processes: the tests of these graphs also test the parallel export)."""
    return export(dense_exp, "fp32", "--jobs", "2")


@pytest.fixture(scope="session")
def dense_int8(dense_exp):
    """The tiny dense model exported on the int8 kernel path alone (.pt2 only)."""
    return export(dense_exp, "int8", "--precisions", "int8", "--formats", "pt2", "--jobs", "2")


@pytest.fixture(scope="session")
def runtime():
    """The C++ runtime's pybind11 module, built (incrementally) by runtime/build.sh."""
    from wenet_eff.export.cpp import REPO, load_runtime

    proc = subprocess.run(
        ["bash", str(REPO / "runtime" / "build.sh")],
        env={**__import__("os").environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        pytest.fail(f"runtime build failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    rt = load_runtime()
    rt.set_num_threads(1)
    return rt


@pytest.fixture(scope="session")
def speech(tmp_path_factory) -> list[tuple[str, Path, np.ndarray]]:
    """Real recorded prompts (asterisk-core-sounds-en-wav), resampled to 16 kHz wavs."""
    if not (ASTERISK / "hello-world.wav").exists():
        pytest.skip(f"{ASTERISK} missing: install asterisk-core-sounds-en-wav")
    root = tmp_path_factory.mktemp("speech")
    out = []
    for name in PROMPTS:
        wav, sr = sf.read(ASTERISK / f"{name}.wav", dtype="float32")
        wav = soxr.resample(wav, sr, 16000).astype(np.float32)
        path = root / f"{name}.wav"
        sf.write(path, wav, 16000, subtype="PCM_16")
        wav, _ = sf.read(path, dtype="float32")  # what the int16 file holds
        out.append((name, path, wav))
    return out
