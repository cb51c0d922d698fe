"""`bin.recognize` with the flags WeNet's run.sh passes (examples/{aishell,librispeech,
wenetspeech}/s0/run.sh stage 5), on espeak-ng speech and a tiny random model: the output, and
what each WeNet flag does or why it is refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

import wenet_eff
from tests.tiny import TINY
from wenet_eff.bin import recognize

REPO = Path(__file__).resolve().parents[2]
UNITS = ["<blank>", "<unk>", "<sos/eos>", "▁", *"ACDEGHILMNORSTW"]
MODES = ["ctc_greedy_search", "ctc_prefix_beam_search", "attention", "attention_rescoring"]


@pytest.fixture(scope="module")
def exp(tmp_path_factory) -> Path:
    """train.yaml + avg_1.pt of a random tiny model (a sharpened CTC head, so that the
    hypotheses are not empty)."""
    exp = tmp_path_factory.mktemp("exp")
    (exp / "units.txt").write_text("".join(f"{u} {i}\n" for i, u in enumerate(UNITS)))
    cfg = wenet_eff.load_config(
        "mini", [*TINY, f"model.vocab_size={len(UNITS)}", f"tokenizer.units={exp / 'units.txt'}"]
    )
    torch.manual_seed(0)
    model = wenet_eff.build_model(cfg).eval()
    with torch.no_grad():
        model.ctc.ctc_lo.weight.mul_(8.0)
    torch.save(model.state_dict(), exp / "avg_1.pt")
    OmegaConf.save(cfg, exp / "train.yaml")
    return exp


@pytest.fixture(scope="module")
def data_list(spoken_dir, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "data.list"
    d = spoken_dir.root
    path.write_text(
        "".join(
            json.dumps({"key": k, "wav": str(d / f"{k}.wav"), "txt": t}) + "\n"
            for k, t in spoken_dir.texts.items()
        )
    )
    return path


def _args(exp: Path, test_data: Path, result_dir: Path, *extra: str) -> list[str]:
    return [
        "--modes", *MODES, "--config", str(exp / "train.yaml"), "--test_data", str(test_data),
        "--checkpoint", str(exp / "avg_1.pt"), "--result_dir", str(result_dir), *extra,
    ]  # fmt: skip


def _hyps(result_dir: Path) -> dict[str, list[str]]:
    """The `key hypothesis` lines of each mode, sorted (batches are sorted by length)."""
    return {mode: sorted((result_dir / mode / "text").read_text().splitlines()) for mode in MODES}


def test_wenets_run_sh_command_line(exp, data_list, spoken_dir, tmp_path):
    """wenetspeech's flags, spelled as run.sh spells them; `key hypothesis` per utterance."""
    out = tmp_path / "test"
    cmd = [
        sys.executable, "-m", "wenet_eff.bin.recognize", "--gpu", "-1",
        *_args(exp, data_list, out), "--data_type", "raw", "--beam_size", "10",
        "--batch_size", "16", "--blank_penalty", "0.0", "--length_penalty", "0.0",
        "--ctc_weight", "0.3", "--reverse_weight", "0.5", "--decoding_chunk_size", "4",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for mode, lines in _hyps(out).items():
        assert [line.split(" ", 1)[0] for line in lines] == list(spoken_dir.texts), mode
    assert any(len(line.split()) > 1 for line in _hyps(out)["ctc_greedy_search"])


def test_batch_size_and_shards_do_not_change_the_hypotheses(exp, data_list, spoken_dir, tmp_path):
    """--batch_size 1 vs 16 (padding), --data_type shard vs raw (the same audio in tars)."""
    recognize.main(_args(exp, data_list, tmp_path / "b16", "--batch_size", "16"))
    recognize.main(_args(exp, data_list, tmp_path / "b1", "--batch_size", "1"))
    d = spoken_dir.root
    subprocess.run(
        [sys.executable, str(REPO / "tools" / "make_shard_list.py"), "--num_utts_per_shard", "2",
         d / "wav.scp", d / "text", tmp_path / "shards", tmp_path / "shards.list"],
        check=True, capture_output=True,
    )  # fmt: skip
    recognize.main(_args(exp, tmp_path / "shards.list", tmp_path / "shard", "--data_type", "shard"))
    assert _hyps(tmp_path / "b1") == _hyps(tmp_path / "b16") == _hyps(tmp_path / "shard")


def test_override_config_reaches_the_model(exp, data_list, tmp_path):
    """WeNet's --override_config key (a 1-block encoder no longer fits the 2-block weights)."""
    with pytest.raises(ValueError, match=r"unexpected keys \['encoder\.encoders\.1\."):
        recognize.main(
            _args(exp, data_list, tmp_path, "--override_config", "encoder_conf.num_blocks 1")
        )


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("flags", [["--gpu", "0"], ["--device", "cuda"]])
def test_gpu_without_cuda_is_an_error(exp, data_list, tmp_path, flags, capsys):
    with pytest.raises(SystemExit):
        recognize.main(_args(exp, data_list, tmp_path, *flags))
    assert "no CUDA device here (--gpu -1 decodes on the CPU)" in capsys.readouterr().err


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--blank_penalty", "0.5"], "--blank_penalty 0.5: not implemented (only 0.0)"),
        (["--length_penalty", "1.0"], "--length_penalty 1.0: not implemented (only 0.0)"),
        (["--simulate_streaming"], "--simulate_streaming: --decoding_chunk_size N decodes"),
        (["--hlg", "HLG.pt"], "--hlg: HLG decoding is not implemented"),
        (["--context_list_path", "c.txt"], "--context_list_path: use --context_path"),
        (["--override_config", "lora_conf.r 8"], "'lora_conf.r' has no equivalent"),
    ],
)
def test_wenet_flags_of_what_is_not_done_are_refused(exp, data_list, tmp_path, flags, message,
                                                      capsys):  # fmt: skip
    with pytest.raises(SystemExit):
        recognize.main(_args(exp, data_list, tmp_path, *flags))
    assert message in capsys.readouterr().err
    assert not (tmp_path / "ctc_greedy_search").exists()
