"""`python -m wenet_eff.bin.lr_sweep`: real tiny training runs per (variant, lr), the status
rules, the tables, JSON and plot, and reuse of finished runs."""

from __future__ import annotations

import argparse
import json
import math

from tests.train.helpers import TINY_DATA, TINY_MODEL
from wenet_eff.bin import lr_sweep

RULES = argparse.Namespace(final_fraction=0.2, diverge_ratio=1.5)


def test_status_rules():
    falling = [100.0 - 8 * i for i in range(10)]
    assert lr_sweep.judge(falling, False, RULES)[0] == "ok"
    blow_up = [100, 80, 60, 40, 30, 30, 60, 90, 120, 150]
    status, final, best = lr_sweep.judge(blow_up, False, RULES)
    assert status == "diverged" and final == 135 and best == 30
    plateau = [100, 101, 99, 100, 98, 100, 99, 101, 100, 97]  # not learning, not diverging
    assert lr_sweep.judge(plateau, False, RULES)[0] == "ok"
    assert lr_sweep.judge(falling, True, RULES)[0] == "diverged"  # stopped by the guard
    assert lr_sweep.judge([math.nan], False, RULES)[0] == "diverged"


def test_a_cv_loss_far_above_the_sweeps_best_is_a_divergence():
    # a run worse from its first updates on: its losses never fell, so no rise from a low
    results = {
        ("a", 1.0): {"status": "ok", "cv_loss": 110.0},
        ("a", 2.0): {"status": "runaway", "cv_loss": 125.0},
        ("a", 4.0): {"status": "runaway", "cv_loss": 411.0},
        ("b", 4.0): {"status": "diverged", "cv_loss": None},  # stopped: no cv loss
    }
    lr_sweep.judge_against_sweep(results, argparse.Namespace(cv_ratio=2.0))
    statuses = {key: r["status"] for key, r in results.items()}
    assert statuses == {("a", 1.0): "ok", ("a", 2.0): "runaway", ("a", 4.0): "diverged",
                        ("b", 4.0): "diverged"}  # fmt: skip
    assert results["a", 4.0]["diverged_by"] == "cv loss 411.00 > 2 x the sweep's best 110.00"


def test_highest_stable_lr_needs_every_smaller_lr_stable():
    results = {
        ("a", 1.0): {"status": "ok"},
        ("a", 2.0): {"status": "diverged"},
        ("a", 4.0): {"status": "ok"},  # a lucky survivor above a failure
    }
    assert lr_sweep.highest_stable(results, "a", [4.0, 1.0, 2.0]) == 1.0


def test_sweep_runs_tables_plot_and_reuses_finished_runs(corpus, tmp_path, capsys):
    argv = [
        "--out", str(tmp_path / "sweep"),
        "--variants", "none", "qk_norm_cap",
        "--lrs", "0.001", "3.0",
        "--steps", "6", "--warmup", "1", "--log_interval", "1", "--monitor_interval", "2",
        "--jobs", "2", "--",
        f"data.train_data={corpus.train_list}", f"data.cv_data={corpus.cv_list}",
        f"tokenizer.units={corpus.units}", *TINY_MODEL, *TINY_DATA,
    ]  # fmt: skip
    record = lr_sweep.main(argv)
    out = capsys.readouterr().out
    assert "variant x highest learning rate without divergence" in out
    assert (tmp_path / "sweep" / "linear_norms.png").stat().st_size > 10_000
    saved = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    runs = {(r["variant"], r["lr"]): r for r in saved["runs"]}
    assert len(runs) == 4 and all(r["returncode"] in (0, 1) for r in runs.values())
    assert runs["none", 3.0]["status"] == "diverged"  # lr 3 blows a tiny Adam model up
    assert runs["none", 0.001]["losses"] and runs["none", 0.001]["steps"] == 6
    assert runs["none", 0.001]["cv_loss"] > 0  # from its last checkpoint
    assert set(runs["none", 0.001]["linear_rms_mean"]) == set(lr_sweep.ROLES)
    assert record["summary"]["rows"][0]["variant"] == "none"
    # a second call finds every sweep_result.json and trains nothing
    again = lr_sweep.main(argv)
    assert "[1/" not in capsys.readouterr().out
    assert again["runs"] == saved["runs"]
    # the rules apply again to finished runs: any logit above 1e-6 is runaway growth
    strict = lr_sweep.main([*argv[:2], "--max_logit", "1e-6", *argv[2:]])
    statuses = {(r["variant"], r["lr"]): r["status"] for r in strict["runs"]}
    assert statuses["none", 0.001] == "runaway" and statuses["none", 3.0] == "diverged"
    assert "nor runaway attention logits above 1e-06" in capsys.readouterr().out
