"""Conv2d front ends that subsample fbank frames by 4, 6 or 8 before the encoder.

`conv2d`, `conv2d6` and `conv2d8` are WeNet's. `dwconv2d` (ours, 4x) makes every Conv2d after
the first depthwise-separable (depthwise 3x3 + pointwise 1x1), as Fast Conformer's front end
does: at d=144 the full second Conv2d costs as much as six Conformer blocks, the separable one
an eighth of that.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from wenet_eff.nn.embedding import PositionalEncoding
from wenet_eff.nn.linear import linear, tag

# input_layer name -> (kernel, stride) of each Conv2d
_CONV_LAYOUTS = {
    "conv2d": ((3, 2), (3, 2)),
    "conv2d6": ((3, 2), (5, 3)),
    "conv2d8": ((3, 2), (3, 2), (3, 2)),
    "dwconv2d": ((3, 2), (3, 2)),
}
_SEPARABLE = {"dwconv2d"}


def subsampled_frames(input_layer: str, frames: int) -> int:
    """Encoder frames from `frames` fbank frames through front end `input_layer`: the frames
    `Conv2dSubsampling.forward`'s mask keeps (each Conv2d, unpadded, drops kernel - 1 frames
    and keeps every stride-th)."""
    for kernel, stride in _CONV_LAYOUTS[input_layer]:
        frames = max(0, (frames - kernel) // stride + 1)
    return frames


class Conv2dSubsampling(nn.Module):
    """Strided Conv2d + ReLU stack, a linear map to d_model, then positional encoding.

    State-dict names match WeNet's `Conv2dSubsampling4/6/8`: `conv.{0,2,4}.*`, `out.0.*`,
    `pos_enc.pe` (the separable front end: `conv.0`, then depthwise `conv.2` and pointwise
    `conv.3`). `out_norm` (`model.stability.embed_norm`) adds a LayerNorm after `out`
    (`out_norm.*`), before the positional encoding.
    """

    def __init__(
        self,
        idim: int,
        odim: int,
        pos_enc: PositionalEncoding,
        input_layer: str,
        out_norm: bool = False,
    ):
        super().__init__()
        if input_layer not in _CONV_LAYOUTS:
            raise ValueError(
                f"model.encoder.input_layer='{input_layer}' unknown "
                f"(choose from {', '.join(_CONV_LAYOUTS)})"
            )
        layers: list[nn.Module] = []
        freq, in_ch = idim, 1
        self.subsampling_rate = 1
        self.right_context = 0
        for kernel, stride in _CONV_LAYOUTS[input_layer]:
            if in_ch > 1 and input_layer in _SEPARABLE:
                layers += [
                    tag(nn.Conv2d(in_ch, in_ch, kernel, stride, groups=in_ch), "subsampling.conv"),
                    tag(nn.Conv2d(in_ch, odim, 1), "subsampling.conv"),
                ]
            else:
                layers.append(tag(nn.Conv2d(in_ch, odim, kernel, stride), "subsampling.conv"))
            layers.append(nn.ReLU())
            freq = (freq - kernel) // stride + 1
            # each layer needs (kernel - 1) more input frames at the current frame rate
            self.right_context += (kernel - 1) * self.subsampling_rate
            self.subsampling_rate *= stride
            in_ch = odim
        self.layout = _CONV_LAYOUTS[input_layer]
        self.conv = nn.Sequential(*layers)
        self.out = nn.Sequential(linear(odim * freq, odim, role="subsampling.out"))
        self.out_norm = nn.LayerNorm(odim) if out_norm else None
        self.pos_enc = pos_enc

    def forward(
        self, x: torch.Tensor, x_mask: torch.Tensor, offset: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Subsample.

        Args:
            x: (B, T, idim) features.
            x_mask: (B, 1, T) padding mask.
            offset: position of the first output frame (streaming).
        Returns:
            x (B, T', odim), pos_emb (1, T', odim), mask (B, 1, T').
        """
        x = self.conv(x.unsqueeze(1))
        b, c, t, f = x.size()
        x = self.out(x.transpose(1, 2).reshape(b, t, c * f))
        if self.out_norm is not None:
            x = self.out_norm(x)
        x, pos_emb = self.pos_enc(x, offset)
        for kernel, stride in self.layout:
            x_mask = x_mask[:, :, kernel - 1 :: stride]
        return x, pos_emb, x_mask

    def position_encoding(self, offset: int, size: int) -> torch.Tensor:
        return self.pos_enc.position_encoding(offset, size)
