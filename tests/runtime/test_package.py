"""export.package: meta.json's `moe` flag comes from the layer types, not class names."""

from __future__ import annotations

import torch.nn as nn

import wenet_eff
from tests.runtime.conftest import make_experiment
from wenet_eff.export.package import export_model
from wenet_eff.nn.moe import MoEFFNLayer, moe_layers


def _meta(tmp_path, name, edit, *overrides):
    exp = make_experiment(tmp_path, name, *overrides)
    cfg = wenet_eff.load_config(str(exp / "train.yaml"))
    model = wenet_eff.build_model(cfg).eval()
    edit(model)
    return export_model(model, cfg, tmp_path / f"{name}_rt", exp / "units.txt", pieces=())


def test_meta_moe_follows_the_layer_types_not_their_names(tmp_path):
    def subclass_experts(model):
        # as torch.export's module-stack tracer hands submodules over: a subclass per layer
        for _, layer in moe_layers(model):
            layer.__class__ = type("AttrProxy", (MoEFFNLayer,), {})

    def add_lookalike(model):
        # a module of the model's owner that merely shares the export wrapper's name
        model.encoder.add_module("adapter", type("_ExportMoE", (nn.Identity,), {})())

    moe = ("model.encoder.mlp_type=moe", "model.encoder.n_expert=4")
    assert _meta(tmp_path, "moe", subclass_experts, *moe)["moe"] is True
    assert _meta(tmp_path, "dense", add_lookalike)["moe"] is False
