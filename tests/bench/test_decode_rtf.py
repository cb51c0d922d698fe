"""The decoding-RTF benchmark on a tiny model, through the `bin.benchmark` dispatcher."""

from __future__ import annotations

import json

import pytest
import torch

import wenet_eff
from tests.tiny import TINY
from wenet_eff.bin import benchmark
from wenet_eff.nn.encoder import ConformerEncoder


def _run(tmp_path, *extra):
    out = tmp_path / "rtf.json"
    argv = ["decode_rtf", "--model", "mini", "--threads", "1", "--seconds", "0.5",
            "--batch_size", "2", "--repeats", "1", "--beam_size", "2", "--chunks", "4",
            "--out", str(out), *extra, "--override", *TINY]  # fmt: skip
    result = benchmark.main(argv)
    assert json.loads(out.read_text()) == result
    return result


def test_decode_rtf_times_the_checkpoint_on_the_whole_batch(tmp_path, capsys):
    # a checkpoint of the overridden model (TINY: vocabulary 12 over the benchmark's 5002)
    torch.manual_seed(0)
    model = wenet_eff.build_model(wenet_eff.load_config("mini", TINY))
    torch.save(model.state_dict(), tmp_path / "model.pt")
    # every encoder pass the benchmark times sees the whole batch of 0.5 s utterances
    seen = []

    def record(module, args):
        if isinstance(module, ConformerEncoder):
            seen.append(tuple(args[0].shape))

    hook = torch.nn.modules.module.register_module_forward_pre_hook(record)
    try:
        result = _run(tmp_path, "--checkpoint", str(tmp_path / "model.pt"))
    finally:
        hook.remove()
    assert set(seen) == {(2, 50, 80)}
    total = sum(p.numel() for p in model.parameters())
    assert result["params"] == {"total": total, "active": total}
    assert not result["random_weights"]
    rows = {row["stage"]: row for row in result["results"]}
    assert list(rows) == [
        "encoder", "encoder chunk=4 (masked)", "ctc_greedy_search", "ctc_prefix_beam_search",
        "attention_rescoring", "attention",
    ]  # fmt: skip
    # RTF: seconds per second of audio of the whole batch (2 x 0.5 s)
    for row in rows.values():
        assert row["rtf"] == pytest.approx(row["seconds"] / 1.0)
    assert "RTF" in capsys.readouterr().out
    # the checkpoint is read: one of another shape is refused, naming the file
    other = wenet_eff.load_config("mini", [*TINY, "model.encoder.output_size=16"])
    torch.save(wenet_eff.build_model(other).state_dict(), tmp_path / "other.pt")
    with pytest.raises(ValueError, match="other.pt"):
        _run(tmp_path, "--checkpoint", str(tmp_path / "other.pt"))


def test_unknown_benchmark_is_an_error():
    with pytest.raises(SystemExit, match="usage"):
        benchmark.main(["no_such_bench"])
