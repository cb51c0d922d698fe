"""Compressed models exported packed (export.packed, export.weights, export.kernels): the
runtime directory holds the integer codes, scales and zero points QAT learned at their bit
width, the C++ runtime decodes them as the eager fake-quant model does (fp32 path: to float
rounding; int8 path: to activation rounding), on the kernel path chosen for the CPU; bf16
graphs of a float model decode."""

from __future__ import annotations

import copy
import json

import jiwer
import pytest
import torch

import wenet_eff
from tests.runtime.conftest import export, make_experiment
from tests.tiny import TINY
from wenet_eff.compress import quant_layers, sparse_layers
from wenet_eff.compress.pack import save_packed
from wenet_eff.export.kernels import lower
from wenet_eff.export.modules import EncoderFull, RescoringDecoder, prepare_for_export
from wenet_eff.export.packed import PackedNMFloat, PackedWeight, packed_tensors, prepare_packed
from wenet_eff.export.weights import load_graph, read_weights, write_weights
from wenet_eff.model import load_model

CONFIGS = ["qat_int8", "qat_int4", "qat_int4_rand", "mixed_4_8", "qat_int2",
           "qat_int2_subchannel", "binary", "int4_sparse_2_4", "sparse_2_4"]  # fmt: skip
# sub-channel blocks of 16 on 32- and 48-wide rows: several scales per row (the tiny model's
# rows are shorter than qat_int2_subchannel's blocks of 64)
SUBCHANNEL = ["compress.quant.block_size=16"]


def _qat_model(config: str, *overrides: str):
    torch.manual_seed(0)
    cfg = wenet_eff.load_config("mini", [*TINY, f"compress={config}", *overrides])
    model = wenet_eff.build_model(cfg).eval()
    with torch.no_grad():  # away from the initial ranges, as training would move them
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return cfg, model


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("config", CONFIGS)
@torch.no_grad()
def test_weight_file_holds_the_qat_integers_bit_for_bit(tmp_path, config):
    """weights.bin stores each layer's packed record (the bytes bin.pack writes); unpacked it
    gives the QAT layer's integer codes, scales and zero points, and its eval weight, exactly.
    The packed model's forward is the fake-quant model's, bit for bit."""
    cfg, model = _qat_model(config, *(SUBCHANNEL if "subchannel" in config else ()))
    packed, schemes = prepare_packed(model)
    # what a graph of this model is given at load: its buffers (the packed records included)
    write_weights(tmp_path, {"g.pt2": dict(packed.named_buffers())}, packed_tensors(packed))
    _, stored = read_weights(tmp_path)
    modules = dict(packed.named_modules())
    for name, layer in quant_layers(model):
        source = modules[name].packed_weight
        record = {k: stored.get(f"{name}.packed_weight.{k}") for k in ("data", "scale", "zero",
                                                                      "index")}  # fmt: skip
        record.update(bits=source.bits, numel=source.numel)
        if source.nm is not None:
            record["nm"] = source.nm
        got = PackedWeight(record, source.layout, source.symmetric)
        expected = layer.stored()
        for key in ("q", "scale", "zero"):
            if expected[key] is None:
                assert got.stored()[key] is None
            else:
                assert torch.equal(got.stored()[key], expected[key].to(got.stored()[key])), key
        assert torch.equal(got.dequantized(), layer.effective_weight())
    for name, layer in sparse_layers(model):
        source = modules[name].packed_weight
        if isinstance(source, PackedNMFloat):
            assert torch.equal(source.dequantized(), layer.masked_weight())
            assert schemes[name]["bytes"] < 0.6 * 4 * layer.weight.numel()  # half + positions
    feats = torch.randn(1, 120, 80) * 3 + 10
    expected = EncoderFull(prepare_for_export(copy.deepcopy(model)))(feats)
    assert all(torch.equal(a, b) for a, b in zip(EncoderFull(packed)(feats), expected, strict=True))
    if quant_layers(model):  # the same bytes as bin.pack's packed file
        report = save_packed(model, cfg, tmp_path / "packed.pt")
        quant_bytes = sum(s["bytes"] for n, s in schemes.items() if s["levels"] != "float")
        assert quant_bytes == sum(r["packed_bytes"] for r in report["roles"].values())


