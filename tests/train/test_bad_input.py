"""Bad input to a training run (`bin.train`'s, in this process; torchrun in a subprocess), as a
careless or hostile user gives it: each run is refused with a message that says what to do and
leaves the experiment directory as it was, or the bad utterances are skipped and counted.

- a rerun whose model does not fit the checkpoint, or whose newest checkpoint lost its resume
  state: refused, nothing in the directory changes (train.yaml included);
- a second run into a directory a live run holds (one process or torchrun): refused, naming
  the holder;
- meaningless config values, NaN in global_cmvn, a non-UTF-8 data.list: refused at start;
- transcripts CTC cannot align to their audio: counted (`ctc_infeasible`); a cv set without a
  single usable utterance stops training, and `average_model --val_best` says why it cannot
  choose.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import socket
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.train.helpers import run_train
from wenet_eff.bin import average_model
from wenet_eff.bin.train import train
from wenet_eff.config import load_config
from wenet_eff.train import checkpoint as ckpt
from wenet_eff.train.checkpoint import NoResumeState
from wenet_eff.train.lock import ExperimentLock, ExperimentLocked
from wenet_eff.train.trainer import NothingValidated

RUN = ["train.max_epoch=1", "train.save_interval=2"]  # checkpoints step_2, step_4 and 0


def run(corpus, exp: Path, *extra: str) -> None:
    """`bin.train`'s run in this process (what its command line runs after Hydra's parsing)."""
    train(load_config("mini", corpus.overrides(exp, *RUN, *extra)))


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory) -> Path:
    exp = tmp_path_factory.mktemp("trained")
    run(corpus, exp)
    return exp


def copy_of(exp: Path, tmp_path: Path) -> Path:
    shutil.copytree(exp, tmp_path / "exp", symlinks=True)
    return tmp_path / "exp"


def snapshot(exp: Path) -> dict[str, tuple[bytes, int]]:
    """Content and mtime of every file in `exp`."""
    return {
        str(p.relative_to(exp)): (p.read_bytes(), p.lstat().st_mtime_ns)
        for p in sorted(exp.rglob("*"))
        if p.is_file()
    }


def test_a_rerun_whose_model_does_not_fit_leaves_the_experiment_as_it_was(
    trained, corpus, tmp_path
):
    exp = copy_of(trained, tmp_path)
    before = snapshot(exp)
    with pytest.raises(ValueError, match="does not fit the model of this config") as info:
        run(corpus, exp, "model.encoder.output_size=48")
    assert "checkpoint to resume (is train.exp_dir another model's?)" in str(info.value)
    assert snapshot(exp) == before  # train.yaml still describes the checkpoints


def test_checkpoints_without_resume_state_are_not_overwritten_by_a_fresh_start(
    trained, corpus, tmp_path
):
    exp = copy_of(trained, tmp_path)
    (exp / "0.state.pt").unlink()  # only the newest checkpoint keeps it
    before = snapshot(exp)
    with pytest.raises(NoResumeState) as info:
        run(corpus, exp)
    assert str(info.value) == (
        f"{exp}: no checkpoint has its resume state (0.state.pt is missing; older checkpoints "
        "keep only their weights), so this run cannot be continued, and starting over here "
        "would overwrite checkpoints step_2, step_4, 0. To go on from the weights, train into "
        f"a new train.exp_dir with train.init_checkpoint={exp / '0.pt'}; to start over, delete "
        f"{exp} or train into a new train.exp_dir."
    )
    assert snapshot(exp) == before


def test_a_second_run_into_a_held_experiment_refuses_naming_the_holder(corpus, tmp_path):
    exp = tmp_path / "exp"
    holder = f"in use by another training run (pid {os.getpid()} on {socket.gethostname()}"
    with ExperimentLock(exp):  # a live run: this test's process
        with pytest.raises(ExperimentLocked, match=holder.replace("(", r"\(")):
            run(corpus, exp)
        # torchrun: every rank refuses (rank 1 learns it from rank 0) instead of waiting
        proc = run_train(corpus.overrides(exp, *RUN), nproc=2, timeout=120)
        assert proc.returncode != 0
        assert (proc.stdout + proc.stderr).count(holder) == 2, proc.stderr[-3000:]
        assert sorted(p.name for p in exp.iterdir()) == ["hydra", "train.lock"]
    assert not (exp / "train.lock").exists()


def _nan_cmvn(tmp_path: Path) -> str:
    path = tmp_path / "global_cmvn"
    path.write_text('{"mean_stat": [NaN], "var_stat": [1.0], "frame_num": 10}')
    return f"cmvn.file={path}"


def _latin1_list(tmp_path: Path) -> str:
    path = tmp_path / "data.list"
    path.write_bytes(b'{"key": "a", "wav": "a.wav", "txt": "caf\xe9"}\n')
    return f"data.train_data={path}"


@pytest.mark.parametrize(
    "bad, message",
    [
        (
            lambda _: ["data.batch_size=0", "model.encoder.num_blocks=0"],
            "config values out of range: model.encoder.num_blocks=0 (must be >= 1); "
            "data.batch_size=0 (must be >= 1)",
        ),
        (lambda tmp: [_nan_cmvn(tmp)], "global_cmvn: mean_stat[0] is nan"),
        (lambda tmp: [_latin1_list(tmp)], "data.list:1: not UTF-8 (byte 0xe9"),
    ],
    ids=["config values", "NaN cmvn", "non-UTF-8 data.list"],
)
def test_unusable_input_stops_the_run_before_the_experiment_changes(corpus, tmp_path, bad, message):
    exp = tmp_path / "exp"
    with pytest.raises(ValueError) as info:
        train(load_config("mini", [*corpus.overrides(exp, *RUN), *bad(tmp_path)]))
    assert message in str(info.value)
    assert not exp.exists() or not list(exp.iterdir())


def test_ctc_infeasible_utterances_are_counted_and_an_unusable_cv_set_stops_training(
    corpus, tmp_path, caplog
):
    rng = np.random.default_rng(0)
    entries = []
    for i, (seconds, text) in enumerate([(0.6, "red cat")] * 8 + [(0.3, "green dog sun")] * 4):
        wav = tmp_path / f"u{i}.wav"
        sf.write(wav, (0.1 * rng.standard_normal(int(16000 * seconds))).astype(np.float32), 16000)
        entries.append(json.dumps({"key": f"u{i}", "wav": str(wav), "txt": text}) + "\n")
    # 0.3 s: 6 encoder frames for 14 labels (13, and a blank between the Es); the four such
    # utterances are the whole cv set
    train_list, cv_list = tmp_path / "train.list", tmp_path / "cv.list"
    train_list.write_text("".join(entries[:9]))
    cv_list.write_text("".join(entries[8:]))
    exp = tmp_path / "exp"
    lists = [f"data.train_data={train_list}", f"data.cv_data={cv_list}"]
    with caplog.at_level(logging.INFO, logger="wenet_eff.train"):
        with pytest.raises(NothingValidated) as info:
            train(load_config("mini", [*corpus.overrides(exp, "train.max_epoch=2"), *lists]))
    assert (
        "| skipped 1 utterances: ctc_infeasible=1 | cv skipped 4 utterances: ctc_infeasible=4"
        in caplog.text
    )
    assert str(info.value).startswith(
        "the validation of checkpoint 0 had no cv utterance with a finite loss: the data "
        f"pipeline skipped 4 utterances: ctc_infeasible=4 of data.cv_data ({cv_list})"
    )
    # epoch 0's training is kept; training went no further
    assert [name for name, _ in ckpt.list_checkpoints(exp)] == ["0"]
    assert ckpt.read_info(exp / "0.yaml")["cv_loss"] is None
    assert not (exp / "final.pt").exists() and not (exp / "train.lock").exists()

    dst = exp / "avg_1.pt"
    with pytest.raises(SystemExit) as info:
        average_model.main(
            ["--dst_model", str(dst), "--src_path", str(exp), "--num", "1", "--val_best"]
        )
    assert str(info.value.code) == (
        f"average_model: --val_best: checkpoint(s) 0 in {exp} have no cv_loss (cv_loss: null in "
        "their yaml: their validation had no cv utterance with a finite loss, see the training "
        "log). Average the latest instead (no --val_best), or leave them out with "
        "--min_epoch/--max_epoch."
    )
    assert not dst.exists()
