"""The compressed versions of the seam's layers: one class per layer type, whose forward uses
`effective_weight()`, the float weight passed through the layer's transforms in order:

    weight -> sparsifier (mask: N:M, magnitude or learned; compress.sparse)
           -> weight_quantizer (fake quantization; compress.quant)

Either transform may be None. Masking before quantizing keeps zeros exactly zero (0 maps to
level 0, or to the zero point, in every quantizer but binarization, which `apply` refuses with
a mask). A packed model (compress.pack) serves its stored integers instead (`packed`).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from wenet_eff.compress.quant import integer_linear, quantize_activation


class CompressedLayer:
    """What the compressed layers share. `apply` sets `weight_quantizer` and `sparsifier`
    (a module or None each), `act_bits` and `native_int` on the instance."""

    packed: dict | None = None  # the stored integers of a packed model (compress.pack)

    def masked_weight(self) -> torch.Tensor:
        """The weight after the sparsifier (the weight itself without one)."""
        sparsifier = self.sparsifier
        return self.weight if sparsifier is None else sparsifier(self.weight)

    def effective_weight(self) -> torch.Tensor:
        """The weight the forward uses (see the module docstring)."""
        if self.packed is not None:
            return self.weight  # the dequantized stored integers (compress.pack.unpack_into)
        w = self.masked_weight()
        return w if self.weight_quantizer is None else self.weight_quantizer(w)

    def stored(self) -> dict:
        """The integer form of the (masked) weight (`WeightQuantizer.integers`)."""
        if self.packed is not None:
            return self.packed
        with torch.no_grad():
            return self.weight_quantizer.integers(self.masked_weight())

    def _act(self, x: torch.Tensor) -> torch.Tensor:
        if self.act_bits <= 0:
            return x
        levels, scale = quantize_activation(x, self.act_bits)
        return levels * scale

    def _native(self, x: torch.Tensor) -> torch.Tensor:
        """Integer forward in value, fake-quant gradients (the value is exactly the integer one)."""
        w_hat = self.effective_weight().reshape(self.weight.size(0), -1)
        fake = F.linear(self._act(x), w_hat, self.bias)
        with torch.no_grad():
            exact = integer_linear(
                x, self.stored(), self.weight_quantizer.layout, self.bias, self.act_bits
            )
        return exact + (fake - fake.detach())

    def regularization(self) -> torch.Tensor:
        return self.weight_quantizer.regularization(self.weight)


class CompressedLinear(CompressedLayer, nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.native_int:
            return self._native(x)
        return F.linear(self._act(x), self.effective_weight(), self.bias)


class CompressedConv1d(CompressedLayer, nn.Conv1d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.native_int and self.kernel_size == (1,):  # pointwise: a Linear over channels
            return self._native(x.transpose(1, 2)).transpose(1, 2)
        return self._conv_forward(self._act(x), self.effective_weight(), self.bias)


class CompressedConv2d(CompressedLayer, nn.Conv2d):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(self._act(x), self.effective_weight(), self.bias)


class CompressedEmbedding(CompressedLayer, nn.Embedding):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.embedding(
            x, self.effective_weight(), self.padding_idx, self.max_norm, self.norm_type,
            self.scale_grad_by_freq, self.sparse,
        )  # fmt: skip


COMPRESSED_CLASSES = {
    nn.Linear: CompressedLinear,
    nn.Conv1d: CompressedConv1d,
    nn.Conv2d: CompressedConv2d,
    nn.Embedding: CompressedEmbedding,
}
