"""The MoE benchmark and model_info on tiny models: counts checked by hand (parameters,
FLOPs, chunks, weight bytes); the timings are for the notes, not tests."""

from __future__ import annotations

import json

import pytest
import torch

import wenet_eff
from tests.tiny import TINY
from wenet_eff.bench import model_info
from wenet_eff.bench.moe_rtf import streaming_traffic
from wenet_eff.bench.moe_streams import Streams
from wenet_eff.bin import benchmark
from wenet_eff.config import save_config
from wenet_eff.nn.moe import moe_layers


def _extra_moe_flops(cfg, seconds: float) -> float:
    """Encoder FLOPs per audio second that a top-k MoE adds over its dense twin, counted by
    hand: per frame and FFN, k - 1 more experts (two matmuls, 4 d units) and the router
    (2 d E)."""
    enc = cfg.model.encoder
    d, units, n_expert, k = enc.output_size, enc.linear_units, enc.n_expert, enc.n_expert_activated
    frames = (int(seconds * 100) - 7) // 4 + 1  # conv2d front end: 4x, 7 frames of context
    ffns = enc.num_blocks * (2 if enc.macaron_style else 1)
    return frames * ffns * ((k - 1) * 4 * d * units + 2 * d * n_expert) / seconds


def test_moe_rtf_benchmark_counts_active_flops_experts_and_weight_traffic(tmp_path, capsys):
    out = tmp_path / "moe.json"
    overrides = [o for o in TINY if not o.startswith("model.vocab_size")]
    result = benchmark.main(
        ["moe_rtf", "--models", "mini", "paper_moe_1b", "--threads", "1", "--seconds", "2",
         "--repeats", "1", "--frames", "64", "--shapes", "16x32", "8x24", "--vocab_size", "12",
         "--chunks", "4", "16", "--gemm_size", "64", "--bandwidth_mb", "8",
         "--nbest", "2", "--hyp_len", "5", "--streams", "1", "3", "--left_chunks", "2",
         "--stream_rounds", "1", "--out", str(out), "--override", *overrides]
    )  # fmt: skip
    assert json.loads(out.read_text()) == result
    dense, moe = result["models"]
    cfg = wenet_eff.load_config("paper_moe_1b", [*overrides, "model.vocab_size=12"])
    model = wenet_eff.build_model(cfg)
    # the same shape but for the FFNs: the MoE model adds, per MoE layer, k - 1 = 1 expert
    # and the router to the active parameters, and their FLOPs (counted by hand)
    layers = [m for _, m in moe_layers(model)]
    expert = sum(p.numel() for p in layers[0].experts[0].parameters())
    gate = layers[0].gate.weight.numel()
    assert moe["params"]["total"] == sum(p.numel() for p in model.parameters())
    assert moe["params"]["active"] == dense["params"]["total"] + len(layers) * (expert + gate)
    extra = _extra_moe_flops(cfg, 2.0) / 1e9
    gflops = dense["gflops_per_audio_second"], moe["gflops_per_audio_second"]
    assert gflops[1] - gflops[0] == pytest.approx(extra, rel=1e-9)
    assert moe["flops_ratio"] == pytest.approx(1 + extra / gflops[0], rel=1e-9)
    # 2 encoder blocks x 2 FFNs + 1 + 1 decoder blocks; the benchmark audio runs the encoder only
    assert len(moe["expert_usage"]) == len(layers) == 6
    for fractions in moe["expert_usage"].values():
        assert sum(fractions) == pytest.approx(2.0, abs=1e-3)
    assert [(d["dim"], d["units"]) for d in result["dispatch"]] == [(16, 32), (8, 24)]
    # weight traffic: the dense model reads its whole encoder per chunk, the MoE model its
    # shared weights plus the experts that got frames (at most all, at least k of them)
    mini = wenet_eff.build_model(wenet_eff.load_config("mini", [*overrides, "model.vocab_size=12"]))
    encoder_bytes = {
        name: sum(p.numel() * 4 for p in m.encoder.parameters())
        for name, m in (("mini", mini), ("paper_moe_1b", model))
    }
    small, large = (
        moe["streaming_traffic"]["streaming_chunk4"],
        moe["streaming_traffic"]["streaming_chunk16"],
    )
    assert (
        dense["streaming_traffic"]["streaming_chunk4"]["bytes_per_chunk"] == encoder_bytes["mini"]
    )
    assert dense["streaming_traffic"]["streaming_chunk4"]["experts_touched_mean"] is None
    assert 2 <= small["experts_touched_mean"] <= large["experts_touched_mean"] <= 8
    assert small["bytes_per_chunk"] < large["bytes_per_chunk"] <= encoder_bytes["paper_moe_1b"]
    # 200 feature frames, 7 of context: chunk steps of 16 and 64 frames
    assert (small["chunks"], large["chunks"]) == (13, 4)
    assert "bandwidth_only_rtf_ratio" not in dense["streaming_traffic"]["streaming_chunk4"]
    assert small["bandwidth_only_rtf_ratio"] > 1.0  # more bytes than the dense model's
    # batched streaming steps: per chunk and B, the MoE model's extra FLOPs per step are those
    # of its B x chunk frames, the counts by hand above
    steps = {(r["model"], r["chunk"], r["streams"]): r for r in result["streams"]}
    assert sorted(steps) == sorted((m, c, b) for m in ("mini", "paper_moe_1b") for c in (4, 16)
                                   for b in (1, 3))  # fmt: skip
    per_frame = _extra_moe_flops(cfg, 1.0) / ((100 - 7) // 4 + 1) / 1e9
    for (name, chunk, batch), row in steps.items():
        if name == "mini":
            assert row["n_expert"] is None and row["experts_touched_mean"] is None
            continue
        extra = row["gflop_per_step"] - steps["mini", chunk, batch]["gflop_per_step"]
        assert extra == pytest.approx(batch * chunk * per_frame, rel=1e-9)
        assert 2 <= row["experts_touched_min"] <= row["experts_touched_mean"] <= 8
    text = capsys.readouterr().out
    assert "full scan" in text and "MoE overhead" in text and "weight traffic" in text
    assert "Batched streaming steps" in text


def test_model_info_counts_active_parameters_and_flops(tmp_path, capsys):
    cfg = wenet_eff.load_config("mini", [*TINY, "model/ffn=moe"])
    save_config(cfg, tmp_path / "train.yaml")
    save_config(wenet_eff.load_config("mini", TINY), tmp_path / "dense.yaml")
    info = model_info.main(
        [str(tmp_path / "train.yaml"), "--seconds", "1", "--json", str(tmp_path / "i.json")]
    )
    assert json.loads((tmp_path / "i.json").read_text()) == info
    p = info["params"]
    groups = info["breakdown"]
    assert sum(g["total"] for g in groups.values()) == p["total"]
    assert sum(g["active"] for g in groups.values()) == p["active"]
    assert groups["encoder experts"]["active"] * 4 == groups["encoder experts"]["total"]
    dense = model_info.model_info(str(tmp_path / "dense.yaml"), seconds=1)
    extra = info["flops_per_audio_second"]["encoder"] - dense["flops_per_audio_second"]["encoder"]
    assert extra == pytest.approx(_extra_moe_flops(cfg, 1.0), rel=1e-9)
    assert info["flops_per_audio_second"]["ctc"] == dense["flops_per_audio_second"]["ctc"]
    # expert parallelism: 8 experts -> sizes 1, 2, 4, 8; each rank keeps 1/N of the experts
    shares = {row["size"]: row["params_per_rank"] for row in info["expert_parallel"]}
    experts = groups["encoder experts"]["total"] + groups.get("decoder experts", {}).get("total", 0)
    assert sorted(shares) == [1, 2, 4, 8] and shares[1] == p["total"]
    assert shares[1] - shares[8] == experts - experts // 8
    out = capsys.readouterr().out
    assert "active per frame" in out and "params per rank" in out


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


def test_streaming_traffic_counts_the_experts_that_get_frames():
    overrides = [o for o in TINY if not o.startswith("model.vocab_size")]
    cfg = wenet_eff.load_config("mini", [*overrides, "model.vocab_size=12", "model/ffn=moe"])
    model = wenet_eff.build_model(cfg).eval()
    layers = [m for _, m in moe_layers(model.encoder)]
    for m in layers:  # every frame to experts 0 and 1

        def route(x, m=m):
            top_ids = torch.tensor([[0, 1]]).expand(x.shape[0], 2)
            return torch.zeros(x.shape[0], m.n_expert), top_ids, torch.full((x.shape[0], 2), 0.5)

        m.route = route
    t = streaming_traffic(model, torch.randn(1, 100, cfg.model.input_dim), 4)
    expert = sum(p.numel() * 4 for p in layers[0].experts[0].parameters())
    shared = sum(p.numel() * 4 for p in model.encoder.parameters()) - len(layers) * 8 * expert
    assert t["experts_touched_mean"] == 2.0 and t["n_expert"] == 8
    assert t["bytes_per_chunk"] == shared + len(layers) * 2 * expert
    sub = model.encoder.embed.subsampling_rate
    assert t["chunks"] == len(range(0, 100 - model.encoder.embed.right_context, 4 * sub))


@torch.inference_mode()
def test_streams_step_together_as_each_stream_alone():
    """The batched step of streams at their own positions (an empty, a partly filled and a full
    cache of 2 left chunks) gives each stream the encoder output of streaming it alone."""
    cfg = wenet_eff.load_config("mini", [*TINY, "model/ffn=moe"])
    model = wenet_eff.build_model(cfg).eval()
    feats = torch.randn(3, 300, cfg.model.input_dim, generator=torch.Generator().manual_seed(0))
    streams = Streams(model, feats, 4, 2, [0, 1, 3])
    for _ in range(3):
        assert streams.advance().shape == (3, 4, cfg.model.encoder.output_size)
    for b, chunks in enumerate((3, 4, 6)):
        frames = (chunks - 1) * streams.stride + streams.window
        alone, _ = model.encoder.forward_chunk_by_chunk(feats[b : b + 1, :frames], 4, 2)
        got = torch.cat(streams.outputs[b], dim=1)
        assert got.shape == alone.shape
        assert torch.allclose(got, alone, atol=1e-4), (b, (got - alone).abs().max())
