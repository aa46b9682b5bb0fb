"""The MAX78000/MAX78002 weight format: b-bit integers under one power-of-two scale per layer.

As Analog Devices' ai8x-training quantizes during QAT (ai8x.py) and ai8x-synthesis's
quantize.py exports: the layer's shift is ``os = ceil(log2(quantile(|w|, q)))``, clamped
to [-15, 15] (q = ``shift_quantile``, 1.0: the largest weight), and each weight becomes
``w_int = clamp(floor(w * 2^-os * 2^(b-1) + 0.5), -2^(b-1), 2^(b-1) - 1)``: round half up,
then clamp, so 1 bit is {-1, 0}, 2 bits {-2, ..., 1}, 8 bits {-128, ..., 127}. The
dequantized weight is ``w_int * 2^(os - b + 1)``. The hardware multiplies the integers and
applies the shift to the sum (``output_shift``), so the exported network computes what the
fake-quantized one does.

Storage: b bits a weight and nothing else: the shift is a field of the layer's
configuration register, not weight memory. In a network (``quantize_layer``) the shift is
taken over the weights and the bias together and the bias is quantized on it at the same
bits, as ai8x does; ``quantize`` alone (a weight tensor) takes it over the weights.
Activations are the chip's fixed point (:class:`FixedPointActivation`): 8-bit values in
[-1, 1) at steps of 1/128, rounded half up, not calibrated.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from bitnas.accounting import Compute, ComputeKind, Storage
from bitnas.errors import BitnasError
from bitnas.plan import FLOAT_BITS
from bitnas.quantizers.base import Quantizer, numel
from bitnas.registry import QUANTIZERS


@dataclass(frozen=True)
class ShiftConfig:
    """Options of the ai8x quantizer."""

    #: the quantile of |w| that sets the layer's shift (ai8x's shift_quantile; 1.0: max|w|)
    shift_quantile: float = 1.0

    def __post_init__(self) -> None:
        if not 0.5 <= self.shift_quantile <= 1.0:
            raise BitnasError(f"shift_quantile must be in [0.5, 1], got {self.shift_quantile}")


def output_shift(w: Tensor, quantile: float = 1.0) -> int:
    """The layer's power-of-two shift os: ceil(log2(quantile of |w|)), within [-15, 15]."""
    mag = w.detach().abs().flatten().float()
    top = mag.max() if quantile >= 1.0 else torch.quantile(mag, quantile)
    if float(top) <= 0:
        return -15
    return int(min(15, max(-15, torch.ceil(torch.log2(top)).item())))


def to_int(w: Tensor, bits: int, shift: int) -> Tensor:
    """The stored integers of ``w`` at ``bits`` under shift ``shift`` (see the docstring)."""
    half = 2 ** (bits - 1)
    return torch.clamp(torch.floor(w * 2.0 ** (-shift) * half + 0.5), -half, half - 1)


@QUANTIZERS.register("ai8x")
class Ai8xQuantizer(Quantizer):
    """MAX7800x weights: b-bit integers, one power-of-two shift per layer (ai8x's QAT)."""

    Config = ShiftConfig
    name = "ai8x"

    def storage(self, shape: Sequence[int], bits: int) -> Storage:
        """b bits per weight; the layer's shift lives in its configuration, not weight memory."""
        return Storage(numel(shape) * (FLOAT_BITS if bits >= FLOAT_BITS else bits))

    def compute(self, bits: int) -> Compute:
        """An integer multiply (a float one for float weights)."""
        return Compute(ComputeKind.MULTIPLY)

    def quantize(self, w: Tensor, bits: int) -> Tensor:
        if bits >= FLOAT_BITS:
            return w
        shift = output_shift(w, self.config.shift_quantile)
        return (to_int(w.detach(), bits, shift) * 2.0 ** (shift - bits + 1)).to(w.dtype)

    def layer_shift(self, w: Tensor, bias: Tensor | None) -> int:
        """The layer's shift, from the weights and the bias together (as ai8x takes it)."""
        both = w.detach().flatten() if bias is None else torch.cat([w.detach().flatten(), bias.detach()])
        return output_shift(both, self.config.shift_quantile)

    def quantize_layer(self, w: Tensor, bias: Tensor | None, bits: int) -> tuple[Tensor, Tensor | None]:
        """Weight and bias on one shift, both at ``bits`` (the hardware adds the bias into the
        accumulator on the weights' scale): what ``bitnas export --format ai8x`` writes."""
        if bits >= FLOAT_BITS:
            return w, bias
        shift = self.layer_shift(w, bias)
        step = 2.0 ** (shift - bits + 1)
        wq = (to_int(w.detach(), bits, shift) * step).to(w.dtype)
        bq = None if bias is None else (to_int(bias.detach(), bits, shift) * step).to(bias.dtype)
        return wq, bq

    def activation(self, bits: int) -> nn.Module:
        """The accelerator's fixed-point activations: ``bits``-bit signed, step 2^-(bits-1)."""
        return FixedPointActivation(bits)


class FixedPointActivation(nn.Module):
    """A layer input as the MAX7800x holds it: ``round(x * 2^(b-1))`` (half up), clamped to
    [-2^(b-1), 2^(b-1) - 1], times 2^-(b-1): values in [-1, 1) at 1/128 steps for 8 bits.
    Not calibrated (``observing`` is accepted and ignored); straight-through gradient."""

    def __init__(self, bits: int) -> None:
        super().__init__()
        self.bits = bits
        self.observing = False

    def forward(self, x: Tensor) -> Tensor:
        if self.bits >= FLOAT_BITS:
            return x
        half = 2 ** (self.bits - 1)
        xq = torch.clamp(torch.floor(x * half + 0.5), -half, half - 1) / half
        return x + (xq - x).detach()
