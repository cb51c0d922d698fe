"""Batched streaming steps for `bench.moe_rtf --streams`: B live streams, each at its own
position with its own caches and offset, stepping together through one forward of
`EncoderChunkBatch` (the module the export compiles into encoder_chunk_batch.pt2 and the C++
scheduler runs), here in eager PyTorch with the model's own MoE dispatch.

Stream b starts `b % (left_chunks + 2)` chunks into its audio (random features): some
streams have an empty attention cache, some a partly filled one, some a full one. Per model
and B: encoder milliseconds per step (each stream's feature window gathered, then the batched
forward) and per stream chunk, the active FLOPs of a step (FlopCounterMode: only the experts
given frames compute), and for MoE models the experts a step gives frames to, per layer. The
models step in turn within each round, their order reversed every other round, so the load
of a shared machine falls on all of them alike; a model's time is the median over rounds of
its mean step time, and each round's time ratio to the first model is kept.
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

from wenet_eff.bench.common import synchronize
from wenet_eff.export.modules import EncoderChunkBatch, chunk_window
from wenet_eff.export.package import cache_shapes
from wenet_eff.nn.moe import moe_layers


class Streams:
    """B streams of features stepped together through `EncoderChunkBatch`.

    Args:
        model: the ASR model (eval mode; a causal convolution, as every streaming export).
        feats: (B, T, input_dim) features, row b stream b's audio.
        chunk, left_chunks: encoder frames per chunk, chunks of attention cache (> 0).
        starts: chunks stream b has run before the first `advance` (run here, in sub-batches
            of the streams not there yet).
    Attributes:
        outputs: per stream, its encoder output (1, chunk, D) of every chunk it has run.
    """

    def __init__(
        self, model: nn.Module, feats: torch.Tensor, chunk: int, left_chunks: int, starts: list
    ):
        if len(starts) != feats.size(0):
            raise ValueError(f"{len(starts)} start chunks for {feats.size(0)} streams")
        self.step = EncoderChunkBatch(model, chunk, left_chunks).eval()
        self.chunk, self.feats = chunk, feats
        self.stride = chunk * model.encoder.embed.subsampling_rate
        self.window = chunk_window(model, chunk)
        shapes = cache_shapes(model, chunk, left_chunks)
        att, cnn = shapes["att_cache"], shapes["cnn_cache"]
        self.att = feats.new_zeros(len(starts), *att)
        self.cnn = feats.new_zeros(len(starts), cnn[0], *cnn[2:])
        self.done = [0] * len(starts)
        self.outputs: list[list[torch.Tensor]] = [[] for _ in starts]
        for k in range(max(starts, default=0)):
            rows = [b for b, s in enumerate(starts) if s > k]
            index = torch.tensor(rows, device=feats.device)
            _, att, cnn = self._forward(rows, self.att[index], self.cnn[index])
            self.att[index], self.cnn[index] = att, cnn

    def _forward(self, rows: list[int], att: torch.Tensor, cnn: torch.Tensor):
        """Streams `rows` one chunk on: (encoder output (len(rows), chunk, D), their caches)."""
        first = [self.done[b] * self.stride for b in rows]
        if max(first) + self.window > self.feats.size(1):
            raise ValueError(
                f"{self.feats.size(1)} feature frames end before chunk {max(self.done) + 1} "
                f"({max(first) + self.window} frames): give the streams more frames"
            )
        windows = torch.stack(
            [self.feats[b, f : f + self.window] for b, f in zip(rows, first, strict=True)]
        )
        offset = torch.tensor([self.done[b] * self.chunk for b in rows], device=windows.device)
        num_valid = torch.full_like(offset, self.chunk)
        _, out, att, cnn = self.step(windows, offset, num_valid, att, cnn)
        for i, b in enumerate(rows):
            self.done[b] += 1
            self.outputs[b].append(out[i : i + 1])
        return out, att, cnn

    def advance(self) -> torch.Tensor:
        """Every stream one chunk on, in one batched forward: (B, chunk, D)."""
        out, self.att, self.cnn = self._forward(list(range(len(self.done))), self.att, self.cnn)
        return out


def _count_experts(model: nn.Module, touched: list[int]) -> list:
    """Hooks appending, per MoE layer forward, the number of experts given frames."""

    def hook(layer, *_):
        touched.append(int((layer.usage > 0).sum()))

    return [m.register_forward_hook(hook) for _, m in moe_layers(model.encoder)]


@torch.inference_mode()
def measure_streams(
    models: dict[str, nn.Module],
    input_dim: int,
    batch: int,
    chunk: int,
    left_chunks: int,
    rounds: int,
    steps: int,
    device: str = "cpu",
) -> list[dict]:
    """One row per model (the first is the baseline of the ratios) for B = `batch` streams of
    `input_dim` random features.

    Each model's streams take a warm-up step and a counted one (FLOPs, experts touched), then
    `rounds` rounds of `steps` timed steps, the models in turn (see the module docstring).
    """
    first = next(iter(models.values()))
    starts = [b % (left_chunks + 2) for b in range(batch)]
    stride = chunk * first.encoder.embed.subsampling_rate
    frames = (max(starts) + 2 + rounds * steps - 1) * stride + chunk_window(first, chunk)
    generator = torch.Generator().manual_seed(batch)
    feats = torch.randn(batch, frames, input_dim, generator=generator).to(device)
    streams = {n: Streams(m, feats, chunk, left_chunks, starts) for n, m in models.items()}
    rows = {}
    for name, s in streams.items():
        touched: list[int] = []
        hooks = _count_experts(models[name], touched)
        try:
            s.advance()
            with FlopCounterMode(display=False) as counter:
                s.advance()
        finally:
            for h in hooks:
                h.remove()
        layers = moe_layers(models[name].encoder)
        rows[name] = {
            "model": name,
            "streams": batch,
            "chunk": chunk,
            "left_chunks": left_chunks,
            "gflop_per_step": counter.get_total_flops() / 1e9,
            "n_expert": layers[0][1].n_expert if layers else None,
            "experts_touched": touched,
            "round_ms": [],
        }
    names = list(models)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            synchronize(device)
            start = time.perf_counter()
            for _ in range(steps):
                streams[name].advance()
            synchronize(device)
            rows[name]["round_ms"].append((time.perf_counter() - start) / steps * 1e3)
    base = rows[names[0]]
    for row in rows.values():
        touched = row.pop("experts_touched")
        row["experts_touched_mean"] = sum(touched) / len(touched) if touched else None
        row["experts_touched_min"] = min(touched, default=None)
        row["ms_per_step"] = statistics.median(row["round_ms"])
        row["ms_per_stream_chunk"] = row["ms_per_step"] / batch
        row["time_ratio"] = row["ms_per_step"] / base["ms_per_step"]
        row["round_time_ratio"] = [
            t / b for t, b in zip(row["round_ms"], base["round_ms"], strict=True)
        ]
        row["flops_ratio"] = row["gflop_per_step"] / base["gflop_per_step"]
        row["time_over_flops"] = row["time_ratio"] / row["flops_ratio"]
    return list(rows.values())
