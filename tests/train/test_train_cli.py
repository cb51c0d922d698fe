"""`python -m wenet_eff.bin.train` in subprocesses: the experiment directory, rerunning a
finished run, a real `kill -9` mid-epoch followed by automatic resumption (taking over the
killed run's lock), and a run whose every utterance is skipped."""

from __future__ import annotations

import json
import os

import pytest
import torch

import wenet_eff
from tests.train.helpers import check, run_train
from wenet_eff.config import load_config
from wenet_eff.data.tokenizer import write_units
from wenet_eff.train import checkpoint as ckpt
from wenet_eff.weights import load_model_state

RUN = ["train.max_epoch=3", "train.save_interval=3"]  # 4 updates per epoch


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory):
    """An uninterrupted 3-epoch run (12 updates, step checkpoints every 3)."""
    exp = tmp_path_factory.mktemp("reference")
    proc = run_train(corpus.overrides(exp, *RUN))
    check(proc)
    return exp, proc


def test_experiment_directory(reference, corpus):
    exp, proc = reference
    cfg = load_config(exp / "train.yaml")
    units = sum(1 for line in corpus.units.read_text().splitlines() if line.strip())
    assert cfg.model.vocab_size == units and cfg.train.max_epoch == 3
    model = wenet_eff.build_model(cfg)
    model.load_state_dict(load_model_state(exp / "final.pt"), strict=True)
    assert torch.equal(
        model.state_dict()["ctc.ctc_lo.weight"], torch.load(exp / "2.pt")["ctc.ctc_lo.weight"]
    )
    assert [n for n, _ in ckpt.list_checkpoints(exp)] == [
        "step_3", "0", "step_6", "1", "step_9", "step_12", "2"
    ]  # fmt: skip
    assert sorted(p.name for p in exp.glob("*.state.pt")) == ["2.state.pt"]
    assert list((exp / "tensorboard").glob("events.out.tfevents.*"))
    assert "epoch 2 done at step 12" in proc.stderr + proc.stdout


def test_rerun_of_a_finished_run_changes_nothing(reference, corpus, tmp_path):
    exp, _ = reference
    before = ckpt.read_info(exp / "2.yaml")
    proc = run_train(corpus.overrides(exp, *RUN))
    check(proc)
    assert "resuming from 2: epoch 3, step 12" in proc.stderr + proc.stdout
    assert ckpt.read_info(exp / "2.yaml") == before


def test_kill_9_mid_epoch_then_rerun_resumes_exactly(reference, corpus, tmp_path):
    ref_exp, _ = reference
    args = corpus.overrides(tmp_path, *RUN)
    killed = run_train(args, module="tests.train.hooks", env={"KILL_AT_STEP": "6"})
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert (tmp_path / "step_6.yaml").exists() and not (tmp_path / "1.yaml").exists()
    # the killed run could not release its lock: the rerun takes it over, naming it
    holder = json.loads((tmp_path / "train.lock").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(holder["pid"], 0)
    resumed = run_train(args)
    check(resumed)
    assert (
        f"taking over the lock of a run that is gone (pid {holder['pid']} on {holder['host']}"
        in resumed.stderr + resumed.stdout
    )
    assert not (tmp_path / "train.lock").exists()
    assert (
        "resuming from step_6: epoch 1, step 6, 2 batches into the epoch"
        in resumed.stderr + resumed.stdout
    )
    assert (
        ckpt.read_info(tmp_path / "2.yaml")["step"]
        == ckpt.read_info(ref_exp / "2.yaml")["step"]
        == 12
    )
    final, ref = (
        load_model_state(tmp_path / "final.pt"),
        load_model_state(ref_exp / "final.pt"),
    )
    assert all(torch.equal(final[k], ref[k]) for k in ref)  # bit-identical to the uninterrupted run
    assert (
        ckpt.read_info(tmp_path / "2.yaml")["cv_loss"]
        == ckpt.read_info(ref_exp / "2.yaml")["cv_loss"]
    )


def test_bad_override_names_the_key(corpus, tmp_path):
    proc = run_train(corpus.overrides(tmp_path, "train.max_epochs=3"))
    assert proc.returncode != 0 and "max_epochs" in proc.stderr


def test_a_units_txt_that_fits_no_utterance_fails_the_run(corpus, tmp_path):
    units = tmp_path / "units.txt"
    write_units(units, ["<blank>", "<unk>", "x", "<sos/eos>"])  # none of the corpus' letters
    proc = run_train([*corpus.overrides(tmp_path, "train.max_epoch=2"), f"tokenizer.units={units}"])
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "epoch 0 ended without a single optimizer update" in proc.stderr + proc.stdout
    assert "16 utterances: unknown_token=16" in proc.stderr + proc.stdout
    assert not ckpt.list_checkpoints(tmp_path) and not (tmp_path / "final.pt").exists()


def test_streaming_finetune_starts_from_a_full_context_checkpoint(reference, corpus, tmp_path):
    base, _ = reference
    proc = run_train(
        corpus.overrides(
            tmp_path,
            "train=streaming_finetune",
            f"train.init_checkpoint={base / 'final.pt'}",
            "train.max_steps=8",
        )
    )
    check(proc)
    assert f"weights initialised from {base / 'final.pt'}" in proc.stderr + proc.stdout
    cfg = load_config(tmp_path / "train.yaml")
    enc = cfg.model.encoder
    assert enc.use_dynamic_chunk and enc.causal and not enc.use_dynamic_left_chunk
    assert cfg.optim.scheduler == "cosine" and cfg.train.max_steps == 8
    tuned = load_model_state(tmp_path / "final.pt")
    start = load_model_state(base / "final.pt")
    assert tuned.keys() == start.keys()
    assert not torch.equal(tuned["ctc.ctc_lo.weight"], start["ctc.ctc_lo.weight"])
