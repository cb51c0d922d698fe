"""Two-process DDP on CPU (gloo) under torchrun: uneven data, a NaN on one rank, cv reduction."""

from __future__ import annotations

import torch

import wenet_eff
from tests.train.helpers import check, run_train, write_corpus
from wenet_eff.config import load_config
from wenet_eff.data.dataset import build_dataloader
from wenet_eff.data.tokenizer import build_tokenizer
from wenet_eff.train import checkpoint as ckpt
from wenet_eff.weights import load_model_state


def cv_loss(cfg, weights) -> float:
    """Per-utterance cv loss of `weights` over the whole cv list, in one process."""
    model = wenet_eff.build_model(cfg).eval()
    model.load_state_dict(weights)
    loader, _ = build_dataloader(cfg.data, cfg.data.cv_data, build_tokenizer(cfg.tokenizer), False)
    total = utts = 0
    with torch.no_grad():
        for b in loader:
            if b["keys"]:
                out = model(b["feats"], b["feats_lengths"], b["target"], b["target_lengths"])
                total += float(out["loss"]) * len(b["keys"])
                utts += len(b["keys"])
    return total / utts


def test_two_ranks_stay_identical_with_uneven_data_and_a_nan(tmp_path):
    # 17 utterances: rank 0 gets 9 (3 batches), rank 1 gets 8 (2 batches)
    corpus = write_corpus(tmp_path / "data", 17)
    exp = tmp_path / "exp"
    args = corpus.overrides(exp, "train.max_epoch=3", "train.accum_grad=2")
    env = {"DUMP_PARAMS": "1", "NAN_AT_STEP": "1"}  # rank 0 alone sees a NaN loss at update 2
    check(run_train(args, nproc=2, module="tests.train.hooks", env=env, timeout=180))
    rank0, rank1 = (torch.load(exp / f"rank{r}.params.pt") for r in (0, 1))
    final = load_model_state(exp / "final.pt")
    assert all(torch.equal(rank0[k], rank1[k]) and torch.equal(rank0[k], final[k]) for k in final)
    info = ckpt.read_info(exp / "2.yaml")
    # per epoch: 2 micro-batches on both ranks -> 1 update; the NaN window is skipped
    assert info["step"] == 2 and info["nonfinite_steps"] == 1
    cfg = load_config(exp / "train.yaml")
    assert abs(info["cv_loss"] - cv_loss(cfg, final)) < 1e-4 * info["cv_loss"]


def test_two_ranks_train_an_moe_model_without_unused_parameter_search(tmp_path):
    # few frames per batch and 8 experts: some experts get no frame on one rank in some step;
    # they still join the graph (zero gradient), so DDP needs no find_unused_parameters
    corpus = write_corpus(tmp_path / "data", 8)
    exp = tmp_path / "exp"
    args = corpus.overrides(exp, "train.max_epoch=1", "model/ffn=moe")
    check(run_train(args, nproc=2, module="tests.train.hooks", env={"DUMP_PARAMS": "1"}))
    rank0, rank1 = (torch.load(exp / f"rank{r}.params.pt") for r in (0, 1))
    assert any("experts.7.w_1" in k for k in rank0)
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)


def test_two_ranks_roll_back_together_after_a_loss_spike(tmp_path):
    # 24 utterances: 3 batches per rank and epoch; rank 0's losses after updates 8 and 9 spike
    # (x1000, once), so both ranks must agree to roll back and replay
    corpus = write_corpus(tmp_path / "data", 24)
    exp = tmp_path / "exp"
    guard = ["train.guard.enabled=true", "train.guard.window=10", "train.guard.min_history=4",
             "train.guard.patience=2", "train.save_interval=2"]  # fmt: skip
    args = corpus.overrides(exp, "train.max_epoch=5", *guard)
    env = {"DUMP_PARAMS": "1", "SPIKE_AT_STEPS": "8,9"}
    proc = run_train(args, nproc=2, module="tests.train.hooks", env=env, timeout=240)
    check(proc)
    # updates 9 and 10 spike; the newest checkpoint before update 8's weights is epoch 1's
    assert "Rolling back to checkpoint 1 with the learning rate x0.5" in proc.stdout
    rank0, rank1 = (torch.load(exp / f"rank{r}.params.pt") for r in (0, 1))
    assert all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    info = ckpt.read_info(exp / "4.yaml")
    assert info["step"] == 15 and info["rollbacks"] == 1 and info["lr_scale"] == 0.5


def test_two_nodes_meet_at_a_c10d_rendezvous(tmp_path):
    """The recipes' multi-node launcher (tools/recipe_lib.sh, --num_nodes 2) run as two
    "nodes" on this machine, one process each, meeting at a c10d rendezvous on localhost: they
    train as one world of 2 and end with the same weights."""
    import os
    import shlex
    import socket
    import subprocess
    import sys

    from tests.train.helpers import REPO

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    corpus = write_corpus(tmp_path / "data", 8)
    exp = tmp_path / "exp"
    args = corpus.overrides(exp, "train.max_epoch=1")
    procs, logs = [], []
    try:
        for rank in (0, 1):
            script = (
                f"nproc=1 num_gpus=0 train_engine=torch_ddp num_nodes=2 node_rank={rank} "
                f"master_addr=127.0.0.1 master_port={port} rdzv_id=test{port}\n"
                f". {REPO / 'tools' / 'recipe_lib.sh'}\nlauncher\n"
            )
            launcher = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
            words = shlex.split(launcher.stdout)
            assert words[0] == "torchrun" and f"--node_rank={rank}" in words, launcher.stdout
            # a node that fails early must not leave the other waiting 600 s to join
            cmd = [sys.executable, "-m", "torch.distributed.run", *words[1:],
                   "--rdzv_conf=join_timeout=120", "-m", "tests.train.hooks", *args]  # fmt: skip
            env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO),
                   "DUMP_PARAMS": "1"}  # fmt: skip
            logs.append(tmp_path / f"node{rank}.log")
            with open(logs[-1], "w") as log:
                procs.append(
                    subprocess.Popen(
                        cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT
                    )  # fmt: skip
                )
        for p in procs:
            p.wait(timeout=300)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    outputs = [log.read_text() for log in logs]
    for p, out in zip(procs, outputs, strict=True):
        assert p.returncode == 0, out[-6000:]
    # c10d hands out ranks at the rendezvous: either node may hold rank 0
    assert any("2 process(es)" in out for out in outputs)
    rank0, rank1 = (torch.load(exp / f"rank{r}.params.pt") for r in (0, 1))
    final = load_model_state(exp / "final.pt")
    assert all(torch.equal(rank0[k], rank1[k]) and torch.equal(rank0[k], final[k]) for k in final)
