"""`bin.train` with WeNet's train.py flags: a few updates of a tiny model from a WeNet train.yaml
under torchrun, as WeNet's run.sh calls it, and how each flag translates (or is refused)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import yaml

import wenet_eff
from tests.train.helpers import REPO, check, run_train
from wenet_eff.bin.wenet_flags import (
    is_wenet_command,
    override_config,
    train_config,
    train_overrides,
    train_parser,
)
from wenet_eff.config import load_config
from wenet_eff.data.tokenizer import char_units_from_texts, read_units, write_units
from wenet_eff.train.checkpoint import list_checkpoints, read_info, write_checkpoint
from wenet_eff.weights import load_model_state

DS_CONFIG = REPO / "recipes" / "mini" / "s0" / "conf" / "ds_stage2.json"


def wenet_train_yaml(units: Path, cmvn: Path) -> dict:
    """A WeNet train.yaml (examples/*/s0/conf/train_u2++_conformer.yaml's keys) of a tiny
    U2++ Conformer: 2 epochs of 4 batches of 4."""
    sos = read_units(units)["<sos/eos>"]
    return {
        "encoder": "conformer",
        "encoder_conf": {
            "output_size": 32, "attention_heads": 2, "linear_units": 64, "num_blocks": 1,
            "input_layer": "conv2d", "normalize_before": True, "cnn_module_kernel": 5,
            "use_cnn_module": True, "activation_type": "swish", "pos_enc_layer_type": "rel_pos",
            "selfattention_layer_type": "rel_selfattn", "cnn_module_norm": "layer_norm",
        },
        "decoder": "bitransformer",
        "decoder_conf": {
            "attention_heads": 2, "linear_units": 64, "num_blocks": 1, "r_num_blocks": 1,
        },
        "tokenizer": "char",
        "tokenizer_conf": {
            "symbol_table_path": str(units), "split_with_space": False, "bpe_path": None,
            "non_lang_syms_path": None, "is_multilingual": False, "num_languages": 1,
            "special_tokens": {"<blank>": 0, "<unk>": 1, "<sos>": sos, "<eos>": sos},
        },
        "ctc": "ctc",
        "ctc_conf": {"ctc_blank_id": 0},
        "cmvn": "global_cmvn",
        "cmvn_conf": {"cmvn_file": str(cmvn), "is_json_cmvn": True},
        "model": "asr_model",
        "model_conf": {"ctc_weight": 0.3, "lsm_weight": 0.1, "length_normalized_loss": False,
                       "reverse_weight": 0.3},
        "dataset": "asr",
        "dataset_conf": {
            "filter_conf": {"max_length": 400, "min_length": 0, "token_max_length": 200,
                            "token_min_length": 1},
            "resample_conf": {"resample_rate": 16000},
            "speed_perturb": False,
            "fbank_conf": {"num_mel_bins": 80, "frame_shift": 10, "frame_length": 25,
                           "dither": 0.0},
            "spec_aug": False,
            "shuffle": True, "shuffle_conf": {"shuffle_size": 8},
            "sort": True, "sort_conf": {"sort_size": 4},
            "batch_conf": {"batch_type": "static", "batch_size": 8},
        },
        "grad_clip": 5, "accum_grad": 1, "max_epoch": 2, "log_interval": 1,
        "optim": "adam", "optim_conf": {"lr": 0.002},
        "scheduler": "warmuplr", "scheduler_conf": {"warmup_steps": 5},
    }  # fmt: skip


@pytest.fixture(scope="module")
def wenet_conf(corpus, tmp_path_factory) -> Path:
    """conf/train.yaml of `wenet_train_yaml` over the corpus: units as WeNet's char tokenizer
    splits the text (no normalisation), and an identity global_cmvn."""
    root = tmp_path_factory.mktemp("wenet_conf")
    texts = [json.loads(line)["txt"] for line in corpus.train_list.read_text().splitlines()]
    units = root / "units.txt"
    write_units(units, char_units_from_texts(texts, normalize="none"))
    cmvn = root / "global_cmvn"
    cmvn.write_text(json.dumps({"mean_stat": [0.0] * 80, "var_stat": [1.0] * 80, "frame_num": 1}))
    conf = root / "train.yaml"
    conf.write_text(yaml.safe_dump(wenet_train_yaml(units, cmvn)))
    return conf


def run_sh_flags(conf: Path, corpus, exp: Path, *extra: str) -> list[str]:
    """WeNet's examples/aishell/s0/run.sh stage 4 flags, spelled as it spells them."""
    return [
        "--train_engine", "torch_ddp", "--config", str(conf), "--data_type", "raw",
        "--train_data", str(corpus.train_list), "--cv_data", str(corpus.cv_list),
        *extra, "--model_dir", str(exp), "--tensorboard_dir", str(exp.parent / "tensorboard"),
        "--ddp.dist_backend", "nccl", "--num_workers", "0", "--prefetch", "4", "--pin_memory",
        "--deepspeed_config", str(DS_CONFIG), "--deepspeed.save_states", "model_only",
    ]  # fmt: skip


def test_torchrun_with_wenets_flags_trains_a_wenet_config(wenet_conf, corpus, tmp_path):
    exp = tmp_path / "exp" / "tiny"
    flags = run_sh_flags(wenet_conf, corpus, exp, "--override_config",
                         "dataset_conf.batch_conf.batch_size 4")  # fmt: skip
    proc = run_train(flags, nproc=1)
    check(proc)
    cfg = load_config(exp / "train.yaml")  # ours, with the WeNet config's settings
    assert (cfg.train.max_epoch, cfg.optim.lr, cfg.optim.warmup_steps) == (2, 0.002, 5)
    assert cfg.data.batch_size == 4 and cfg.train.exp_dir == str(exp)  # the override; the flag
    assert cfg.model.ctc_weight == 0.3 and cfg.model.encoder.num_blocks == 1
    assert [n for n, _ in list_checkpoints(exp)] == ["0", "1"]
    assert [read_info(exp / f"{n}.yaml")["step"] for n in ("0", "1")] == [4, 8]
    model = wenet_eff.build_model(cfg)
    model.load_state_dict(load_model_state(exp / "final.pt"), strict=True)
    link = tmp_path / "exp" / "tensorboard" / "tiny"
    assert link.resolve() == (exp / "tensorboard").resolve()
    assert list(link.glob("events.out.tfevents.*"))


def _overrides(*argv: str) -> list[str]:
    return train_overrides(train_parser().parse_args(list(argv)))


BASE = ["--config", "c.yaml", "--train_data", "t.list", "--cv_data", "c.list", "--model_dir", "e"]


def test_each_flag_sets_its_key(tmp_path):
    weights = tmp_path / "pretrained.pt"
    torch.save({}, weights)
    assert _overrides(
        *BASE, "--data_type", "shard", "--num_workers", "8", "--prefetch", "500",
        "--train_engine", "deepspeed", "--deepspeed_config", "ds.json", "--ddp.dist_backend",
        "gloo", "--use_amp", "--device", "cuda", "--symbol_table", "units.txt", "--cmvn",
        "global_cmvn", "--checkpoint", str(weights), "--override_config", "optim_conf.lr 0.01",
        "--override_config", "train.max_steps 20",
    ) == [
        "optim.lr=0.01", "train.max_steps=20", "data.train_data='t.list'", "train.exp_dir='e'",
        "data.cv_data='c.list'", "data.data_type='shard'", "data.num_workers=8",
        "data.prefetch=500", "train.train_engine='deepspeed'", "train.deepspeed_config='ds.json'",
        "train.dist_backend='gloo'", "tokenizer.units='units.txt'", "cmvn.file='global_cmvn'",
        "train.dtype=bf16", "train.device=auto", f"train.init_checkpoint='{weights}'",
    ]  # fmt: skip
    assert _overrides(*BASE, "--gpu", "-1", "--bpe_model", "bpe.model")[-3:] == [
        "tokenizer.type=bpe", "tokenizer.bpe_model='bpe.model'", "train.device=cpu",
    ]  # fmt: skip


def test_wenet_and_hydra_command_lines_are_told_apart():
    assert is_wenet_command(BASE) and is_wenet_command(["--ddp.rank=0"])
    assert not is_wenet_command(["--config-dir", "conf", "--config-name", "x", "model=mini"])
    assert not is_wenet_command(["model=mini", "train.exp_dir=exp/x"])


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--ddp.world_size", "2"], "--ddp.world_size: start the ranks with torchrun"),
        (["--lora_rank", "8"], "--lora_rank: LoRA is not implemented"),
        (["--train_engine", "torch_fsdp"], "invalid choice: 'torch_fsdp'"),
        (["model=mini"], "WeNet's flags and Hydra's key=value overrides do not mix"),
        (["--train_data", "a.list", "b.list"], "one list here (concatenate the lists)"),
        (["--override_config", "lora_conf.lora_rank 8"], "'lora_conf.lora_rank' has no equiv"),
        (["--override_config", "max_epoch"], "expected 'key.path value'"),
    ],
)
def test_what_cannot_be_done_is_refused_naming_it(extra, message, capsys, tmp_path):
    conf = tmp_path / "c.yaml"
    conf.write_text("encoder_conf: {output_size: 32}\n")
    argv = [*BASE, *extra]
    argv[argv.index("c.yaml")] = str(conf)
    with pytest.raises(SystemExit) as info:
        train_config(argv)
    assert info.value.code != 0
    assert message in capsys.readouterr().err + str(info.value.code)


def test_a_wenet_config_asking_for_what_is_not_done_is_refused(wenet_conf, tmp_path):
    raw = yaml.safe_load(wenet_conf.read_text())
    raw["dataset_conf"]["filter_conf"]["max_output_input_ratio"] = 0.1
    conf = tmp_path / "train.yaml"
    conf.write_text(yaml.safe_dump(raw))
    argv = [*BASE]
    argv[argv.index("c.yaml")] = str(conf)
    with pytest.raises(SystemExit, match="max_output_input_ratio=0.1: no equivalent"):
        train_config(argv)


def test_checkpoint_inside_model_dir_must_be_its_newest(tmp_path):
    exp = tmp_path / "exp"
    exp.mkdir()
    torch.save({}, exp / "pretrained.pt")  # no checkpoint yet: weights to start from
    assert _overrides(*BASE[:-1], str(exp), "--checkpoint", str(exp / "pretrained.pt"))[-1] == (
        f"train.init_checkpoint='{exp / 'pretrained.pt'}'"
    )
    for name, step in (("0", 4), ("step_6", 6), ("1", 8)):
        write_checkpoint(exp, name, {}, {"epoch": 0, "step": step, "tag": "x"}, None)
    assert _overrides(*BASE[:-1], str(exp), "--checkpoint", str(exp / "1.pt"))[-1].startswith(
        "data.cv_data"
    )  # nothing added: the run resumes from 1 anyway
    with pytest.raises(ValueError, match="newest checkpoint, 1; to restart from step_6.pt"):
        _overrides(*BASE[:-1], str(exp), "--checkpoint", str(exp / "step_6.pt"))
    os.symlink(exp / "1.pt", tmp_path / "elsewhere.pt")
    assert _overrides(*BASE[:-1], str(exp), "--checkpoint", str(tmp_path / "elsewhere.pt")) == [
        *_overrides(*BASE[:-1], str(exp))
    ]  # a link to the newest is the newest


def test_override_config_translates_wenet_keys():
    assert override_config(["encoder_conf.num_blocks 6", "model_conf.ctc_weight 0.5"]) == [
        "model.encoder.num_blocks=6", "model.ctc_weight=0.5",
    ]  # fmt: skip
