"""The packed-size benchmark on a tiny model, through `bin.benchmark`."""

from __future__ import annotations

import json

from wenet_eff.bin import benchmark


def test_compress_size_table(tmp_path, capsys):
    out = tmp_path / "size.json"
    result = benchmark.main(
        ["compress_size", "--models", "mini", "--configs", "qat_int8", "qat_int4",
         "int4_sparse_2_4", "binary", "--vocab_size", "31", "--out", str(out)]
    )  # fmt: skip
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    rows = {r["compress"]: r for r in result["results"]}
    assert rows["qat_int8"]["ratio"] < rows["qat_int4"]["ratio"] < rows["int4_sparse_2_4"]["ratio"]
    two_four = rows["int4_sparse_2_4"]["roles"]["ffn.w_1 (4-bit, 2:4)"]
    assert 10 < two_four["ratio"] < 32 / 3  # 3 bits per weight plus fp16 scales
    assert 3.8 < rows["qat_int8"]["main_bits_ratio"] <= 4.0
    assert rows["binary"]["main_bits_ratio"] > 25  # 1-bit layers, 8-bit front end left out
    # without the 8-bit edge layers the binary model sits between its whole-model ratio and
    # its 1-bit layers' (biases and norms stay float32); int8 has no edge to leave out
    binary = rows["binary"]
    assert binary["ratio"] < binary["without_edge_ratio"] < binary["main_bits_ratio"]
    assert binary["edge_float32_bytes"] > 0 and binary["edge_packed_bytes"] > 0
    assert (binary["edge_bits"], rows["qat_int4"]["edge_bits"]) == ("8", "4")
    int8 = rows["qat_int8"]
    assert abs(int8["without_edge_ratio"] - int8["ratio"]) < 0.1
    assert "b-bit layers only" in capsys.readouterr().out


def test_compress_size_overrides_apply_to_every_config(tmp_path):
    """Sub-channel blocks of 128 carry half the scale and zero-point bytes of blocks of 64."""

    def main_ratio(*override: str) -> float:
        result = benchmark.main(
            ["compress_size", "--models", "mini", "--configs", "qat_int2_subchannel",
             "--vocab_size", "31", "--out", str(tmp_path / "s.json"), "--override", *override]
        )  # fmt: skip
        assert result["overrides"] == list(override)
        return result["results"][0]["main_bits_ratio"]

    # about 32 bits over 2 + 18/64 (2.28) and 2 + 18/128 (2.14) bits per weight: a float16
    # scale and a 2-bit zero point per block (a padded last block costs a little more)
    r64, r128 = main_ratio(), main_ratio("compress.quant.block_size=128")
    assert 13.0 < r64 < r128 < 15.0 and r128 / r64 > 1.04
