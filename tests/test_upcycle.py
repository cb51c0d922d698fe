"""`python -m wenet_eff.bin.upcycle`: a dense experiment becomes an MoE one that starts equal."""

from __future__ import annotations

import torch

import wenet_eff
from tests.tiny import TINY
from wenet_eff.bin import upcycle
from wenet_eff.config import save_config
from wenet_eff.weights import load_model_state


def test_upcycle_cli_writes_an_equivalent_moe_experiment(tmp_path):
    cfg = wenet_eff.load_config("mini", TINY)
    dense = wenet_eff.build_model(cfg)
    save_config(cfg, tmp_path / "train.yaml")
    torch.save(dense.state_dict(), tmp_path / "final.pt")
    out = tmp_path / "moe"
    diff = upcycle.main(
        ["--config", str(tmp_path / "train.yaml"), "--checkpoint", str(tmp_path / "final.pt"),
         "--out_dir", str(out), "--n_expert", "4", "--k", "2", "--parts", "encoder"]
    )  # fmt: skip
    assert diff < 1e-5
    moe_cfg = wenet_eff.load_config(out / "train.yaml")
    assert moe_cfg.model.encoder.mlp_type == "moe" and moe_cfg.model.encoder.n_expert == 4
    assert moe_cfg.model.decoder.mlp_type == "position_wise_feed_forward"
    moe = wenet_eff.build_model(moe_cfg)
    moe.load_state_dict(load_model_state(out / "upcycled.pt"), strict=True)
    w1 = dense.encoder.encoders[1].feed_forward_macaron.w_1.weight
    for expert in moe.encoder.encoders[1].feed_forward_macaron.experts:
        assert torch.equal(expert.w_1.weight, w1)
    assert moe.num_params()["total"] > dense.num_params()["total"]
