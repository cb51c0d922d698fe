"""Expert-parallel MoE training (`train.expert_parallel=2`) on two gloo ranks under torchrun:
the same weights as plain data parallelism, whole checkpoints, resume, and the refusals."""

from __future__ import annotations

import torch

from tests.train.helpers import check, run_train, write_corpus
from wenet_eff.train import checkpoint as ckpt

# no dropout: expert parallelism runs the experts' dropout on other ranks' random streams
NO_DROPOUT = [
    "model/ffn=moe",
    "model.encoder.dropout_rate=0.0",
    "model.encoder.positional_dropout_rate=0.0",
    "model.decoder.dropout_rate=0.0",
    "model.decoder.positional_dropout_rate=0.0",
]


def _close(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=2e-5, rtol=1e-4, msg=k)


def test_expert_parallel_trains_the_weights_data_parallel_does(tmp_path):
    corpus = write_corpus(tmp_path / "data", 10)  # 5 utterances per rank: uneven batches
    runs = {}
    for ep in (1, 2):
        exp = tmp_path / f"ep{ep}"
        args = corpus.overrides(
            exp, "train.max_epoch=2", *NO_DROPOUT, f"train.expert_parallel={ep}"
        )
        check(run_train(args, nproc=2, timeout=240))
        runs[ep] = exp
    dp, ep = (ckpt.load_model_state(runs[e] / "final.pt") for e in (1, 2))
    # the checkpoint is whole: every expert under its WeNet name, in the model's key order
    assert any(".experts.7.w_1.weight" in k for k in ep) and any(".experts.0." in k for k in ep)
    _close(ep, dp)
    info_dp, info_ep = (ckpt.read_info(runs[e] / "1.yaml") for e in (1, 2))
    assert info_ep["step"] == info_dp["step"] > 0
    assert abs(info_ep["cv_loss"] - info_dp["cv_loss"]) < 1e-4 * info_dp["cv_loss"]

    # resume: one epoch, then the second from its checkpoint (each rank's optimizer state)
    exp = tmp_path / "resumed"
    first = corpus.overrides(exp, "train.max_epoch=1", *NO_DROPOUT, "train.expert_parallel=2")
    check(run_train(first, nproc=2, timeout=240))
    check(run_train([*first, "train.max_epoch=2"], nproc=2, timeout=240))
    _close(ckpt.load_model_state(exp / "final.pt"), ep)

    # its resume state belongs to two ranks with two experts groups: plain resume is refused
    again = corpus.overrides(exp, "train.max_epoch=3", *NO_DROPOUT)
    proc = run_train(again, nproc=2, timeout=240)
    assert proc.returncode != 0
    assert "trained with train.expert_parallel=2; resume it with the same setting" in proc.stderr


def test_expert_parallel_refusals(tmp_path):
    corpus = write_corpus(tmp_path / "data", 2)
    for extra, message in (
        (["model/ffn=moe", "train.expert_parallel=2"], "must divide the world size 1"),
        (["train.expert_parallel=1", "train.expert_parallel=0"], "must be >= 1"),
    ):
        proc = run_train(corpus.overrides(tmp_path / "exp", *extra), timeout=120)
        assert proc.returncode != 0 and message in proc.stderr, proc.stderr[-2000:]
