"""Power-of-two weights: every weight is 0 or +-2^k, so a multiply becomes a shift.

At b bits a weight holds one sign bit and a (b-1)-bit code for its exponent, one
code meaning zero: 2^(b-1)-1 magnitudes 2^e_max, 2^(e_max-1), ... per output
channel. The channel's top exponent e_max is chosen from three candidates around
log2 max|w| to minimise the squared error. 1 bit is sign(w) * 2^round(log2 mean|w|).
Values round to the nearest level in the linear domain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from bitnas.accounting import Compute, ComputeKind, Storage
from bitnas.errors import BitnasError
from bitnas.plan import FLOAT_BITS
from bitnas.quantizers.base import Quantizer, channels, numel
from bitnas.registry import QUANTIZERS


def _pot_levels(mag: Tensor, e_max: Tensor, n_levels: int) -> Tensor:
    """Round magnitudes [C, K] to {0} U {2^e : e_max-n+1 <= e <= e_max} per row, nearest."""
    e_min = e_max - (n_levels - 1)
    lo = torch.floor(torch.log2(mag.clamp_min(1e-30)))
    lo = torch.minimum(torch.maximum(lo, e_min), e_max)
    below, above = torch.exp2(lo), torch.exp2(torch.minimum(lo + 1, e_max))
    out = torch.where((mag - below).abs() <= (above - mag).abs(), below, above)
    smallest = torch.exp2(e_min)
    # an exact zero stays zero even where 2^e_min underflows (an all-zero row at 8 bits)
    return torch.where((mag < smallest / 2) | (mag == 0), torch.zeros_like(mag), out)


@dataclass(frozen=True)
class ExponentConfig:
    """Options of the power-of-two quantizer."""

    #: bits of each output channel's top exponent e_max as stored
    exponent_bits: int = 8

    def __post_init__(self) -> None:
        if not 1 <= self.exponent_bits <= 16:
            raise BitnasError(f"exponent_bits must be 1..16, got {self.exponent_bits}")


@QUANTIZERS.register("pot")
class PowerOfTwoQuantizer(Quantizer):
    """Power-of-two weights (0 or +-2^k per channel range): multiplies become shifts."""

    Config = ExponentConfig
    name = "pot"

    def storage(self, shape: Sequence[int], bits: int) -> Storage:
        """b bits per weight (sign and exponent code) and each channel's top exponent."""
        if bits >= FLOAT_BITS:
            return Storage(numel(shape) * FLOAT_BITS)
        return Storage(numel(shape) * bits, scale_bits=channels(shape) * self.config.exponent_bits)

    def compute(self, bits: int) -> Compute:
        """A shift (a float multiply for float weights)."""
        return Compute(ComputeKind.MULTIPLY if bits >= FLOAT_BITS else ComputeKind.SHIFT)

    def quantize(self, w: Tensor, bits: int) -> Tensor:
        if bits >= FLOAT_BITS:
            return w
        flat = w.detach().reshape(w.shape[0], -1)
        sign = torch.where(flat >= 0, 1.0, -1.0).to(w.dtype)
        mag = flat.abs()
        if bits == 1:
            e = torch.round(torch.log2(mag.mean(dim=1, keepdim=True).clamp_min(1e-30)))
            return (sign * torch.exp2(e)).reshape(w.shape)
        n_levels = 2 ** (bits - 1) - 1
        top = torch.ceil(torch.log2(mag.amax(dim=1, keepdim=True).clamp_min(1e-30)))
        best, best_err = None, None
        for shift in (0, -1, -2):
            q = _pot_levels(mag, top + shift, n_levels)
            err = ((q - mag) ** 2).sum(dim=1, keepdim=True)
            if best is None:
                best, best_err = q, err
            else:
                better = err < best_err
                best = torch.where(better, q, best)
                best_err = torch.minimum(err, best_err)
        return (sign * best).reshape(w.shape).to(w.dtype)
