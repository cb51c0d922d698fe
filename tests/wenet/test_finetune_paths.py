"""WeNet's experiments of either dictionary layout keep their special tokens through the
fine-tuning paths: MoE upcycling (bin.upcycle, whose experts start as copies of WeNet's FFNs, so
WeNet's losses still hold), and QAT + N:M sparsity + streaming fine-tuning composed onto the
saved config. (Fine-tuning with WeNet's command line and decoding in the C++ runtime:
tests/runtime/test_wenet_sos2.py.)"""

from __future__ import annotations

import pytest
import torch
import yaml

from tests.wenet.reference import reference
from wenet_eff import compress
from wenet_eff.bin import upcycle
from wenet_eff.config import load_config
from wenet_eff.model import build_model, load_model


@pytest.mark.parametrize("layout, sos", [("sos2", 2), ("soslast", 47)])
def test_upcycled_and_compressed_wenet_experiment_keeps_its_ids(tmp_path, layout, sos):
    wenet = reference("wenet_vectors", layout)
    up = tmp_path / "moe"
    upcycle.main(
        ["--config", str(wenet / "train.yaml"), "--checkpoint", str(wenet / "final.pt"),
         "--out_dir", str(up), "--n_expert", "2", "--k", "1"]
    )  # fmt: skip
    saved = yaml.safe_load((up / "train.yaml").read_text())["tokenizer"]["special_tokens"]
    assert (saved["<blank>"], saved["<sos>"], saved["<eos>"]) == (0, sos, sos)
    _, moe = load_model(up / "train.yaml", up / "upcycled.pt")
    assert (moe.sos, moe.eos) == (sos, sos)
    io = torch.load(wenet / "io.pt", weights_only=False)
    expected = io["losses"]
    with torch.no_grad():
        losses = moe(io["speech"], io["speech_lengths"], io["text"], io["text_lengths"])
    for key in ("loss", "loss_att", "loss_ctc"):  # experts = WeNet's FFN: WeNet's losses
        assert float(losses[key]) == pytest.approx(expected[key], rel=1e-4), key
    cfg = load_config(up / "train.yaml", ["compress=int4_sparse_2_4", "train=streaming_finetune"])
    student = build_model(cfg)
    compress.load_weights(student, up / "upcycled.pt", "--checkpoint")
    assert (student.sos, student.eos, student.ctc.blank_id) == (sos, sos, 0)
    assert cfg.model.encoder.use_dynamic_chunk and cfg.compress.quant.enabled
