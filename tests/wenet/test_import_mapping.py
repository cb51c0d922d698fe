"""WeNet's train.yaml mapped onto our schema (keys, WeNet's defaults, special tokens, refusals),
and round trips of our own checkpoints through a WeNet train.yaml. These are not evidence of
compatibility with WeNet's numbers: test_vectors.py checks WeNet's own outputs."""

import json
from pathlib import Path

import pytest
import torch
import yaml

import wenet_eff
from tests.wenet.reference import u2pp_conformer_layout

# The architecture part of WeNet's LibriSpeech train_u2++_conformer.yaml, as WeNet writes it
# into an experiment directory (paths relative to the recipe directory).
WENET_YAML = {
    "accum_grad": 1,
    "cmvn": "global_cmvn",
    "cmvn_conf": {"cmvn_file": "data/train_960/global_cmvn", "is_json_cmvn": True},
    "dataset": "asr",
    "dataset_conf": {
        "fbank_conf": {"dither": 1.0, "frame_length": 25, "frame_shift": 10, "num_mel_bins": 80},
    },
    "decoder": "bitransformer",
    "decoder_conf": {
        "attention_heads": 4,
        "dropout_rate": 0.1,
        "linear_units": 2048,
        "num_blocks": 3,
        "positional_dropout_rate": 0.1,
        "r_num_blocks": 3,
        "self_attention_dropout_rate": 0.1,
        "src_attention_dropout_rate": 0.1,
    },
    "encoder": "conformer",
    "encoder_conf": {
        "activation_type": "swish",
        "attention_dropout_rate": 0.1,
        "attention_heads": 4,
        "causal": True,
        "cnn_module_kernel": 15,
        "cnn_module_norm": "layer_norm",
        "dropout_rate": 0.1,
        "input_layer": "conv2d",
        "linear_units": 2048,
        "normalize_before": True,
        "num_blocks": 12,
        "output_size": 256,
        "pos_enc_layer_type": "rel_pos",
        "positional_dropout_rate": 0.1,
        "selfattention_layer_type": "rel_selfattn",
        "use_cnn_module": True,
        "use_dynamic_chunk": True,
        "use_dynamic_left_chunk": False,
    },
    "input_dim": 80,
    "model": "asr_model",
    "model_conf": {
        "ctc_weight": 0.3,
        "length_normalized_loss": False,
        "lsm_weight": 0.1,
        "reverse_weight": 0.3,
    },
    "output_dim": 5002,
    "tokenizer": "bpe",
    "tokenizer_conf": {
        "bpe_path": "data/lang_char/train_960_unigram5000.model",
        "symbol_table_path": "data/lang_char/train_960_unigram5000_units.txt",
        "split_with_space": False,
    },
}


@pytest.fixture
def wenet_exp(tmp_path) -> Path:
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "train.yaml").write_text(yaml.safe_dump(WENET_YAML))
    units = ["<blank>", "<unk>"] + [f"▁W{i}" for i in range(4999)] + ["<sos/eos>"]
    (exp / "units.txt").write_text("".join(f"{u} {i}\n" for i, u in enumerate(units)))
    stats = {"mean_stat": [10.0] * 80, "var_stat": [200.0] * 80, "frame_num": 5}
    (exp / "global_cmvn").write_text(json.dumps(stats))
    return exp


def test_wenet_train_yaml_maps_to_the_same_architecture(wenet_exp):
    cfg = wenet_eff.load_config(wenet_exp / "train.yaml")
    assert cfg.model.encoder.num_blocks == 12 and cfg.model.decoder.r_num_blocks == 3
    assert cfg.cmvn.file == str(wenet_exp / "global_cmvn")  # exp-dir copy found
    assert cfg.tokenizer.units == str(wenet_exp / "units.txt")
    model = wenet_eff.build_model(cfg)
    layout = u2pp_conformer_layout()["state_dict"]
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == layout
    # CMVN buffers come from the exp dir's global_cmvn: mean 2, var 40 - 4 = 36
    assert torch.allclose(model.encoder.global_cmvn.mean, torch.full((80,), 2.0))
    assert torch.allclose(model.encoder.global_cmvn.istd, torch.full((80,), 1 / 6.0))


def test_round_trip_of_our_checkpoint_through_a_wenet_yaml(wenet_exp):
    cfg = wenet_eff.load_config(wenet_exp / "train.yaml")
    source = wenet_eff.build_model(cfg)
    torch.save(source.state_dict(), wenet_exp / "final.pt")
    from wenet_eff.model import load_model

    _, model = load_model(str(wenet_exp / "train.yaml"), str(wenet_exp / "final.pt"), [])
    speech = torch.randn(1, 120, 80)
    ours, _ = model.encoder(speech, torch.tensor([120]))
    ref, _ = source.eval().encoder(speech, torch.tensor([120]))
    assert torch.equal(ours, ref)


