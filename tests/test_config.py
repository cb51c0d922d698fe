"""A saved train.yaml composes with Hydra as a packaged config does: the same overrides, the
same result, the same errors; values that would train something meaningless are refused by
key."""

from __future__ import annotations

import copy

import pytest
import yaml
from omegaconf import OmegaConf

import wenet_eff
from wenet_eff.config import check_values, save_config


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "train.yaml"
    overrides = ["compress=qat_int2_subchannel", "compress.quant.clip=search"]
    save_config(wenet_eff.load_config("mini", overrides), path)
    return str(path)


@pytest.fixture(scope="module")
def mini():
    return wenet_eff.load_config("mini")


def test_a_group_replaces_its_node_and_keys_win_whatever_their_order(saved):
    overrides = ["compress.quant.bits=8", "compress=qat_int4", "stability=qk_norm"]
    cfg = wenet_eff.load_config(saved, overrides)
    packaged = wenet_eff.load_config("mini", overrides)
    assert cfg.compress == packaged.compress and cfg.model.stability == packaged.model.stability
    assert cfg.compress.quant.bits == 8  # the key, although given before its group
    # the group node is replaced, not merged: nothing of the sub-channel config survives
    assert cfg.compress.quant.granularity == "channel" and cfg.compress.quant.clip == "none"


def test_a_group_of_a_wider_package_merges_into_it(saved):
    moe = wenet_eff.load_config(saved, ["model/ffn=moe", "model.encoder.n_expert=4"])
    assert moe.model.encoder.mlp_type == "moe" and moe.model.encoder.n_expert == 4
    assert moe.model.encoder.output_size == 144  # the rest of the model is kept
    streaming = wenet_eff.load_config(saved, ["train=streaming_finetune"])  # @package _global_
    keys = [f"{k}={v}" for k, v in _global_keys("train", "streaming_finetune")]
    assert "model.encoder.use_dynamic_chunk=True" in keys
    assert streaming == wenet_eff.load_config(saved, keys) != wenet_eff.load_config(saved)


def _global_keys(group: str, option: str) -> list[tuple[str, object]]:
    """The leaves of a packaged global option, as dotted keys."""
    import yaml

    from wenet_eff.config import CONF_DIR

    def leaves(node, prefix=""):
        for k, v in node.items():
            if isinstance(v, dict):
                yield from leaves(v, f"{prefix}{k}.")
            else:
                yield f"{prefix}{k}", v

    return list(leaves(yaml.safe_load((CONF_DIR / group / f"{option}.yaml").read_text())))


def test_a_saved_config_composes_back_to_itself(saved):
    overrides = ["compress=qat_int2_subchannel", "compress.quant.clip=search"]
    assert wenet_eff.load_config(saved) == wenet_eff.load_config("mini", overrides)


@pytest.mark.parametrize(
    "override, message",
    [
        ("compress=qat_int3", r"Could not find 'compress/qat_int3'(.|\n)*\bqat_int4\b"),
        ("=train", r"with overrides \[.*'=train'\]: Could not override ''"),
        ("model/=mini", r"Error parsing override 'model/=mini'"),
        ("model..encoder=1", r"LexerNoViableAltException: model\.\.encoder=1"),
        ("compress.quant.bitz=3", r"Could not override 'compress\.quant\.bitz'"),
        ("compress.quant.bits=x", r"Error merging override compress\.quant\.bits=x"),
    ],
)
@pytest.mark.parametrize("packaged", [False, True])
def test_bad_overrides_name_themselves(saved, packaged, override, message):
    with pytest.raises(ValueError, match=message):
        wenet_eff.load_config("mini" if packaged else saved, [override])


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["data.batch_size=0"], "data.batch_size=0 (must be >= 1)"),
        (["model.encoder.num_blocks=0"], "model.encoder.num_blocks=0 (must be >= 1)"),
        (["model.encoder.output_size=-8"], "model.encoder.output_size=-8 (must be >= 1)"),
        (["model.vocab_size=-1"], "model.vocab_size=-1 (must be >= 0)"),
        (["data.max_frames_in_batch=0"], "data.max_frames_in_batch=0 (must be >= 1)"),
        (["optim.lr=0"], "optim.lr=0.0 (must be > 0)"),
        (["model.ctc_weight=1.5"], "model.ctc_weight=1.5 (must be <= 1)"),
        (["train.accum_grad=0"], "train.accum_grad=0 (must be >= 1)"),
        (
            ["model.encoder.output_size=30", "model.decoder.attention_heads=3"],
            "model.encoder.output_size=30 (must be divisible by model.encoder.attention_heads=4)",
        ),
        (
            ["data.filter.min_length=500", "data.filter.max_length=400"],
            "data.filter.min_length=500 (must be <= data.filter.max_length=400)",
        ),
        (  # every bad value at once, each named
            ["data.batch_size=0", "model.encoder.attention_heads=0"],
            "model.encoder.attention_heads=0 (must be >= 1); data.batch_size=0 (must be >= 1)",
        ),
    ],
)
def test_meaningless_values_name_their_key(mini, overrides, message):
    cfg = copy.deepcopy(mini)
    for override in overrides:
        key, value = override.split("=")
        OmegaConf.update(cfg, key, yaml.safe_load(value))
    with pytest.raises(ValueError) as info:
        check_values(cfg)
    assert str(info.value) == f"config values out of range: {message}"


@pytest.mark.parametrize("packaged", [False, True])
def test_loading_a_config_checks_its_values(saved, packaged):
    with pytest.raises(ValueError, match=r"model\.encoder\.num_blocks=0 \(must be >= 1\)"):
        wenet_eff.load_config("mini" if packaged else saved, ["model.encoder.num_blocks=0"])
