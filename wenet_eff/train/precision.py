"""`train.dtype`: fp32, bf16 (autocast), or auto, resolved once when training starts.

auto picks bf16 where it is measured to win and fp32 elsewhere. bf16 needs both:
- a fast bf16 matrix product on the training device: AMX-BF16 or AVX512-BF16 on a CPU
  (without them oneDNN converts to fp32 and every cast is pure cost), or a CUDA GPU with bf16;
- an encoder at least `MIN_BF16_WIDTH` (256) wide. Measured with `bin.benchmark
  train_throughput --threads 2` on a Xeon with AMX: u2pp_conformer (width 256) trains 1.57x
  faster in bf16 than in fp32 (5.12 -> 3.27 s per 8 x 8 s step), mini_moe (width 144) 0.92x:
  its matrices are too small for the faster products to pay for the casts around them.

The CPU's features come from torch's own probe (`torch.cpu`), the one its kernels dispatch on:
it also checks that the operating system enabled the AMX tiles.
"""

from __future__ import annotations

import torch

DTYPES = ("fp32", "bf16", "auto")
MIN_BF16_WIDTH = 256  # encoder output_size from which bf16 autocast wins (see above)
CPU_BF16 = ("amx_bf16", "avx512_bf16")  # CPU features with a fast bf16 matrix product


def bf16_features(device: torch.device) -> frozenset[str]:
    """The fast bf16 paths `device` has: `cuda_bf16` on a CUDA GPU with bf16, else the
    CPU's among CPU_BF16 (empty on an AVX2 CPU)."""
    if device.type == "cuda":
        return frozenset({"cuda_bf16"} if torch.cuda.is_bf16_supported() else ())
    found = {
        "amx_bf16": torch.cpu._is_amx_tile_supported(),  # every AMX CPU has AMX-BF16
        "avx512_bf16": torch.cpu._is_avx512_bf16_supported(),
    }
    return frozenset(name for name, present in found.items() if present)


def choose_dtype(setting: str, width: int, features: frozenset[str]) -> tuple[str, str]:
    """Resolve `train.dtype`.

    Args:
        setting: the configured value, fp32 | bf16 | auto.
        width: the encoder's output_size.
        features: the device's fast bf16 paths (`bf16_features`).

    Returns:
        (fp32 or bf16, the reason, for the log).
    Raises:
        ValueError: `setting` is not one of DTYPES.
    """
    if setting not in DTYPES:
        raise ValueError(
            f"train.dtype: '{setting}' is not one of {', '.join(DTYPES)} (auto: bf16 where "
            "the device has a fast bf16 matrix product and the model is wide enough)"
        )
    if setting != "auto":
        return setting, "set in the config"
    fast = ", ".join(sorted(features))
    if not fast:
        return "fp32", "no fast bf16 matrix product on this device (AMX, AVX512-BF16, CUDA)"
    if width < MIN_BF16_WIDTH:
        return "fp32", (
            f"encoder output_size {width} < {MIN_BF16_WIDTH}, too narrow for bf16 to "
            f"win even with {fast}"
        )
    return "bf16", f"{fast} and encoder output_size {width} >= {MIN_BF16_WIDTH}"


def resolve_dtype(setting: str, width: int, device: torch.device) -> tuple[str, str]:
    """`choose_dtype` with the features of `device` (this machine's)."""
    features = bf16_features(device) if setting == "auto" else frozenset()
    return choose_dtype(setting, width, features)