@pytest.mark.parametrize("config", ["qat_int4", "qat_int2_subchannel", "binary", "int4_sparse_2_4"])
@torch.no_grad()
def test_int8_path_multiplies_the_qat_codes(config):
    """The int8 kernel path runs per-channel layers on their QAT codes (any bit width, N:M,
    binary) and leaves sub-channel layers in float: its output differs from the fake-quant
    model only by the int8 rounding of the activations (below 2 % here; ~0.8 % measured),
    and so does the bf16 path by bf16 rounding."""
    _, model = _qat_model(config, *(SUBCHANNEL if "subchannel" in config else ()))
    packed, schemes = prepare_packed(model)
    int8 = copy.deepcopy(packed)
    paths = lower(int8, "int8")
    subchannel = {n for n, s in schemes.items() if s["granularity"].startswith("subchannel")}
    assert all(paths[n] == "fp32" for n in subchannel)
    assert sum(p == "int8" for p in paths.values()) >= len(paths) - len(subchannel) - 5
    feats = torch.randn(1, 150, 80) * 3 + 10
    logp, out = EncoderFull(packed)(feats)
    logp8, out8 = EncoderFull(int8)(feats)
    assert _rel(out8, out) < 0.02
    assert (logp8.argmax(-1) == logp.argmax(-1)).float().mean() > 0.9
    bf16 = copy.deepcopy(packed)
    lower(bf16, "bf16")
    assert _rel(EncoderFull(bf16)(feats)[1], out) < 0.02
    hyps, lens = torch.tensor([[3, 4, 5, 6], [7, 2, 2, 9]]), torch.tensor([4, 2])
    scores = RescoringDecoder(packed)(out, hyps, lens)
    scores8 = RescoringDecoder(int8)(out, hyps, lens)
    for a, b in zip(scores8, scores, strict=True):
        assert torch.allclose(a, b, rtol=0.05, atol=0.05)


@pytest.fixture(scope="module")
def qat_exp(tmp_path_factory):
    """A tiny int4 + 2:4 QAT experiment (PTQ of random weights), exported packed with its
    default kernel paths (fp32 + int8), full-context encoder and rescoring decoder."""
    exp = make_experiment(tmp_path_factory.mktemp("packed"), "qat", "compress=int4_sparse_2_4")
    export(exp, "rt", "--formats", "pt2", "--pieces", "encoder_full", "decoder", "--jobs", "2")
    return exp


def _eager_tokens(runtime, model, wavs, mode: str):
    from wenet_eff.decode.search import decode_batch

    model = prepare_for_export(copy.deepcopy(model))
    tokens = []
    with torch.inference_mode():
        for wav in wavs:
            feats = torch.from_numpy(runtime.fbank(wav, 16000)).unsqueeze(0)
            out, mask = model.encoder(feats, torch.tensor([feats.size(1)]))
            tokens.append(decode_batch(model, [mode], out, mask, 10, 0.3, 0.3)[mode][0].tokens)
    return tokens


@pytest.mark.heavy  # the qat_exp fixture: four AOTInductor compiles
def test_packed_directory_is_what_qat_stored(qat_exp, tmp_path):
    """The graphs read their weights from weights.bin, which is the packed model's size (the
    bin.pack file's, within 15 %); meta.json records each layer's scheme and path."""
    rt = qat_exp / "rt"
    meta = json.loads((rt / "meta.json").read_text())
    assert meta["packed"] and meta["precisions"] == ["fp32", "int8"]
    layer = meta["layers"]["encoder.encoders.0.feed_forward.w_1"]
    assert (layer["bits"], layer["levels"], layer["granularity"], layer["nm"]) == (
        4, "sym", "channel", [2, 4]
    )  # fmt: skip
    assert layer["paths"] == {"fp32": "fp32", "int8": "int8"}
    assert meta["kernel_paths"]["int8"]["int8_share"] > 0.9
    cfg, model = load_model(str(qat_exp / "train.yaml"), str(qat_exp / "model.pt"))
    save_packed(model, cfg, tmp_path / "packed.pt")
    weights = (rt / "weights.bin").stat().st_size
    assert weights == meta["weights"]["bytes"]
    assert weights <= 1.15 * (tmp_path / "packed.pt").stat().st_size
    # the float weights of the packed layers are nowhere in the directory
    w_1 = dict(model.named_modules())["encoder.encoders.0.feed_forward.w_1"]
    needle = w_1.effective_weight().detach().numpy().tobytes()[:256]
    assert all(needle not in p.read_bytes() for p in rt.iterdir())


