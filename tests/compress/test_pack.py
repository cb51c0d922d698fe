"""Packing: bit fields, bit-exact reload, sizes, the native-integer forward, the pack CLI."""

from __future__ import annotations

import json

import pytest
import torch

import wenet_eff
from tests.tiny import TINY
from wenet_eff import compress
from wenet_eff.bin import pack as pack_cli
from wenet_eff.compress.pack import pack_bits, pack_layer, save_packed, unpack_bits
from wenet_eff.config import save_config
from wenet_eff.model import load_packed
from wenet_eff.nn.linear import linear

MOE = ["model/ffn=moe", "model.encoder.n_expert=4", "model.decoder.n_expert=4"]


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
@pytest.mark.parametrize("n", [1, 7, 64, 1001])
def test_bit_fields_round_trip(bits, n):
    values = torch.randint(0, 2**bits, (n,), dtype=torch.uint8)
    packed = pack_bits(values, bits)
    assert packed.dtype == torch.uint8 and packed.numel() == -(-n * bits // 8)
    assert torch.equal(unpack_bits(packed, bits, n), values)


# literal bytes worked out by hand: field i of a byte sits at bits [b*i, b*(i+1))
@pytest.mark.parametrize(
    "bits, values, packed",
    [
        (1, [1, 0, 1, 1, 0, 0, 0, 1, 1], [0b10001101, 0b1]),  # 141, 1
        (2, [1, 2, 3, 0, 3], [1 | 2 << 2 | 3 << 4, 3]),  # 57, 3
        (4, [1, 15, 7], [1 | 15 << 4, 7]),  # 241, 7
        (8, [200, 3], [200, 3]),
    ],
)
def test_bit_fields_hold_hand_packed_bytes(bits, values, packed):
    assert pack_bits(torch.tensor(values), bits).tolist() == packed


# one output channel per row; integers and bytes worked out by hand:
# int2 (asymmetric): row 0: lo -0.5, hi 1, scale 1.5 / 3 = 0.5, zero 1, levels [0, 1, 2, 3];
#   row 1: lo 0 (zero stays representable), scale 1.2 / 3 = 0.4 (float16 0.39990234375),
#   zero 0, levels round([0.75, 1.5, 2.25, 3.0]) = [1, 2, 2, 3];
#   bytes 0 | 1 << 2 | 2 << 4 | 3 << 6 = 228 and 1 | 2 << 2 | 2 << 4 | 3 << 6 = 233; zeros 1
# int4 (symmetric, -7..7 stored + 7): scale 0.7 / 7 = 0.1 (float16 0.0999755859375), levels
#   [-7, 1, 3, 7] -> [0, 8, 10, 14], bytes 0 | 8 << 4 = 128 and 10 | 14 << 4 = 234
# binary: signs -> [1, 0, 1, 0, 1, 1, 0, 1], byte 181; scale mean |w| = 4.4 / 8 = 0.55
#   (float16 0.5498046875)
@pytest.mark.parametrize(
    "name, weight, data, scale, zero",
    [
        ("qat_int2", [[-0.5, 0.0, 0.5, 1.0], [0.3, 0.6, 0.9, 1.2]], [228, 233],
         [0.5, 0.39990234375], [1]),
        ("qat_int4", [[-0.7, 0.1, 0.3, 0.7]], [128, 234], [0.0999755859375], None),
        ("binary", [[0.2, -0.4, 0.6, -0.8, 0.0, 1.0, -1.0, 0.4]], [181], [0.5498046875], None),
    ],
)  # fmt: skip
def test_packed_layer_holds_hand_computed_levels(name, weight, data, scale, zero):
    weight = torch.tensor(weight)
    module = torch.nn.Sequential(linear(weight.size(1), weight.size(0), role="ffn.w_1"))
    with torch.no_grad():
        module[0].weight.copy_(weight)
    compress.apply(module, wenet_eff.load_config("mini", [f"compress={name}"]))
    record = pack_layer(module[0])
    assert record["numel"] == weight.numel()
    assert record["data"].tolist() == data
    assert record["scale"].float().tolist() == scale
    assert (None if record["zero"] is None else record["zero"].tolist()) == zero


def _model(*overrides):
    torch.manual_seed(0)
    cfg = wenet_eff.load_config("mini", [*TINY, *overrides])
    return cfg, wenet_eff.build_model(cfg).eval()


def _outputs(model):
    torch.manual_seed(1)
    x, lens = torch.randn(2, 90, 80), torch.tensor([90, 61])
    with torch.inference_mode():
        enc, _ = model.encoder(x, lens)
        hyps = model.decode(["attention_rescoring"], x, lens, beam_size=3, reverse_weight=0.3)
    return enc, [(h.tokens, h.score) for h in hyps["attention_rescoring"]]


@pytest.mark.parametrize(
    "overrides",
    [
        ["compress=qat_int8"],
        ["compress=qat_int4", *MOE],
        ["compress=qat_int2"],
        ["compress=qat_int2_subchannel", "compress.quant.clip=search"],
        ["compress=qat_int4_rand"],
        ["compress=binary"],
        ["compress=mixed_4_8", *MOE],
        ["compress=qat_int4", "compress.quant.learnable_scale=true"],
        ["compress=qat_int8", "compress.quant.native_int=true"],
        ["compress=qat_int4", "compress.quant.native_int=true",
         "compress.quant.granularity=subchannel", "compress.quant.block_size=16"],
    ],
    ids=["int8", "int4-moe", "int2", "int2-sub", "int4-rand", "binary", "mixed-moe", "int4-lsq",
         "native8", "native4-sub"],
)  # fmt: skip
def test_packed_model_reproduces_the_qat_model_bit_for_bit(tmp_path, overrides):
    cfg, model = _model(*overrides)
    # move the weights away from their initial ranges, as training would
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    report = save_packed(model, cfg, tmp_path / "packed.pt")
    _, loaded = load_packed(tmp_path / "packed.pt")
    enc, hyps = _outputs(model)
    enc2, hyps2 = _outputs(loaded)
    assert torch.equal(enc, enc2)
    assert hyps == hyps2
    assert report["file_bytes"] < report["total"]["float32_bytes"]


def test_a_packed_model_keeps_its_special_tokens(tmp_path):
    """A run's config names its special tokens (WeNet's tokenizer_conf.special_tokens, as the
    mini recipe writes them): the packed file loads with them."""
    tokens = {"<blank>": 0, "<unk>": 1, "<sos>": 2, "<eos>": 2}
    cfg, model = _model("compress=qat_int4")
    cfg.tokenizer.special_tokens = tokens
    save_packed(model, cfg, tmp_path / "packed.pt")
    loaded_cfg, _ = load_packed(tmp_path / "packed.pt")
    assert dict(loaded_cfg.tokenizer.special_tokens) == tokens


def test_packing_a_packed_model_again_keeps_its_records(tmp_path):
    """The runtime export packs a loaded packed model again: it gets the file's records byte
    for byte, N:M positions included (its config no longer has the masks)."""
    cfg, model = _model("compress=int4_sparse_2_4")
    save_packed(model, cfg, tmp_path / "packed.pt")
    _, loaded = load_packed(tmp_path / "packed.pt")
    stored = torch.load(tmp_path / "packed.pt", weights_only=True)["layers"]
    for name, layer in compress.quant_layers(loaded):
        record = pack_layer(layer)
        assert record.keys() == stored[name].keys() and record.get("nm") == stored[name].get("nm")
        assert all(torch.equal(record[k], stored[name][k]) for k in ("data", "scale"))
    assert any("index" in r for r in stored.values())


def test_native_integer_forward_is_exact_equals_fake_quantization_and_trains():
    cfg, model = _model(
        "compress=qat_int8", "compress.quant.native_int=true", "compress.quant.act_bits=4"
    )
    layer = dict(compress.quant_layers(model))["encoder.encoders.0.self_attn.linear_q"]
    assert layer.act_bits == 4
    x = torch.randn(3, 5, layer.in_features)
    stored = layer.stored()
    wq = stored["q"].double().reshape(layer.out_features, -1)
    for act_bits, qmax in ((4, 7), (8, 127)):
        layer.act_bits = act_bits
        x_scale = x.abs().amax() / qmax
        xq = (x / x_scale).round().clamp(-qmax, qmax)
        expected = (
            (xq.double() @ wq.T) * stored["scale"].double().reshape(1, -1) * x_scale.double()
        ).float() + layer.bias
        with torch.no_grad():
            native = layer(x)
            layer.native_int = False
            fake = layer(x)
            layer.native_int = True
        assert torch.equal(native, expected)
        # the same quantized products, summed in float32 instead of exactly
        torch.testing.assert_close(native, fake, rtol=0, atol=1e-5)
    model.train()
    xs, lens = torch.randn(2, 60, 80), torch.tensor([60, 45])
    text, tlens = torch.randint(1, 10, (2, 4)), torch.tensor([4, 3])
    model(xs, lens, text, tlens)["loss"].backward()
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0


def test_sizes_follow_the_bits():
    """Packed bytes of the tiny model (width 32, FFN 48), worked out by hand: levels at their
    bits plus a float16 scale per output channel. attn.qkv: 18 layers of 32 x 32 (2 encoder
    blocks x 3, 2 decoders x 3 self + 3 source) = 18,432 weights, 18 x 32 x 2 = 1,152 scale
    bytes; ffn.w_2: 6 layers of 48 -> 32 (2 blocks x 2 encoder FFNs, 2 decoder FFNs) = 9,216
    weights, 6 x 32 x 2 = 384 scale bytes; output (8 bits under binary): CTC + 2 decoders,
    32 -> 12: 1,152 weights, 3 x 12 x 2 = 72 scale bytes."""
    expected = {
        "qat_int8": {"attn.qkv (8-bit)": 18432 + 1152, "ffn.w_2 (8-bit)": 9216 + 384},
        "qat_int4": {"attn.qkv (4-bit)": 9216 + 1152, "ffn.w_2 (4-bit)": 4608 + 384},
        "binary": {
            "attn.qkv (1-bit)": 2304 + 1152, "ffn.w_2 (1-bit)": 1152 + 384,
            "output (8-bit)": 1152 + 72,
        },
    }  # fmt: skip
    for name, roles in expected.items():
        cfg, model = _model(f"compress={name}")
        report = compress.pack.size_report(model, compress.pack.pack_model(model, cfg))
        assert {role: report["roles"][role]["packed_bytes"] for role in roles} == roles
        assert report["roles"][next(iter(roles))]["params"] == 18432


def test_pack_cli_writes_the_file_and_the_size_table(tmp_path, capsys):
    cfg, model = _model("compress=qat_int4")
    save_config(cfg, tmp_path / "train.yaml")
    torch.save(model.state_dict(), tmp_path / "final.pt")
    out = tmp_path / "packed.pt"
    report = pack_cli.main(
        ["--config", str(tmp_path / "train.yaml"), "--checkpoint", str(tmp_path / "final.pt"),
         "--out", str(out)]
    )  # fmt: skip
    assert out.exists() and report["file_bytes"] == out.stat().st_size
    assert json.loads((tmp_path / "packed.pt.size.json").read_text())["total"]["ratio"] > 1
    assert "whole model" in capsys.readouterr().out
    float_cfg, float_model = _model()
    save_config(float_cfg, tmp_path / "float.yaml")
    torch.save(float_model.state_dict(), tmp_path / "float.pt")
    with pytest.raises(SystemExit, match="no compression configured"):
        pack_cli.main(
            ["--config", str(tmp_path / "float.yaml"), "--checkpoint", str(tmp_path / "float.pt"),
             "--out", str(tmp_path / "x.pt")]
        )  # fmt: skip


def test_a_float_checkpoint_packs_with_a_compress_override_as_post_training_quantization(
    tmp_path,
):
    float_cfg, float_model = _model()
    with torch.no_grad():
        for p in float_model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    save_config(float_cfg, tmp_path / "train.yaml")
    torch.save(float_model.state_dict(), tmp_path / "float.pt")
    pack_cli.main(
        ["--config", str(tmp_path / "train.yaml"), "--checkpoint", str(tmp_path / "float.pt"),
         "--out", str(tmp_path / "ptq.pt"), "--override", "compress=qat_int2_subchannel",
         "compress.quant.clip=search"]
    )  # fmt: skip
    cfg, loaded = load_packed(tmp_path / "ptq.pt")
    assert cfg.compress.quant.granularity == "subchannel" and cfg.compress.quant.bits == 2
    # the reference: the same config, float weights loaded, clipping searched on them
    ref_cfg = wenet_eff.load_config(
        str(tmp_path / "train.yaml"), ["compress=qat_int2_subchannel", "compress.quant.clip=search"]
    )
    ref = wenet_eff.build_model(ref_cfg).eval()
    assert compress.load_weights(ref, tmp_path / "float.pt", "test") is True
    clip = [layer.weight_quantizer.clip_coef for _, layer in compress.quant_layers(ref)]
    assert any((c < 1).any() for c in clip), "the clipping search ran on the float weights"
    enc, hyps = _outputs(ref)
    enc2, hyps2 = _outputs(loaded)
    assert torch.equal(enc, enc2) and hyps == hyps2
    # its own QAT checkpoint loads strictly: nothing derived
    torch.save(ref.state_dict(), tmp_path / "qat.pt")
    assert compress.load_weights(ref, tmp_path / "qat.pt", "test") is False
    torch.save({**ref.state_dict(), "bogus": torch.zeros(1)}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=r"1 unexpected keys \['bogus'\]"):
        compress.load_weights(ref, tmp_path / "bad.pt", "test")
    state = {k: v for k, v in ref.state_dict().items() if "encoder" not in k}
    torch.save(state, tmp_path / "part.pt")
    with pytest.raises(ValueError, match=r"does not fit .*: \d{2,} missing keys \[.*\] \.\.\."):
        compress.load_weights(ref, tmp_path / "part.pt", "test")


def test_only_the_missing_compression_state_is_derived(tmp_path):
    """A learned S3-Router checkpoint loaded with searched clipping added keeps its scores."""
    _, routed = _model("compress=s3_router")
    with torch.no_grad():
        for _, layer in compress.sparse_layers(routed):
            layer.sparsifier.scores.add_(torch.randn_like(layer.sparsifier.scores))
    torch.save(routed.state_dict(), tmp_path / "routed.pt")
    _, both = _model(
        "compress=s3_router", "compress.quant.enabled=true", "compress.quant.bits=4",
        "compress.quant.clip=search",
    )  # fmt: skip
    assert compress.load_weights(both, tmp_path / "routed.pt", "test") is True
    for (_, a), (_, b) in zip(
        compress.sparse_layers(routed), compress.sparse_layers(both), strict=True
    ):
        assert torch.equal(a.sparsifier.scores, b.sparsifier.scores)
    assert any(
        (layer.weight_quantizer.clip_coef < 1).any() for _, layer in compress.quant_layers(both)
    )


def test_a_float_checkpoint_is_not_served_dense_under_magnitude_pruning(tmp_path):
    _, float_model = _model()
    torch.save(float_model.state_dict(), tmp_path / "float.pt")
    _, pruned = _model("compress=sparse_magnitude_50")
    with pytest.raises(
        ValueError, match=r"no magnitude-pruning masks .* \(train.init_checkpoint\)"
    ):
        compress.load_weights(pruned, tmp_path / "float.pt", "--checkpoint")
    # a training run starts from the float weights and prunes on its schedule
    assert compress.load_weights(pruned, tmp_path / "float.pt", "init", training=True) is True
