"""The stability-monitor overhead benchmark on a tiny model, through `bin.benchmark`."""

from __future__ import annotations

import json

import torch

from tests.tiny import TINY, tiny_model
from wenet_eff.bin import benchmark
from wenet_eff.nn.attention import MultiHeadedAttention
from wenet_eff.nn.linear import weight_layers


def test_plain_and_monitored_steps_alternate_and_the_monitored_ones_measure_every_layer(
    tmp_path, capsys
):
    out = tmp_path / "monitor.json"
    argv = ["monitor_overhead", "--threads", "1", "--batch_size", "2", "--frames", "100",
            "--tokens", "5", "--warmup", "1", "--repeats", "2", "--out", str(out),
            "--override", *TINY]  # fmt: skip
    # whether each attention call of a step ran monitored (the monitor records its logits)
    monitored: dict[int, list[bool]] = {}

    def record(module, _args):
        if isinstance(module, MultiHeadedAttention):
            monitored.setdefault(id(module), []).append(module.record_logits)

    hook = torch.nn.modules.module.register_module_forward_pre_hook(record)
    try:
        result = benchmark.main(argv)
    finally:
        hook.remove()
    assert json.loads(out.read_text()) == result
    # 2 encoder blocks + 2 x (self + source) decoder attentions, each once per training step:
    # plain, monitored, plain, monitored, ... (1 warm-up pair + 2 timed pairs)
    assert len(monitored) == result["attention_layers"] == 6
    assert all(flags == [False, True] * 3 for flags in monitored.values())
    # a monitored step measured every layer: one RMS each, max and mean per role, one max
    # logit per attention layer and their maximum
    layers = weight_layers(tiny_model())
    roles = {layer.role for _, layer in layers}
    assert result["monitored_layers"] == len(layers)
    assert result["values_per_monitored_step"] == len(layers) + 2 * len(roles) + 6 + 1
    assert "every 50" in capsys.readouterr().out