@pytest.mark.heavy
@pytest.mark.parametrize("precision", ["fp32", "int8"])
def test_cpp_runtime_equals_the_fake_quant_model(runtime, qat_exp, speech, precision):
    """fp32: the graphs dequantize the packed levels to the fake-quant weights, so the C++
    decoder gives the eager QAT model's tokens. int8: the QAT codes times int8 activations; the
    encoder output stays within 2 % of the fake-quant model's (relative norm; ~1 % measured),
    and the tokens differ from eager's in few places: the random model's posteriors are flat,
    so one activation rounding step can flip a beam choice (token error rate against eager
    below 15 %; 1-7 % measured, by run: a wrong scale or code gives most tokens wrong)."""
    rt = qat_exp / "rt"
    _, model = load_model(str(qat_exp / "train.yaml"), str(qat_exp / "model.pt"))
    wavs = [w for _, _, w in speech]
    cpp = runtime.Model(str(rt), precision=precision)
    assert cpp.precision == precision
    graph = load_graph(rt, "encoder_full.pt2" if precision == "fp32" else "encoder_full.int8.pt2")
    eager = EncoderFull(prepare_for_export(copy.deepcopy(model)))
    bound = 1e-5 if precision == "fp32" else 0.02
    for wav in wavs:
        feats = torch.from_numpy(runtime.fbank(wav, 16000)).unsqueeze(0)
        with torch.no_grad():
            assert _rel(graph(feats)[1], eager(feats)[1]) < bound
    for mode in ("ctc_prefix_beam_search", "attention_rescoring"):
        dec = runtime.Decoder(cpp, chunk_size=-1, mode=mode, reverse_weight=0.3)
        got = [dec.decode(w)["tokens"] for w in wavs]
        expected = _eager_tokens(runtime, model, wavs, mode)
        if precision == "fp32":
            assert got == expected, mode
        else:
            words = [[" ".join(map(str, t)) or "<empty>" for t in ts] for ts in (expected, got)]
            assert jiwer.wer(*words) < 0.15, mode


@pytest.mark.heavy
def test_auto_kernel_path_follows_the_cpu(runtime, qat_exp):
    """The runtime's own choice for this CPU is the selection function's (tested on faked
    feature sets by ctest test_cpu_features): int8 with int8 dot products, else fp32 here."""
    rt = qat_exp / "rt"
    meta = json.loads((rt / "meta.json").read_text())
    expected, reason = runtime.choose_kernel_path(
        runtime.cpu_features(), meta["precisions"], meta["kernel_paths"]["int8"]["int8_share"]
    )
    model = runtime.Model(str(rt))
    assert (model.precision, model.precision_reason) == (expected, reason)
    cpu = runtime.cpu_features().split()
    int8_dot = any(f in cpu for f in ("avx512_vnni", "avx_vnni", "amx_int8"))
    assert expected == ("int8" if int8_dot else "fp32")
    assert runtime.choose_kernel_path("avx2 amx_int8 amx_bf16", ["fp32", "int8"], 0.98)[0] == "int8"
    with pytest.raises(ValueError, match="precision 'bf16' is not in the model directory"):
        runtime.Model(str(rt), precision="bf16")


@pytest.mark.heavy
def test_bf16_export_decodes(runtime, dense_exp, speech):
    """A float model's bf16 graphs (GEMMs in bf16, the rest float32) decode in C++ close to the
    fp32 model: encoder output within 2 % (relative norm)."""
    out = export(dense_exp, "bf16", "--precisions", "bf16", "--formats", "pt2", "--pieces",
                 "encoder_full")  # fmt: skip
    meta = json.loads((out / "meta.json").read_text())
    assert meta["precisions"] == ["bf16"] and meta["kernel_paths"]["bf16"]["layers"]["bf16"] > 0
    cpp = runtime.Model(str(out))
    assert cpp.precision == "bf16"
    _, model = load_model(str(dense_exp / "train.yaml"), str(dense_exp / "model.pt"))
    eager = EncoderFull(prepare_for_export(model))
    graph = load_graph(out, "encoder_full.bf16.pt2")
    dec = runtime.Decoder(cpp, chunk_size=-1, mode="ctc_prefix_beam_search")
    for _, _, wav in speech:
        feats = torch.from_numpy(runtime.fbank(wav, 16000)).unsqueeze(0)
        with torch.no_grad():
            assert _rel(graph(feats)[1], eager(feats)[1]) < 0.02
        assert dec.decode(wav)["tokens"]
