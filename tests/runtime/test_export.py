"""Export: the export-ready modules equal the eager model, the .pt2 / .onnx graphs equal the
modules, int8 stays close to float, MoE stays sparse, compressed models fold."""

from __future__ import annotations

import copy
import io
import json
import zipfile

import pytest
import torch

import wenet_eff
from tests.runtime.conftest import CHUNK, LEFT, export, make_experiment
from tests.tiny import TINY, tiny_model
from wenet_eff.export.int8 import Int8Conv2d, Int8Linear, int8_weight, quantize_int8
from wenet_eff.export.modules import (
    EncoderChunkStep,
    EncoderFull,
    RescoringDecoder,
    chunk_window,
    export_moe_forward,
    fold_compression,
    prepare_for_export,
    subsampled_frames,
)
from wenet_eff.export.package import CHUNK_BATCH_MAX, PIECES, _pieces, cache_shapes
from wenet_eff.export.verify import verify_export
from wenet_eff.nn.moe import MoEFFNLayer, moe_layers


def _stream(model, step, feats, chunk):
    """Run `step` chunk by chunk over feats (1, T, F) like the runtime: (T', D) outputs."""
    shapes = cache_shapes(model, chunk, LEFT)
    att, cnn = torch.zeros(shapes["att_cache"]), torch.zeros(shapes["cnn_cache"])
    window = chunk_window(model, chunk)
    stride = chunk * model.encoder.embed.subsampling_rate
    context = model.encoder.embed.right_context + 1
    outs, offset = [], 0
    for start in range(0, feats.size(1) - context + 1, stride):
        piece = feats[:, start : start + window]
        valid = chunk if piece.size(1) == window else subsampled_frames(model, piece.size(1))
        piece = torch.cat([piece, piece.new_zeros(1, window - piece.size(1), piece.size(2))], 1)
        _, out, att, cnn = step(piece, torch.tensor([offset]), torch.tensor([valid]), att, cnn)
        outs.append(out[0, :valid])
        offset += valid
    return torch.cat(outs)


# one chunk; full chunks only (70); a short last chunk (60, 203); the front end's LayerNorm
@pytest.mark.parametrize(
    "frames, overrides",
    [(7, ()), (60, ()), (70, ()), (203, ()), (60, ("model.stability.embed_norm=true",))],
)
@torch.no_grad()
def test_chunk_step_equals_forward_chunk_by_chunk(frames, overrides):
    model = prepare_for_export(tiny_model(*overrides))
    feats = torch.randn(1, frames, 80)
    expected, _ = model.encoder.forward_chunk_by_chunk(feats, CHUNK, LEFT)
    got = _stream(model, EncoderChunkStep(model, CHUNK, LEFT), feats, CHUNK)
    torch.testing.assert_close(got, expected[0], atol=1e-5, rtol=1e-5)


def test_short_last_chunk_cases_are_covered():
    """frames 60 and 203 end in a chunk shorter than the window, 70 does not (test above)."""
    model = tiny_model()
    window = chunk_window(model, CHUNK)
    stride = CHUNK * model.encoder.embed.subsampling_rate
    context = model.encoder.embed.right_context + 1

    def last_piece(frames):
        return frames - max(range(0, frames - context + 1, stride))

    assert last_piece(60) < window and last_piece(203) < window and last_piece(70) >= window


