"""Shared pieces of the GPU tests: the device, a model twin on it, a padded batch, and a
dispatch mode that records the operations whose results land on the CPU."""

from __future__ import annotations

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from tests.tiny import tiny_model

CUDA = torch.device("cuda")
# a causal dynamic-chunk tiny model: full-context, chunked and streaming paths all apply
STREAMING = ("model.encoder.causal=true", "model.encoder.use_dynamic_chunk=true")
MOE = ("model/ffn=moe", "model.encoder.n_expert=4", "model.decoder.n_expert=4")


def twins(*overrides: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(CPU model, CUDA copy with the same weights), both in eval mode."""
    torch.manual_seed(0)
    cpu = tiny_model(*STREAMING, *overrides)
    cuda = tiny_model(*STREAMING, *overrides)
    cuda.load_state_dict(cpu.state_dict())
    return cpu, cuda.to(CUDA)


def batch(device: torch.device | str = "cpu") -> tuple[torch.Tensor, ...]:
    """feats (3, 300, 80) padded, their lengths, targets (3, 5) padded, their lengths."""
    generator = torch.Generator().manual_seed(1)
    feats = torch.randn(3, 300, 80, generator=generator)
    lens = torch.tensor([300, 211, 97])
    text = torch.tensor([[3, 4, 5, 6, 7], [8, 9, 3, 0, 0], [10, 11, 0, 0, 0]])
    text_lens = torch.tensor([5, 3, 2])
    return tuple(t.to(device) for t in (feats, lens, text, text_lens))


class CpuResults(TorchDispatchMode):
    """Records every operation (forward; autograd's backward runs on other threads) whose
    result holds a CPU tensor, except device copies and the host-side random draw of the
    dynamic chunk size."""

    ALLOWED = {"aten._to_copy", "aten.randint"}

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = str(func.overloadpacket)
        on_cpu = any(
            isinstance(t, torch.Tensor) and t.device.type == "cpu" for t in tree_leaves(out)
        )
        if on_cpu and name not in self.ALLOWED:
            self.ops.append(name)
        return out