def test_keys_left_out_take_wenet_defaults(wenet_exp):
    raw = json.loads(json.dumps(WENET_YAML))
    for key in ("cnn_module_norm", "num_blocks"):
        del raw["encoder_conf"][key]
    del raw["decoder_conf"]["r_num_blocks"]
    del raw["model_conf"]
    (wenet_exp / "train.yaml").write_text(yaml.safe_dump(raw))
    cfg = wenet_eff.load_config(wenet_exp / "train.yaml")
    assert cfg.model.encoder.cnn_module_norm == "batch_norm"  # WeNet's default, not ours
    assert cfg.model.encoder.num_blocks == 6
    assert cfg.model.decoder.r_num_blocks == 0
    assert (cfg.model.ctc_weight, cfg.model.reverse_weight, cfg.model.lsm_weight) == (0.5, 0, 0)
    assert cfg.tokenizer.normalize == "none"  # WeNet tokenizes text as it is


def test_input_dim_left_out_comes_from_the_feature_conf(wenet_exp):
    raw = json.loads(json.dumps(WENET_YAML))
    raw.pop("input_dim", None)
    raw["dataset_conf"] = {"fbank_conf": {"num_mel_bins": 40}}
    (wenet_exp / "train.yaml").write_text(yaml.safe_dump(raw))
    assert wenet_eff.load_config(wenet_exp / "train.yaml").model.input_dim == 40  # as WeNet does


def _write(exp: Path, raw: dict, units: list[str] | None = None) -> Path:
    (exp / "train.yaml").write_text(yaml.safe_dump(raw))
    if units is not None:
        (exp / "units.txt").write_text("".join(f"{u} {i}\n" for i, u in enumerate(units)))
    return exp / "train.yaml"


SOS2_UNITS = ["<blank>", "<unk>", "<sos/eos>"] + [f"▁W{i}" for i in range(4999)]


def test_special_tokens_are_wenets_in_either_layout(wenet_exp):
    raw = json.loads(json.dumps(WENET_YAML))
    # no special_tokens, <sos/eos> last: WeNet's model uses output_dim - 1
    cfg = wenet_eff.load_config(_write(wenet_exp, raw))
    assert dict(cfg.tokenizer.special_tokens) == {"<blank>": 0, "<sos>": 5001, "<eos>": 5001}
    model = wenet_eff.build_model(cfg)
    assert (model.sos, model.eos, model.special.blank, model.special.unk) == (5001, 5001, 0, 1)
    # WeNet's current recipes: <sos/eos> 2 in units.txt and special_tokens
    raw["tokenizer_conf"]["special_tokens"] = {"<blank>": 0, "<unk>": 1, "<sos>": 2, "<eos>": 2}
    raw["ctc_conf"] = {"ctc_blank_id": 0}
    model = wenet_eff.build_model(wenet_eff.load_config(_write(wenet_exp, raw, SOS2_UNITS)))
    assert (model.sos, model.eos, model.special.blank) == (2, 2, 0)


def test_special_tokens_that_contradict_wenet_are_named(wenet_exp):
    raw = json.loads(json.dumps(WENET_YAML))
    raw["tokenizer_conf"]["special_tokens"] = {"<blank>": 0, "<sos>": 2, "<eos>": 2}
    cfg = wenet_eff.load_config(_write(wenet_exp, raw))  # units.txt has <sos/eos> 5001
    with pytest.raises(ValueError, match=r"<sos>=2, but units.txt has it at 5001"):
        wenet_eff.build_model(cfg)
    raw["ctc_conf"] = {"ctc_blank_id": 3}
    with pytest.raises(ValueError, match="ctc_blank_id=3 but tokenizer_conf.special_tokens"):
        wenet_eff.load_config(_write(wenet_exp, raw))
    # sos/eos at 2 in units.txt but no special_tokens: WeNet's model used 5001
    del raw["tokenizer_conf"]["special_tokens"], raw["ctc_conf"]
    with pytest.raises(ValueError, match="no tokenizer_conf.special_tokens.*<sos/eos> 2"):
        wenet_eff.load_config(_write(wenet_exp, raw, SOS2_UNITS))


@pytest.mark.parametrize(
    "section,key,value",
    [("encoder_conf", "selfattention_layer_type", "selfattn"), ("encoder_conf", "bogus", 1)],
)
def test_unsupported_wenet_options_are_named(tmp_path, section, key, value):
    raw = json.loads(json.dumps(WENET_YAML))
    raw[section][key] = value
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match=key):
        wenet_eff.load_config(path)


def test_our_resolved_yaml_round_trips(tmp_path):
    from wenet_eff.config import save_config

    cfg = wenet_eff.load_config("mini", ["model.vocab_size=40", "train.max_epoch=3"])
    save_config(cfg, tmp_path / "train.yaml")
    again = wenet_eff.load_config(tmp_path / "train.yaml")
    assert again == cfg


def test_wenet_moe_yaml_maps_to_moe_layers(wenet_exp):
    raw = json.loads(json.dumps(WENET_YAML))
    for section in ("encoder_conf", "decoder_conf"):
        raw[section].update(mlp_type="moe", n_expert=4, n_expert_activated=2, num_blocks=1)
    raw["decoder_conf"]["r_num_blocks"] = 1
    (wenet_exp / "train.yaml").write_text(yaml.safe_dump(raw))
    cfg = wenet_eff.load_config(wenet_exp / "train.yaml")
    assert (cfg.model.encoder.mlp_type, cfg.model.encoder.n_expert) == ("moe", 4)
    keys = wenet_eff.build_model(cfg).state_dict().keys()
    assert "encoder.encoders.0.feed_forward.experts.3.w_1.weight" in keys
    assert "decoder.right_decoder.decoders.0.feed_forward.gate.weight" in keys
