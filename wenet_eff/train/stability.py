"""Training-stability instruments: linear-output norms, attention logits, a divergence guard.

With a high learning rate the RMS of the outputs of linear layers (QKV, Proj and FC2 first)
grows update by update until training diverges (Rybakov et al. 2024). `OutputNormMonitor`
measures it: on a monitored update it hooks every weight layer built by the `nn.linear`
factory and every attention module, and reports

- `linear_rms/<layer>`: RMS of the layer's output over the update's micro-batches;
- `linear_rms_max/<role>` and `linear_rms_mean/<role>`: over the layers of each role
  (`attn.qkv`, `attn.out`, `ffn.w_1`, `ffn.w_2`, ...);
- `attn_logit_max/<layer>` and `attn_logit_max/all`: the largest attention logit (before any
  softmax capping).

Between monitored updates nothing is hooked, so the cost is a few reductions every
`train.monitor_interval` updates (see `bench.monitor_overhead`).

`DivergenceGuard` decides from the per-update loss (per input frame, so long and short
batches compare) whether training is diverging; the trainer acts on its verdict.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass

import torch
import torch.nn as nn

from wenet_eff.nn.attention import MultiHeadedAttention
from wenet_eff.nn.linear import weight_layers


class OutputNormMonitor:
    """RMS of every weight layer's output and the max attention logit, on chosen updates.

    Args:
        model: the plain model (not the DDP wrapper; hooks on its modules fire either way).
        interval: monitor every `interval`-th update (0: never).

    Use: `arm()` before the micro-batches of a monitored update, `collect()` after it.
    """

    def __init__(self, model: nn.Module, interval: int) -> None:
        if interval < 0:
            raise ValueError(f"train.monitor_interval={interval} must be >= 0")
        self.interval = interval
        self.layers = weight_layers(model)
        self.attention = [
            (name, m) for name, m in model.named_modules() if isinstance(m, MultiHeadedAttention)
        ]
        self.handles: list = []
        self.sums: dict[str, list[torch.Tensor]] = {}
        self.logits: dict[str, list[torch.Tensor]] = {}

    def due(self, update: int) -> bool:
        """Whether update number `update` (1-based) is monitored."""
        return self.interval > 0 and update % self.interval == 0

    @property
    def armed(self) -> bool:
        return bool(self.handles)

    def arm(self) -> None:
        """Hook the layers (idempotent); measurements add up until `collect`."""
        if self.armed:
            return
        for name, layer in self.layers:
            self.handles.append(layer.register_forward_hook(self._hook(name)))
        for name, attn in self.attention:
            attn.record_logits = True
            self.handles.append(attn.register_forward_hook(self._logit_hook(name)))

    def _hook(self, name: str):
        def hook(_module, _inputs, output) -> None:
            if isinstance(output, torch.Tensor) and output.numel():
                y = output.detach().float()
                self.sums.setdefault(name, []).append(
                    torch.stack([y.square().sum(), y.new_tensor(float(y.numel()))])
                )

        return hook

    def _logit_hook(self, name: str):
        def hook(module, _inputs, _output) -> None:
            if module.max_logit is not None:
                self.logits.setdefault(name, []).append(module.max_logit.float())
                module.max_logit = None

        return hook

    def collect(self) -> dict[str, float]:
        """Unhook and return the measurements since `arm` (empty when nothing ran)."""
        for handle in self.handles:
            handle.remove()
        self.handles = []
        for _, attn in self.attention:
            attn.record_logits = False
            attn.max_logit = None
        names = list(self.sums)
        lnames = list(self.logits)
        if not names and not lnames:
            return {}
        # one device sync for everything
        packed = [torch.stack(self.sums[n]).sum(0) for n in names]
        peaks = [torch.stack(self.logits[n]).max() for n in lnames]
        flat = torch.cat(
            [torch.stack(packed).flatten() if packed else torch.zeros(0)]
            + [torch.stack(peaks) if peaks else torch.zeros(0)]
        ).tolist()
        self.sums, self.logits = {}, {}
        out: dict[str, float] = {}
        roles: dict[str, list[float]] = {}
        role_of = {name: layer.role for name, layer in self.layers}
        for i, name in enumerate(names):
            rms = math.sqrt(flat[2 * i] / max(flat[2 * i + 1], 1.0))
            out[f"linear_rms/{name}"] = rms
            roles.setdefault(role_of[name], []).append(rms)
        for role, values in roles.items():
            out[f"linear_rms_max/{role}"] = max(values)
            out[f"linear_rms_mean/{role}"] = sum(values) / len(values)
        logit_values = flat[2 * len(names) :]
        for name, value in zip(lnames, logit_values, strict=True):
            out[f"attn_logit_max/{name}"] = value
        if logit_values:
            out["attn_logit_max/all"] = max(logit_values)
        return out


def max_linear_rms(values: dict[str, float]) -> float:
    """The largest `linear_rms/...` of a `collect()` result (0 when none)."""
    return max((v for k, v in values.items() if k.startswith("linear_rms/")), default=0.0)


@dataclass
class Verdict:
    """What the guard concluded after an update."""

    diverged: bool
    reason: str = ""
    first_bad_update: int = 0  # the first update of the spike run (its rollback point)


class DivergenceGuard:
    """Loss-spike and runaway-growth detector (`train.guard`, see config.GuardConfig).

    `observe(update, loss_per_frame)` after every update (a non-finite value for a skipped
    one); `observe_norms(update, rms)` after a monitored one. A loss is a spike when it is not
    finite (a skipped update: from the first update on) or above `spike_factor` x the median
    of the last `window` good losses, once `min_history` good ones are known; spikes never enter
    the history, so a sustained divergence cannot raise its own reference. `patience` spikes in
    a row are a divergence.
    """

    def __init__(self, cfg) -> None:
        for key in ("window", "min_history", "patience"):
            if cfg[key] < 1:
                raise ValueError(f"train.guard.{key}={cfg[key]} must be >= 1")
        if cfg.min_history > cfg.window:
            raise ValueError(
                f"train.guard.min_history={cfg.min_history} must be <= train.guard.window="
                f"{cfg.window} (the history holds at most `window` losses)"
            )
        if cfg.spike_factor <= 1.0:
            raise ValueError(f"train.guard.spike_factor={cfg.spike_factor} must be > 1")
        if not 0.0 < cfg.lr_factor < 1.0:
            raise ValueError(f"train.guard.lr_factor={cfg.lr_factor} must be in (0, 1)")
        if cfg.action not in ("rollback", "stop"):
            raise ValueError(f"train.guard.action='{cfg.action}' is not one of rollback, stop")
        self.cfg = cfg
        self.history: deque[float] = deque(maxlen=cfg.window)
        self.run: list[tuple[int, float]] = []  # the current spike run: (update, value)

    def reference(self) -> float | None:
        """The median of the recent good losses, or None while too few are known."""
        if len(self.history) < self.cfg.min_history:
            return None
        return statistics.median(self.history)

    def observe(self, update: int, value: float) -> Verdict:
        ref = self.reference()
        spike = not math.isfinite(value) or (
            ref is not None and value > self.cfg.spike_factor * ref
        )
        if not spike:
            self.run = []
            self.history.append(value)
            return Verdict(False)
        self.run.append((update, value))
        if len(self.run) < self.cfg.patience:
            return Verdict(False)
        shown = ", ".join(f"{v:.4g}" for _, v in self.run)
        ref_text = f"{ref:.4g}" if ref is not None else "n/a"
        return Verdict(
            True,
            f"{len(self.run)} loss spikes in a row at updates {self.run[0][0]}-{update} "
            f"(loss per frame {shown}; median of the last {len(self.history)} good updates "
            f"{ref_text}, spike factor {self.cfg.spike_factor})",
            self.run[0][0],
        )

    def observe_norms(self, update: int, rms: float) -> Verdict:
        limit = self.cfg.max_linear_rms
        if limit > 0 and not rms <= limit:  # a NaN RMS is over any limit
            return Verdict(
                True,
                f"a linear layer's output RMS reached {rms:.4g} at update {update} "
                f"(train.guard.max_linear_rms={limit})",
                update,
            )
        return Verdict(False)

    def reset_run(self) -> None:
        """Forget the spike run (after a rollback); the good history stays."""
        self.run = []
