"""Helpers for the trainer tests: a tiny synthetic corpus, tiny-model overrides, and a runner
for `python -m wenet_eff.bin.train` (plain or under torchrun) in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from wenet_eff.data.tokenizer import char_units_from_texts, write_units

REPO = Path(__file__).resolve().parents[2]
WORDS = "red green blue cat dog sun".split()

# tiny U2++: a 1-block encoder of width 32, 1+1 decoder blocks
TINY_MODEL = [
    "model.encoder.output_size=32",
    "model.encoder.attention_heads=2",
    "model.encoder.linear_units=64",
    "model.encoder.num_blocks=1",
    "model.encoder.cnn_module_kernel=5",
    "model.decoder.attention_heads=2",
    "model.decoder.linear_units=64",
    "model.decoder.num_blocks=1",
    "model.decoder.r_num_blocks=1",
]
# deterministic, fast data: no workers, no dither; spec_aug stays on (seeded per epoch)
TINY_DATA = [
    "data.num_workers=0",
    "data.batch_size=4",
    "data.dither=0.0",
    "data.shuffle_size=8",
    "data.sort_size=4",
    "data.filter.max_length=400",
]


@dataclass
class Corpus:
    """`train.list` (n utterances), `cv.list` (4), `units.txt` under `root`."""

    root: Path
    train_list: Path
    cv_list: Path
    units: Path

    def overrides(self, exp_dir: Path, *extra: str) -> list[str]:
        """Hydra overrides for a tiny run of this corpus into `exp_dir`."""
        return [
            f"data.train_data={self.train_list}",
            f"data.cv_data={self.cv_list}",
            f"tokenizer.units={self.units}",
            f"train.exp_dir={exp_dir}",
            "train.log_interval=1",
            "optim.warmup_steps=5",
            *TINY_MODEL,
            *TINY_DATA,
            *extra,
        ]


def write_corpus(root: Path, n_train: int) -> Corpus:
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    texts = []

    def write_list(name: str, count: int, offset: int) -> Path:
        lines = []
        for i in range(count):
            key = f"{name}{i:03d}"
            seconds = 0.3 + 0.05 * ((i + offset) % 7)
            wav = root / f"{key}.wav"
            sf.write(
                wav, (0.1 * rng.standard_normal(int(16000 * seconds))).astype(np.float32), 16000
            )
            text = " ".join(rng.choice(WORDS, size=int(rng.integers(1, 3))))
            texts.append(text)
            lines.append(json.dumps({"key": key, "wav": str(wav), "txt": text}) + "\n")
        path = root / f"{name}.list"
        path.write_text("".join(lines), encoding="utf-8")
        return path

    train_list = write_list("train", n_train, 0)
    cv_list = write_list("cv", 4, 3)
    units = root / "units.txt"
    write_units(units, char_units_from_texts(texts, normalize="english"))
    return Corpus(root, train_list, cv_list, units)


def run_train(
    overrides: list[str],
    nproc: int = 0,
    module: str = "wenet_eff.bin.train",
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess:
    """Run the training entry point in a subprocess (under torchrun when nproc > 0)."""
    if nproc:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={nproc}",
            "-m",
            module,
        ]
    else:
        cmd = [sys.executable, "-m", module]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run(
        [*cmd, *overrides],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def check(proc: subprocess.CompletedProcess) -> None:
    """Fail with the subprocess output when it did not exit cleanly."""
    assert proc.returncode == 0, (
        f"exit {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
    )
