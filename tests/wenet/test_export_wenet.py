"""`python -m wenet_eff.bin.export_wenet`: our experiment as a WeNet experiment directory.

Checked against WeNet itself: exporting WeNet's own reference experiments gives back WeNet's
checkpoint bit for bit and its train.yaml key for key; the train.yaml of our models uses only
the constructor arguments WeNet's `init_model` passes them to (names read from WeNet's code at
the vectors' commit) and the keys of its checkpoint follow WeNet's naming. Round trip: the
export read back through our import gives bit-identical outputs. Settings WeNet lacks are
refused by name."""

from __future__ import annotations

import json
import re

import pytest
import torch
import yaml

import wenet_eff
from tests.tiny import TINY
from tests.wenet.reference import LAYOUTS, reference
from wenet_eff.bin import export_wenet as cli
from wenet_eff.data.tokenizer import char_units_from_texts, write_units
from wenet_eff.export.wenet import WeNetExportError, export_wenet
from wenet_eff.model import DECODE_METHODS, load_model

# Keyword arguments of WeNet's constructors that init_model fills from each *_conf (wenet/ at
# commit 0154699: ConformerEncoder, BiTransformerDecoder, ASRModel; the dataset processors).
WENET_ENCODER_ARGS = {
    "output_size", "attention_heads", "linear_units", "num_blocks", "dropout_rate",
    "positional_dropout_rate", "attention_dropout_rate", "input_layer", "pos_enc_layer_type",
    "normalize_before", "static_chunk_size", "use_dynamic_chunk", "use_dynamic_left_chunk",
    "positionwise_conv_kernel_size", "macaron_style", "selfattention_layer_type",
    "activation_type", "use_cnn_module", "cnn_module_kernel", "causal", "cnn_module_norm",
    "query_bias", "key_bias", "value_bias", "conv_bias", "gradient_checkpointing", "use_sdpa",
    "layer_norm_type", "norm_eps", "n_kv_head", "head_dim", "mlp_type", "mlp_bias", "n_expert",
    "n_expert_activated", "conv_norm_eps", "conv_inner_factor", "final_norm",
}  # fmt: skip
WENET_DECODER_ARGS = {
    "attention_heads", "linear_units", "num_blocks", "r_num_blocks", "dropout_rate",
    "positional_dropout_rate", "self_attention_dropout_rate", "src_attention_dropout_rate",
    "input_layer", "use_output_layer", "normalize_before", "src_attention", "query_bias",
    "key_bias", "value_bias", "activation_type", "gradient_checkpointing", "tie_word_embedding",
    "use_sdpa", "layer_norm_type", "norm_eps", "n_kv_head", "head_dim", "mlp_type", "mlp_bias",
    "n_expert", "n_expert_activated",
}  # fmt: skip
WENET_MODEL_ARGS = {
    "ctc_weight", "ignore_id", "reverse_weight", "lsm_weight", "length_normalized_loss",
    "special_tokens", "apply_non_blank_embedding",
}  # fmt: skip
WENET_PROCESSOR_ARGS = {
    "filter_conf": {"max_length", "min_length", "token_max_length", "token_min_length",
                    "min_output_input_ratio", "max_output_input_ratio"},
    "resample_conf": {"resample_rate"},
    "fbank_conf": {"num_mel_bins", "frame_length", "frame_shift", "dither", "window_type"},
    "spec_aug_conf": {"num_t_mask", "num_f_mask", "max_t", "max_f", "max_w"},
    "spec_sub_conf": {"max_t", "num_t_sub"},
    "spec_trim_conf": {"max_t"},
    "shuffle_conf": {"shuffle_size"},
    "sort_conf": {"sort_size"},
    "batch_conf": {"batch_type", "batch_size", "max_frames_in_batch"},
}  # fmt: skip
# init_tokenizer indexes these (bpe_path for bpe, non_lang_syms_path for char)
WENET_TOKENIZER_KEYS = {"symbol_table_path", "non_lang_syms_path", "split_with_space", "bpe_path"}
PATH_KEYS = {("tokenizer_conf", "symbol_table_path"), ("cmvn_conf", "cmvn_file")}