@torch.no_grad()
def test_channels_last_front_end_equals_the_conv():
    """The .pt2 front end (first Conv2d as a GEMM into channels-last memory) gives what the
    Conv2d gives (the .onnx front end)."""
    from wenet_eff.export.modules import _single_channel_conv_nhwc

    model = prepare_for_export(tiny_model())
    conv = model.encoder.embed.conv[0]
    feats = torch.randn(2, 53, 80)
    y = _single_channel_conv_nhwc(conv, feats)
    assert y.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(y, conv(feats.unsqueeze(1)), atol=1e-5, rtol=1e-5)
    full = EncoderFull(model)
    expected = full(feats[:1])
    full.channels_last_front_end = False
    torch.testing.assert_close(full(feats[:1]), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("overrides", [(), ("model/ffn=moe",)])
def test_exported_front_end_is_channels_last(overrides):
    """torch.export takes the GEMM front end too. With MoE FFNs its module-stack tracer hands
    the Conv2d over as a proxy subclass, which a `type(conv) is nn.Conv2d` test refused."""
    model = prepare_for_export(tiny_model(*overrides))
    full = EncoderFull(model).eval()
    graph = torch.export.export(full, (torch.randn(1, 60, 80),), strict=False).graph
    convs = [n for n in graph.nodes if n.target is torch.ops.aten.conv2d.default]
    assert len(convs) == len(model.encoder.embed.conv) // 2 - 1  # every Conv2d but the first


@torch.no_grad()
def test_full_encoder_keeps_a_static_chunk_mask():
    """A static-chunk model's full-context forward masks future chunks; so does EncoderFull."""
    model = prepare_for_export(
        tiny_model("model.encoder.use_dynamic_chunk=false", "model.encoder.static_chunk_size=4")
    )
    feats = torch.randn(1, 120, 80)
    expected, _ = model.encoder(feats, torch.tensor([120]))
    _, got = EncoderFull(model)(feats)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    # the first chunk's outputs do not see later frames
    feats2 = feats.clone()
    feats2[:, 60:] = 0
    _, got2 = EncoderFull(model)(feats2)
    torch.testing.assert_close(got2[:, :4], got[:, :4], atol=1e-5, rtol=1e-5)


# embed_norm: the LayerNorm after the front end's output linear (model.stability.embed_norm)
@pytest.mark.parametrize("overrides", [(), ("model.stability.embed_norm=true",)])
@torch.no_grad()
def test_full_encoder_and_rescoring_decoder_equal_the_model(overrides):
    from wenet_eff.decode.attention import attention_rescoring
    from wenet_eff.decode.ctc import Hypothesis

    model = prepare_for_export(tiny_model(*overrides))
    feats = torch.randn(1, 90, 80)
    expected, mask = model.encoder(feats, torch.tensor([90]))
    logp, out = EncoderFull(model)(feats)
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(logp, model.ctc.log_softmax(expected), atol=1e-5, rtol=1e-5)
    hyps = [[3, 4, 5, 6], [], [7], [2, 2, 9, 3, 8]]
    pad = torch.tensor([h + [0] * (5 - len(h)) for h in hyps])
    l2r, r2l = RescoringDecoder(model)(out, pad, torch.tensor([len(h) for h in hyps]))
    for i, h in enumerate(hyps):  # ctc score 0, weight 0.3 on the right decoder
        best = attention_rescoring(model, [[Hypothesis(h, 0.0)]], out, mask, 0.0, 0.3)[0]
        assert best.score == pytest.approx(0.7 * float(l2r[i]) + 0.3 * float(r2l[i]), abs=1e-4)


def test_exported_graphs_equal_pytorch(dense_fp32, dense_exp):
    """Every .pt2 (AOTInductor) and .onnx (onnxruntime) graph against the PyTorch modules."""
    from wenet_eff.model import load_model

    meta = json.loads((dense_fp32 / "meta.json").read_text())
    graphs = {f"{p}.{f}" for p in ("encoder_chunk", "encoder_full", "decoder")
              for f in ("pt2", "onnx")}  # fmt: skip
    # the batched streaming step (the server's) is AOTInductor only
    graphs.add("encoder_chunk_batch.pt2")
    assert set(meta["files"]) == graphs | {"weights.bin", "weights.json"}
    for name in graphs:  # written by the export workers (--jobs 2)
        assert (dense_fp32 / name).stat().st_size > 0 and meta["export_seconds"][name] > 0
    # the graphs carry no weights (the largest is not in their shared libraries): weights.bin
    # holds them, once for the three graphs
    _, model = load_model(str(dense_exp / "train.yaml"), str(dense_exp / "model.pt"), [])
    assert meta["weights"]["bytes"] < 1.1 * sum(p.numel() * 4 for p in model.parameters())
    largest = max(model.parameters(), key=lambda p: p.numel()).detach().numpy().tobytes()
    for piece in PIECES:
        with zipfile.ZipFile(dense_fp32 / f"{piece}.pt2") as package:
            (so,) = [n for n in package.namelist() if n.endswith(".so")]
            assert largest[:4096] not in package.read(so)
    assert (meta["chunk_size"], meta["num_left_chunks"]) == (CHUNK, LEFT)
    report = verify_export(model, dense_fp32, frames=150, seed=3)
    assert len(report) == 7  # 3 graphs x 2 formats + the batched step (.pt2)
    for name, diffs in report.items():
        assert max(diffs) < 1e-4, (name, diffs)


@pytest.mark.heavy  # the dense_int8 fixture: four AOTInductor compiles
def test_int8_export(dense_int8, dense_exp):
    """int8 .pt2 graphs run the int8 modules (a flipped rounding may move an output by a
    quantization step, so the bound is loose) and stay near the float model."""
    from wenet_eff.model import load_model

    meta = json.loads((dense_int8 / "meta.json").read_text())
    assert meta["int8"] and meta["precisions"] == ["int8"]
    assert meta["kernel_paths"]["int8"]["layers"]["int8"] > 0
    _, model = load_model(str(dense_exp / "train.yaml"), str(dense_exp / "model.pt"), [])
    report = verify_export(model, dense_int8, frames=150, seed=3)
    for name, diffs in report.items():
        assert max(diffs) < 0.25, (name, diffs)
    float_model = prepare_for_export(copy.deepcopy(model))
    int8_model = copy.deepcopy(float_model)
    quantize_int8(int8_model)
    feats = torch.randn(1, 120, 80)
    with torch.no_grad():
        lp_f, _ = EncoderFull(float_model)(feats)
        lp_q, _ = EncoderFull(int8_model)(feats)
    agree = (lp_f.argmax(-1) == lp_q.argmax(-1)).float().mean()
    assert agree > 0.9


@torch.no_grad()
def test_int8_layers_compute_integer_products():
    torch.manual_seed(1)
    lin = torch.nn.Linear(40, 24)
    q = Int8Linear(lin, channels_first=False)
    w_q, w_scale = int8_weight(lin)
    assert w_q.dtype == torch.int8 and w_q.shape == (24, 40)
    x = torch.randn(7, 40)
    s_x = x.abs().amax(1, keepdim=True) / 127
    x_int = torch.round(x / s_x).clamp(-127, 127)
    exact = (x_int.double() @ w_q.double().t()) * s_x.double() * w_scale.double() + lin.bias
    torch.testing.assert_close(q(x).double(), exact, atol=1e-4, rtol=1e-5)
    rel = (q(x) - lin(x)).norm() / lin(x).norm()
    assert rel < 0.02
    conv = torch.nn.Conv2d(16, 8, 3, 2)
    qc = Int8Conv2d(conv)
    x4 = torch.randn(2, 16, 21, 13)
    assert qc(x4).shape == conv(x4).shape
    assert (qc(x4) - conv(x4)).norm() / conv(x4).norm() < 0.02


def test_moe_export_runs_only_routed_experts():
    model = tiny_model("model.encoder.mlp_type=moe", "model.encoder.n_expert=4")
    _, layer = moe_layers(model)[0]
    x = torch.randn(3, 11, layer.gate.in_features)
    seen = []
    hooks = [e.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
             for e in layer.experts]  # fmt: skip
    with torch.no_grad():
        got = export_moe_forward(layer, x)
    for h in hooks:
        h.remove()
    with torch.no_grad():
        torch.testing.assert_close(got, layer(x), atol=1e-5, rtol=1e-5)
    assert sum(seen) == 3 * 11 * layer.k  # each frame reaches exactly k experts


@pytest.mark.heavy
def test_moe_export_graph(tmp_path):
    exp = make_experiment(tmp_path, "moe", "model.encoder.mlp_type=moe", "model.encoder.n_expert=4")
    out = export(exp, "rt", "--formats", "pt2", "onnx", "--pieces", "encoder_chunk", "--jobs", "2")
    meta = json.loads((out / "meta.json").read_text())
    assert meta["moe"]
    from wenet_eff.model import load_model

    _, model = load_model(str(exp / "train.yaml"), str(exp / "model.pt"), [])
    assert any(isinstance(m, MoEFFNLayer) for m in model.modules())
    report = verify_export(model, out)
    assert set(report) == {"encoder_chunk.pt2", "encoder_chunk.onnx"}
    for name, diffs in report.items():
        assert max(diffs) < 1e-4, (name, diffs)
    # onnxruntime int8: the routers stay float (two workers: the float model reaches them too)
    import onnx

    out8 = export(exp, "rt8", "--precisions", "int8", "--formats", "onnx", "--pieces",
                  "encoder_chunk", "decoder", "--jobs", "2")  # fmt: skip
    assert (out8 / "decoder.int8.onnx").stat().st_size > 0
    graph = onnx.load(str(out8 / "encoder_chunk.int8.onnx")).graph
    float_inits = {i.name for i in graph.initializer}
    gates = [i for i in float_inits if i.endswith(".gate.weight")]
    assert len(gates) == 4 and any(n.op_type == "MatMulInteger" for n in graph.node)


@torch.no_grad()
def test_moe_batched_step_keeps_its_batch_range_through_aotinductors_trace():
    """AOTInductor re-traces the exported program (aot_export_module, its first step) in the
    program's fake mode; a guard there narrows the dynamic batch for good, and the MoE experts'
    frame counts with it (their bounds become runtime asserts). A Conv1d guards on the example
    batch (< 16: ATen's kernel choice), so the batched step takes CHUNK_BATCH_MAX (15) streams,
    which meta.json states and the server keeps to; at 256 declared, an MoE model's batched
    step failed on 16 or more streams ("Expected u5 <= 240 but received 304")."""
    from torch._functorch.aot_autograd import aot_export_module
    from torch._guards import detect_fake_mode

    model = prepare_for_export(tiny_model("model.encoder.mlp_type=moe", "model.encoder.n_expert=4"))
    module, args, dyn, _, _ = _pieces(model, CHUNK, LEFT, 80)["encoder_chunk_batch"]
    ep = torch.export.export(module, args, dynamic_shapes=dyn, strict=False)
    saved = io.BytesIO()  # a fresh shape environment, as in a compile of the saved program
    torch.export.save(ep, saved)
    saved.seek(0)
    gm = torch.export.load(saved).module()
    fakes = [n.meta["val"] for n in gm.graph.nodes if n.op == "placeholder"]
    with detect_fake_mode(fakes) as mode:
        aot_export_module(gm, fakes, trace_joint=False)
    ranges = {str(s): r for s, r in mode.shape_env.var_to_range.items()}
    frames = {name: r for name, r in ranges.items() if name.startswith("u")}
    assert frames and {int(r.upper) for r in frames.values()} == {CHUNK_BATCH_MAX * CHUNK}
    (batch,) = {r for name, r in ranges.items() if name.startswith("s")}
    assert int(batch.upper) == CHUNK_BATCH_MAX


@torch.no_grad()
def test_fold_compression_keeps_the_forward():
    cfg = wenet_eff.load_config("mini", [*TINY, "compress=qat_int4"])
    model = wenet_eff.build_model(cfg).eval()
    feats = torch.randn(1, 60, 80)
    expected, _ = model.encoder(feats, torch.tensor([60]))
    assert fold_compression(model) > 0
    assert not any(".weight_quantizer." in k for k in model.state_dict())
    got, _ = model.encoder(feats, torch.tensor([60]))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_streaming_export_needs_left_chunks_and_a_causal_convolution():
    model = tiny_model()
    with pytest.raises(ValueError, match="num_left_chunks > 0"):
        EncoderChunkStep(model, 4, -1)
    with pytest.raises(ValueError, match="causal convolution"):
        EncoderChunkStep(tiny_model("model.encoder.causal=false"), 4, 2)


def test_prepare_for_export_is_idempotent_and_export_leaves_the_model(tmp_path):
    from wenet_eff.export.package import export_model

    overrides = ("model.encoder.mlp_type=moe", "model.encoder.n_expert=4")
    exp = make_experiment(tmp_path, "moe", *overrides)
    cfg = wenet_eff.load_config(str(exp / "train.yaml"))
    model = wenet_eff.build_model(cfg).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    meta = export_model(model, cfg, tmp_path / "rt", exp / "units.txt", pieces=())
    assert meta["moe"] and meta["files"] == {}
    assert all(type(m).__name__ != "_ExportMoE" for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())

    model = tiny_model(*overrides)
    n = len(moe_layers(model))
    prepare_for_export(prepare_for_export(model))
    wrapped = [m for m in model.modules() if type(m).__name__ == "_ExportMoE"]
    assert len(wrapped) == n and not any(type(m.layer).__name__ == "_ExportMoE" for m in wrapped)


@pytest.mark.heavy
def test_large_onnx_graphs_keep_weights_in_a_side_file(tmp_path, monkeypatch):
    """Graphs over 2 GiB cannot be one protobuf: above the threshold (here 0 bytes) the weights
    go to a side file, for float and int8 graphs, and onnxruntime runs them."""
    import onnxruntime as ort

    from wenet_eff.export import package

    monkeypatch.setattr(package, "_ONNX_EXTERNAL_BYTES", 0)
    exp = make_experiment(tmp_path, "dense")
    feats = torch.randn(1, 120, 80).numpy()
    outputs = {}
    for name in ("fp32", "int8"):
        out = export(exp, name, "--formats", "onnx", "--pieces", "encoder_full", "--precisions",
                     name)  # fmt: skip
        graph = "encoder_full.onnx" if name == "fp32" else "encoder_full.int8.onnx"
        files = sorted(p.name for p in out.iterdir())
        assert files == [graph, f"{graph}.data", "meta.json", "units.txt"]
        assert (out / graph).stat().st_size < (out / f"{graph}.data").stat().st_size
        session = ort.InferenceSession(str(out / graph))
        outputs[name] = session.run(None, {"feats": feats})[1]
    assert abs(outputs["int8"] - outputs["fp32"]).max() < 0.5


def test_pieces_fuse_attention_for_aotinductor_only():
    """Every attention is fused in the .pt2 pieces and explicit in the .onnx ones."""
    from wenet_eff.export.package import _pieces
    from wenet_eff.nn.attention import MultiHeadedAttention

    model = prepare_for_export(tiny_model())
    attention = [m for m in model.modules() if isinstance(m, MultiHeadedAttention)]
    assert {type(m).__name__ for m in attention} == {
        "MultiHeadedAttention",
        "RelPositionMultiHeadedAttention",
    }
    for fmt in ("pt2", "onnx", "pt2"):
        _pieces(model, CHUNK, LEFT, 80, fmt)
        assert all(m.fused_softmax == (fmt == "pt2") for m in attention)


@pytest.mark.parametrize(
    "flag, message",
    [
        ("--int8", "--int8 is now --precisions: e.g. --precisions fp32 int8"),
        ("--fp16", "unrecognized arguments: --fp16"),
    ],
)
def test_export_cli_names_a_removed_or_unknown_flag(flag, message, capsys):
    from wenet_eff.bin import export as export_cli

    with pytest.raises(SystemExit):
        export_cli.main(["--config", "c.yaml", "--checkpoint", "m.pt", "--out_dir", "o", flag])
    assert message in capsys.readouterr().err
