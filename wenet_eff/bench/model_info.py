"""Parameters (total and active), a per-module breakdown and FLOPs per second of audio.

    python -m wenet_eff.bin.model_info paper_moe_1b
    python -m wenet_eff.bin.model_info exp/mini/train.yaml --json info.json

Active parameters count only the k experts a frame goes through in each MoE layer. FLOPs are
counted by running the encoder and CTC head on `--seconds` of random features under
`torch.utils.flop_counter.FlopCounterMode` (a multiply-add is 2 FLOPs), so an MoE layer is
charged for the experts its frames were routed to, exactly what runs; divided by the seconds.
For MoE models it also gives the parameters each rank holds under expert parallelism
(`train.expert_parallel=N`: 1/N of the experts, all other weights) and their fp32 training state
(weights, gradients and Adam's two moments: 16 bytes per parameter).
"""

from __future__ import annotations

import argparse
import re
from collections import OrderedDict
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from wenet_eff.bench.common import write_json
from wenet_eff.config import load_config
from wenet_eff.model import ASRModel, build_model
from wenet_eff.nn.moe import moe_layers

# (group, pattern on the parameter name); the first match wins.
GROUPS = (
    ("encoder.embed (subsampling)", r"^encoder\.(embed|global_cmvn)\."),
    ("encoder router", r"^encoder\..*feed_forward(_macaron)?\.gate\."),
    ("encoder experts", r"^encoder\..*feed_forward(_macaron)?\.experts\."),
    ("encoder ffn", r"^encoder\..*feed_forward(_macaron)?\."),
    ("encoder self-attention", r"^encoder\..*self_attn\."),
    ("encoder convolution", r"^encoder\..*conv_module\."),
    ("encoder norms", r"^encoder\."),
    ("decoder router", r"^decoder\..*feed_forward\.gate\."),
    ("decoder experts", r"^decoder\..*feed_forward\.experts\."),
    ("decoder ffn", r"^decoder\..*feed_forward\."),
    ("decoder attention", r"^decoder\..*(self_attn|src_attn)\."),
    ("decoder embed + output", r"^decoder\..*(embed|output_layer)\."),
    ("decoder norms", r"^decoder\."),
    ("ctc", r"^ctc\."),
)


def breakdown(model: ASRModel) -> OrderedDict[str, dict[str, int]]:
    """{group: {"total", "active"}} over all parameters (groups in GROUPS order, empty ones
    left out). Expert parameters are active in the proportion k / n_expert of their layer."""
    expert_share: dict[str, float] = {}
    for name, layer in moe_layers(model):
        expert_share[f"{name}.experts."] = layer.k / layer.n_expert
    out: OrderedDict[str, dict[str, int]] = OrderedDict(
        (g, {"total": 0, "active": 0}) for g, _ in GROUPS
    )
    for name, p in model.named_parameters():
        group = next((g for g, pattern in GROUPS if re.search(pattern, name)), None)
        if group is None:
            raise ValueError(f"parameter {name} belongs to no group of model_info.GROUPS")
        share = next((s for prefix, s in expert_share.items() if name.startswith(prefix)), 1.0)
        out[group]["total"] += p.numel()
        out[group]["active"] += round(p.numel() * share)
    return OrderedDict((g, v) for g, v in out.items() if v["total"])


@torch.inference_mode()
def flops_per_second(model: ASRModel, seconds: float = 10.0, input_dim: int = 80) -> dict:
    """FLOPs per second of audio of the encoder and of the CTC head (random input, batch 1)."""
    model.eval()
    frames = int(seconds * 100)
    feats = torch.randn(1, frames, input_dim)
    lens = torch.tensor([frames])
    with FlopCounterMode(display=False) as counter:
        enc, mask = model.encoder(feats, lens)
    encoder = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter:
        model.ctc.log_softmax(enc)
    ctc = counter.get_total_flops()
    return {"encoder": encoder / seconds, "ctc": ctc / seconds}


def model_info(name_or_path: str, vocab_size: int = 0, seconds: float = 10.0) -> dict:
    """Everything `model_info` prints, as a dict (also the JSON)."""
    overrides = [f"model.vocab_size={vocab_size}"] if vocab_size else []
    cfg = load_config(name_or_path, overrides)
    torch.manual_seed(0)
    model = build_model(cfg)
    flops = flops_per_second(model, seconds, cfg.model.input_dim)
    return {
        "model": cfg.model.name,
        "vocab_size": model.vocab_size,
        "params": model.num_params(),
        "breakdown": breakdown(model),
        "flops_per_audio_second": flops,
        "moe_layers": len(moe_layers(model)),
        "expert_parallel": expert_parallel_shares(model),
    }


def expert_parallel_shares(model: ASRModel) -> list[dict]:
    """Per expert-parallel size N dividing every layer's n_expert (1, 2, 4, ...): parameters
    per rank and their fp32 training state in bytes. Empty for dense models."""
    layers = moe_layers(model)
    if not layers:
        return []
    experts = sum(p.numel() for _, layer in layers for e in layer.experts for p in e.parameters())
    total = sum(p.numel() for p in model.parameters())
    n_expert = min(layer.n_expert for _, layer in layers)
    out = []
    for size in range(1, n_expert + 1):
        if all(layer.n_expert % size == 0 for _, layer in layers):
            per_rank = total - experts + experts // size
            out.append({"size": size, "params_per_rank": per_rank, "train_bytes": 16 * per_rank})
    return out


def print_info(info: dict) -> None:
    p = info["params"]
    print(
        f"{info['model']}: {p['total']:,} parameters, {p['active']:,} active per frame "
        f"({p['total'] / 1e6:.1f}M / {p['active'] / 1e6:.1f}M), vocab {info['vocab_size']}, "
        f"{info['moe_layers']} MoE layers"
    )
    print(f"{'module':<30}{'total':>15}{'active':>15}")
    for group, v in info["breakdown"].items():
        print(f"{group:<30}{v['total']:>15,}{v['active']:>15,}")
    if info["expert_parallel"]:
        print(f"{'train.expert_parallel':<30}{'params per rank':>15}{'fp32+Adam GB':>15}")
        for row in info["expert_parallel"]:
            print(
                f"{row['size']:<30}{row['params_per_rank']:>15,}{row['train_bytes'] / 1e9:>15.2f}"
            )
    f = info["flops_per_audio_second"]
    print(
        f"GFLOPs per second of audio: encoder {f['encoder'] / 1e9:.2f}, ctc {f['ctc'] / 1e9:.3f} "
        "(FlopCounterMode, batch 1, routed experts only)"
    )


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("config", help="packaged model name or train.yaml path")
    p.add_argument(
        "--vocab_size", type=int, default=0, help="vocabulary (default: 5002 for a packaged name)"
    )
    p.add_argument("--seconds", type=float, default=10.0, help="audio length for FLOPs")
    p.add_argument("--json", default="", help="also write the result here")
    args = p.parse_args(argv)
    packaged = not Path(args.config).suffix and not Path(args.config).exists()
    vocab = args.vocab_size or (5002 if packaged else 0)
    info = model_info(args.config, vocab, args.seconds)
    print_info(info)
    if args.json:
        write_json(info, args.json)
    return info


if __name__ == "__main__":
    main()
