"""The MoE benchmark and model_info on tiny models (the numbers are for the notes, not tests)."""

from __future__ import annotations

import json

import pytest
import torch

import wenet_eff
from tests.tiny import TINY
from wenet_eff.bench import model_info
from wenet_eff.bin import benchmark
from wenet_eff.config import save_config


def test_moe_rtf_benchmark_writes_json_and_tables(tmp_path, capsys):
    out = tmp_path / "moe.json"
    overrides = [o for o in TINY if not o.startswith("model.vocab_size")]
    result = benchmark.main(
        ["moe_rtf", "--models", "mini", "paper_moe_1b", "--threads", "1", "--seconds", "2",
         "--repeats", "1", "--frames", "64", "--dim", "16", "--units", "32", "--vocab_size", "12",
         "--nbest", "2", "--hyp_len", "5", "--out", str(out), "--override", *overrides]
    )  # fmt: skip
    assert json.loads(out.read_text()) == result
    dense, moe = result["models"]
    assert moe["params"]["total"] > moe["params"]["active"] > 0
    assert dense["rtf_ratio"]["ctc_greedy"] == pytest.approx(1.0)
    assert set(moe["rtf"]) == {"ctc_greedy", "streaming_chunk16", "attention_rescoring"}
    # 2 encoder blocks x 2 FFNs + 1 + 1 decoder blocks; the benchmark audio runs the encoder only
    assert len(moe["expert_usage"]) >= 4
    for fractions in moe["expert_usage"].values():
        assert sum(fractions) == pytest.approx(2.0, abs=1e-3)
    assert result["dispatch"]["infer_speedup"] > 0
    text = capsys.readouterr().out
    assert "full scan" in text and "MoE overhead" in text


def test_model_info_counts_active_parameters_and_flops(tmp_path, capsys):
    cfg = wenet_eff.load_config("mini", [*TINY, "model/ffn=moe"])
    save_config(cfg, tmp_path / "train.yaml")
    info = model_info.main(
        [str(tmp_path / "train.yaml"), "--seconds", "1", "--json", str(tmp_path / "i.json")]
    )
    assert json.loads((tmp_path / "i.json").read_text()) == info
    p = info["params"]
    groups = info["breakdown"]
    assert sum(g["total"] for g in groups.values()) == p["total"]
    assert sum(g["active"] for g in groups.values()) == p["active"]
    assert groups["encoder experts"]["active"] * 4 == groups["encoder experts"]["total"]
    assert info["flops_per_audio_second"]["encoder"] > 0
    assert "active per frame" in capsys.readouterr().out


def _params(name: str) -> dict[str, int]:
    with torch.device("meta"):  # shapes only: a 1B model without allocating it
        return wenet_eff.build_model(
            wenet_eff.load_config(name, ["model.vocab_size=5002"])
        ).num_params()


def test_paper_configs_have_the_paper_parameter_counts():
    dense, moe, big = (_params(n) for n in ("paper_dense_225m", "paper_moe_1b", "paper_dense_1b"))
    assert dense["total"] == pytest.approx(225e6, rel=0.03)
    assert big["total"] == pytest.approx(1.0e9, rel=0.05)
    assert 4.4 <= moe["total"] / dense["total"] <= 5.0
    # top-2 of 8: active parameters well below total, and above the dense model (2 FFNs / frame)
    assert dense["total"] < moe["active"] < 0.4 * moe["total"]
