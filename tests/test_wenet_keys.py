"""wenet_keys: a WeNet train.yaml's training settings load into our schema (with WeNet's defaults
where it leaves keys out), single WeNet keys translate, and what training here would not do is
named."""

from __future__ import annotations

import pytest
import yaml

from wenet_eff.config import load_config
from wenet_eff.wenet_keys import our_key, training_problems

# the shape of WeNet's examples/*/s0/conf/train_u2++_conformer.yaml, small
WENET_TRAIN_YAML = """
encoder: conformer
encoder_conf: {output_size: 32, attention_heads: 2, linear_units: 64, num_blocks: 2}
decoder: bitransformer
decoder_conf: {attention_heads: 2, linear_units: 64, num_blocks: 1, r_num_blocks: 1}
tokenizer: char
tokenizer_conf: {symbol_table_path: data/dict/lang_char.txt, split_with_space: false,
                 bpe_path: null, non_lang_syms_path: null, is_multilingual: false,
                 num_languages: 1, special_tokens: {<blank>: 0, <unk>: 1, <sos>: 2, <eos>: 2}}
ctc: ctc
ctc_conf: {ctc_blank_id: 0}
cmvn: global_cmvn
cmvn_conf: {cmvn_file: data/train/global_cmvn, is_json_cmvn: true}
model: asr_model
model_conf: {ctc_weight: 0.3, lsm_weight: 0.1, length_normalized_loss: false, reverse_weight: 0.3}
dataset: asr
dataset_conf:
  filter_conf: {max_length: 40960, min_length: 0, token_max_length: 200, token_min_length: 1}
  resample_conf: {resample_rate: 16000}
  speed_perturb: true
  fbank_conf: {num_mel_bins: 80, frame_shift: 10, frame_length: 25, dither: 1.0}
  spec_aug: true
  spec_aug_conf: {num_t_mask: 2, num_f_mask: 2, max_t: 50, max_f: 10}
  spec_sub: true
  spec_sub_conf: {num_t_sub: 3, max_t: 30}
  shuffle: true
  shuffle_conf: {shuffle_size: 1500}
  sort: true
  sort_conf: {sort_size: 500}
  batch_conf: {batch_type: static, batch_size: 16}
grad_clip: 5
accum_grad: 4
max_epoch: 360
log_interval: 100
optim: adam
optim_conf: {lr: 0.001}
scheduler: warmuplr
scheduler_conf: {warmup_steps: 25000}
"""


def test_a_wenet_train_yaml_trains_with_its_own_settings(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text(WENET_TRAIN_YAML)
    cfg = load_config(path)
    assert (cfg.train.max_epoch, cfg.train.accum_grad, cfg.train.grad_clip) == (360, 4, 5.0)
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.warmup_steps) == ("adam", 0.001, 25000)
    # WeNet hands optim_conf to torch.optim.Adam: its defaults, not ours, for the rest
    assert (list(cfg.optim.betas), cfg.optim.eps, cfg.optim.weight_decay) == ([0.9, 0.999], 1e-8, 0)
    data = cfg.data
    assert (data.filter.max_length, data.filter.min_length, data.filter.token_max_length) == (
        40960, 0, 200
    )  # fmt: skip
    assert data.speed_perturb and data.spec_sub and data.spec_sub_conf.max_t == 30
    assert (data.shuffle_size, data.sort_size, data.batch_size) == (1500, 500, 16)
    assert cfg.model.ctc_weight == 0.3 and cfg.model.encoder.num_blocks == 2
    assert training_problems(yaml.safe_load(WENET_TRAIN_YAML)) == []


def test_adamw_and_grad_clip_defaults_are_wenets(tmp_path):
    raw = yaml.safe_load(WENET_TRAIN_YAML)
    del raw["grad_clip"]
    raw["optim"] = "adamw"
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(raw))
    cfg = load_config(path)
    assert cfg.train.grad_clip == 50.0 and cfg.optim.weight_decay == 0.01


def test_what_training_here_would_not_do_is_named():
    raw = yaml.safe_load(WENET_TRAIN_YAML)
    raw["dataset_conf"]["filter_conf"]["max_output_input_ratio"] = 0.1
    raw["model_conf"]["apply_non_blank_embedding"] = True
    raw["model"] = "transducer"
    raw["scheduler_conf"]["hold_steps"] = 100
    raw.update(model_dir="exp/x", use_amp=False, vocab_size=30)  # WeNet's run record: ignored
    assert training_problems(raw) == [
        "model='transducer': only 'asr_model' is implemented",
        "model_conf.apply_non_blank_embedding=True: no equivalent in wenet_eff",
        "dataset_conf.filter_conf.max_output_input_ratio=0.1: no equivalent in wenet_eff",
        "scheduler_conf.hold_steps=100: no equivalent in wenet_eff",
    ]


@pytest.mark.parametrize(
    "wenet, ours",
    [
        ("dataset_conf.batch_conf.batch_size", "data.batch_size"),
        ("optim_conf.lr", "optim.lr"),
        ("max_epoch", "train.max_epoch"),
        ("model_conf.ctc_weight", "model.ctc_weight"),
        ("encoder_conf.num_blocks", "model.encoder.num_blocks"),
        ("decoder_conf.r_num_blocks", "model.decoder.r_num_blocks"),
        ("cmvn_conf.cmvn_file", "cmvn.file"),
        ("tokenizer_conf.symbol_table_path", "tokenizer.units"),
        ("train.max_steps", "train.max_steps"),  # already ours
    ],
)
def test_single_keys_translate(wenet, ours):
    assert our_key(wenet) == ours


@pytest.mark.parametrize("key", ["dataset_conf.cycle_x", "lora_rank", "model", "trainer.epochs"])
def test_a_key_without_equivalent_is_an_error_naming_it(key):
    with pytest.raises(KeyError, match=f"WeNet key '{key}' has no equivalent in wenet_eff"):
        our_key(key)
