"""The runtime benchmark's ratios (the benchmark runs on trained models: docs/benchmarks.md)."""

from __future__ import annotations

import pytest

from wenet_eff.bench.runtime_rtf import _ratios


def _row(model, precision, chunk, engine, rtf, wer, encoder_rtf=None):
    row = {"model": model, "precision": precision, "chunk": chunk, "engine": engine,
           "rtf": rtf, "wer": wer}  # fmt: skip
    if encoder_rtf is not None:
        row["encoder_rtf"] = encoder_rtf
    return row


def test_ratios():
    rows = [
        _row("dense", "fp32", -1, "eager", 0.010, 50.0),
        {**_row("dense", "fp32", -1, "cpp", 0.004, 50.0, encoder_rtf=0.002), "dir_mb": 160.0},
        _row("dense", "fp32", -1, "onnx", 0.005, 50.0, encoder_rtf=0.003),
        _row("dense", "int8", -1, "cpp", 0.002, 51.0, encoder_rtf=0.001),
        {
            **_row("dense", "packed:qat_int4", -1, "cpp", 0.004, 52.0, encoder_rtf=0.002),
            "dir_mb": 20.0,
        },
        _row("moe", "fp32", -1, "eager", 0.030, 40.0),
        _row("moe", "fp32", -1, "cpp", 0.008, 40.0, encoder_rtf=0.0033),
    ]
    out = _ratios(rows, {"dense": 1e9, "moe": 1.5e9})
    by_kind = {}
    for r in out:
        by_kind.setdefault(r["kind"], []).append(r)
    engines = {(r["model"], r["precision"]): r for r in by_kind["engines"]}
    assert engines["dense", "fp32"]["cpp_over_eager"] == pytest.approx(0.4)
    assert engines["dense", "fp32"]["cpp_over_onnx"] == pytest.approx(0.8)
    assert engines["dense", "int8"]["cpp_over_eager"] is None
    int8, packed = by_kind["precision"]
    assert int8["precision"] == "int8" and int8["speedup"] == pytest.approx(2.0)
    assert int8["wer_rel_change"] == pytest.approx(0.02)
    assert int8["encoder_speedup"] == pytest.approx(2.0)  # 0.002 / 0.001
    # a packed model against the float model's fp32 row: the same speed, 8x smaller
    assert packed["precision"] == "packed:qat_int4" and packed["speedup"] == pytest.approx(1.0)
    assert packed["size_ratio"] == pytest.approx(8.0)
    flops = {r["engine"]: r for r in by_kind["flops"]}
    # the C++ runtime times its encoder: 0.0033 / 0.002 over 1.5 FLOPs = +10 %
    assert flops["cpp"]["timed"] == "encoder"
    assert flops["cpp"]["overhead"] == pytest.approx(0.1)
    # eager does not: the whole decode, 3x over 1.5x = +100 %
    assert flops["eager"]["timed"] == "decode" and flops["eager"]["overhead"] == pytest.approx(1.0)


def test_engines_take_turns_and_keep_their_fastest_pass(monkeypatch):
    from wenet_eff.bench import runtime_rtf

    order, clock = [], iter([0.0, 5.0, 0.0, 2.0, 0.0, 3.0, 0.0, 1.0, 0.0, 4.0, 0.0, 9.0])
    monkeypatch.setattr(runtime_rtf.time, "perf_counter", lambda: next(clock))

    def engine(name, text):
        def decode(wav):
            order.append(name)
            return text, 0.5

        return decode

    utts = [{"wav": None}]
    decoders = {"a": engine("a", "x"), "b": engine("b", "y")}
    timed = runtime_rtf._time_engines(decoders, ["a", "b"], utts, repeats=3)
    # a warm-up decode, then one timed utterance, per pass; passes alternate a, b, a, b, ...
    assert order == ["a", "a", "b", "b"] * 3
    assert timed["a"][1:] == (3.0, 0.5, [5.0, 3.0, 4.0])
    assert timed["b"][1:] == (1.0, 0.5, [2.0, 1.0, 9.0])
    assert timed["a"][0] == ["x"] and timed["b"][0] == ["y"]
    texts = iter(["x", "x", "x", "z"])  # warm-up and pass 1, warm-up and pass 2
    decoders["a"] = lambda wav: (next(texts), None)
    monkeypatch.setattr(runtime_rtf.time, "perf_counter", lambda: 0.0)
    with pytest.raises(RuntimeError, match="a: the transcripts differ between passes"):
        runtime_rtf._time_engines(decoders, ["a"], utts, repeats=2)


def test_table_shows_kernel_paths_sizes_and_speedups():
    from wenet_eff.bench.sections import runtime_rtf

    size = {"kernel_reason": "", "encoder_rel_error": 0.012, "rss_mb": 95.0}
    rows = [
        {**_row("dense", "fp32", -1, "cpp", 0.004, 50.0, encoder_rtf=0.002), "dir_mb": 160.0,
         "kernel_path": "fp32", "layer_paths": {"fp32": 52}, **size},
        {**_row("dense", "packed:qat_int4", -1, "cpp", 0.002, 51.0, encoder_rtf=0.001),
         "dir_mb": 20.0, "pack_mb": 18.0, "kernel_path": "int8",
         "layer_paths": {"fp32": 5, "int8": 47}, **size},
    ]  # fmt: skip
    result = {"environment": {"cpu_features": "avx2 avx512_vnni"}, "utterances": 3,
              "audio_seconds": 9.0, "mode": "attention_rescoring", "chunk_size": 16,
              "num_left_chunks": 4, "repeats": 3, "threads": 1, "rows": rows,
              "ratios": _ratios(rows, {"dense": 1e9})}  # fmt: skip
    table = runtime_rtf(result)
    assert "CPU features: avx2 avx512_vnni" in table
    assert (
        "| dense | packed:qat_int4 | int8 | fp32 5, int8 47 | 20.00 | 8.00 | 18.00 | 1.11 | 95 "
        "| 1.2e-02 |" in table
    )
    assert "| dense | fp32 | fp32 | fp32 52 | 160.00 | 1.00 |  |  | 95 | 1.2e-02 |" in table
    assert "| dense | packed:qat_int4 | full | cpp | 2.00x | 2.00 | +2.0 % |" in table