def _template(key: str) -> str:
    return re.sub(r"\.\d+\.", ".N.", key)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_wenets_experiments_come_back_as_they_were(tmp_path, layout):
    """Import a WeNet experiment and export it: WeNet's checkpoint bit for bit, every key and
    value of WeNet's train.yaml (paths point to copies of WeNet's files)."""
    exp = reference("wenet_vectors", layout)
    raw = cli.main(
        ["--config", str(exp / "train.yaml"), "--checkpoint", str(exp / "final.pt"),
         "--out_dir", str(tmp_path / "out")]
    )  # fmt: skip
    ours, theirs = torch.load(tmp_path / "out" / "final.pt"), torch.load(exp / "final.pt")
    assert list(ours) == list(theirs)
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    wenet = yaml.safe_load((exp / "train.yaml").read_text())
    assert yaml.safe_load((tmp_path / "out" / "train.yaml").read_text()) == raw
    for key, value in wenet.items():
        if not isinstance(value, dict):
            assert raw[key] == value, key
            continue
        for sub, sub_value in value.items():
            if (key, sub) in PATH_KEYS:
                copied = (tmp_path / "out" / sub_value).read_bytes()
                assert raw[key][sub] == str(tmp_path / "out" / sub_value)
                assert copied == (exp / sub_value).read_bytes()
            else:
                assert raw[key][sub] == sub_value, f"{key}.{sub}"


def _experiment(tmp_path, *overrides: str):
    """Our tiny experiment with a new-layout units.txt (<sos/eos> 2) and a global_cmvn."""
    units = char_units_from_texts(["ABC DEFGH"])
    write_units(tmp_path / "units.txt", units)
    stats = {"mean_stat": [3.0] * 80, "var_stat": [40.0] * 80, "frame_num": 4}
    (tmp_path / "global_cmvn").write_text(json.dumps(stats))
    cfg = wenet_eff.load_config(
        "mini",
        [*TINY, "model.vocab_size=0", f"tokenizer.units={tmp_path / 'units.txt'}",
         f"cmvn.file={tmp_path / 'global_cmvn'}", *overrides],
    )  # fmt: skip
    torch.manual_seed(0)
    model = wenet_eff.build_model(cfg).eval()
    with torch.no_grad():
        model.ctc.ctc_lo.weight.mul_(8.0)  # peaky CTC posteriors: hypotheses with tokens
    wenet_eff.config.save_config(cfg, tmp_path / "train.yaml")
    torch.save(model.state_dict(), tmp_path / "final.pt")
    return cfg, model


@pytest.mark.parametrize("ffn, reference_layout", [([], "sos2"), (["model/ffn=moe"], "sos2_moe")])
def test_our_experiment_exports_in_wenets_schema_and_round_trips(tmp_path, ffn, reference_layout):
    moe = ["model.encoder.n_expert=4", "model.decoder.n_expert=4"] if ffn else []
    _, model = _experiment(tmp_path, *ffn, *moe)
    assert (model.sos, model.eos, model.special.blank) == (2, 2, 0)
    out = tmp_path / "wenet"
    raw = cli.main(
        ["--config", str(tmp_path / "train.yaml"), "--checkpoint", str(tmp_path / "final.pt"),
         "--out_dir", str(out)]
    )  # fmt: skip
    # WeNet's schema: the reference experiment's keys, each *_conf a constructor's arguments
    wenet = yaml.safe_load(reference("wenet_vectors", reference_layout, "train.yaml").read_text())
    assert set(wenet) <= set(raw)
    for key, value in wenet.items():
        if isinstance(value, dict):
            assert set(value) <= set(raw[key]), key
    assert set(raw["encoder_conf"]) <= WENET_ENCODER_ARGS
    assert set(raw["decoder_conf"]) <= WENET_DECODER_ARGS
    assert set(raw["model_conf"]) <= WENET_MODEL_ARGS
    assert WENET_TOKENIZER_KEYS <= set(raw["tokenizer_conf"])
    for conf, args in WENET_PROCESSOR_ARGS.items():
        assert set(raw["dataset_conf"][conf]) <= args, conf
    special = {"<blank>": 0, "<unk>": 1, "<sos>": 2, "<eos>": 2}
    assert raw["tokenizer_conf"]["special_tokens"] == special
    assert raw["ctc_conf"] == {"ctc_blank_id": 0} and raw["output_dim"] == 12
    assert (raw["encoder_conf"].get("mlp_type"), raw["decoder_conf"].get("n_expert")) == (
        ("moe", 4) if ffn else (None, None)
    )
    # WeNet's key names: the reference checkpoint's, block numbers aside
    state = torch.load(out / "final.pt")
    wenet_state = torch.load(reference("wenet_vectors", reference_layout, "final.pt"))
    assert {_template(k) for k in state} == {_template(k) for k in wenet_state}
    assert (out / "units.txt").read_text() == (tmp_path / "units.txt").read_text()
    # round trip: read back through the WeNet import, bit-identical outputs
    cfg_back, back = load_model(out / "train.yaml", out / "final.pt")
    assert cfg_back.tokenizer.units == str(out / "units.txt") and back.special == model.special
    speech, lens = torch.randn(2, 120, 80), torch.tensor([120, 77])
    for chunk in (-1, 4):
        ours = model.decode(list(DECODE_METHODS), speech, lens, 4, chunk, -1, 0.3, 0.3)
        theirs = back.decode(list(DECODE_METHODS), speech, lens, 4, chunk, -1, 0.3, 0.3)
        for method in DECODE_METHODS:
            assert [h.tokens for h in ours[method]] == [h.tokens for h in theirs[method]]
            assert [h.score for h in ours[method]] == [h.score for h in theirs[method]]
        assert any(h.tokens for h in ours["ctc_prefix_beam_search"])


@pytest.mark.parametrize(
    "override, named",
    [
        ("stability=qk_norm", "model.stability.qk_norm=True"),
        ("model.stability.softmax_cap=30", "model.stability.softmax_cap=30"),
        ("model.stability.embed_norm=true", "model.stability.embed_norm=True"),
        ("compress=qat_int4", "compress.quant.enabled=true"),
        ("compress=sparse_2_4", "compress.sparsity.enabled=true"),
        ("model.moe.capacity_factor=1.25", "model.moe.capacity_factor=1.25"),
        ("model.moe.load_balance_weight=0.01", "model.moe.load_balance_weight=0.01"),
        ("model.encoder.max_pos_len=3000", "model.encoder.max_pos_len=3000"),
        ("model.decoder.r_num_blocks=0", "model.decoder.r_num_blocks=0"),
        ("optim.scheduler=cosine", "optim.scheduler=cosine"),
        ("data.speeds=[0.95,1.0,1.05]", "data.speeds=[0.95, 1.0, 1.05]"),
    ],
)
def test_what_wenet_cannot_express_is_refused_by_name(tmp_path, override, named):
    cfg, model = _experiment(tmp_path, override, "data.speed_perturb=true")
    with pytest.raises(WeNetExportError, match=re.escape(named)):
        export_wenet(cfg, model, tmp_path / "wenet")
    assert not (tmp_path / "wenet").exists()


def test_cli_refuses_with_the_option_named_and_writes_nothing(tmp_path):
    _experiment(tmp_path)
    args = ["--config", str(tmp_path / "train.yaml"), "--checkpoint", str(tmp_path / "final.pt"),
            "--out_dir", str(tmp_path / "wenet"), "--override", "optim.scheduler=noam"]  # fmt: skip
    with pytest.raises(SystemExit, match="optim.scheduler=noam"):
        cli.main(args)
    assert not (tmp_path / "wenet").exists()
    cli.main(args[:-2])
    assert {p.name for p in (tmp_path / "wenet").iterdir()} == {
        "train.yaml", "final.pt", "units.txt", "global_cmvn",
    }  # fmt: skip
