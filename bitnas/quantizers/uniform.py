"""Uniform quantization: symmetric per-channel weights, asymmetric per-tensor activations.

Weights at b >= 2 bits use the restricted symmetric range [-(2^(b-1)-1), 2^(b-1)-1]
(so 2 bits is ternary), with each channel's clipping range chosen from a grid of
fractions of max|w| to minimise the squared error (data-free, like an MSE observer);
1 bit is binary, sign(w) times the channel's mean |w| (the L2-optimal binary scale).
Activations use an unsigned grid with an integer zero point, calibrated from the
min/max seen on a few batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from bitnas.accounting import Compute, ComputeKind, Storage
from bitnas.errors import BitnasError
from bitnas.plan import FLOAT_BITS
from bitnas.quantizers.base import Quantizer, channels, numel
from bitnas.registry import QUANTIZERS


def _per_channel(reduce: Tensor, w: Tensor) -> Tensor:
    """Reshape a per-output-channel vector so that it broadcasts against ``w``."""
    return reduce.view(-1, *([1] * (w.dim() - 1)))


#: Clipping ratios (of max|w|) tried per channel; 1.0 is plain max scaling.
CLIP_RATIOS = torch.linspace(0.3, 1.0, 15)


@dataclass(frozen=True)
class ScaleConfig:
    """Options of a per-channel quantizer."""

    #: bits of each output channel's scale as stored (32: a float scale)
    scale_bits: int = 32

    def __post_init__(self) -> None:
        if not 1 <= self.scale_bits <= 32:
            raise BitnasError(f"scale_bits must be 1..32, got {self.scale_bits}")


@QUANTIZERS.register("uniform")
class UniformQuantizer(Quantizer):
    """Symmetric per-channel uniform weights, MSE-clipped (binary at 1 bit, ternary at 2)."""

    Config = ScaleConfig
    name = "uniform"

    def storage(self, shape: Sequence[int], bits: int) -> Storage:
        """b bits per weight and one scale per output channel (none for float weights)."""
        if bits >= FLOAT_BITS:
            return Storage(numel(shape) * FLOAT_BITS)
        return Storage(numel(shape) * bits, scale_bits=channels(shape) * self.config.scale_bits)

    def compute(self, bits: int) -> Compute:
        return Compute(ComputeKind.MULTIPLY)

    def scale(self, w: Tensor, bits: int) -> Tensor:
        """The per-output-channel step size, broadcastable against ``w``."""
        flat = w.detach().reshape(w.shape[0], -1)
        if bits == 1:
            return _per_channel(flat.abs().mean(dim=1).clamp_min(1e-12), w)
        qmax = 2 ** (bits - 1) - 1
        # candidate steps [R, C, 1]; pick the ratio with the least squared error per channel
        steps = (CLIP_RATIOS.view(-1, 1) * flat.abs().amax(dim=1) / qmax).clamp_min(1e-12)
        steps = steps.unsqueeze(-1)
        err = ((torch.clamp(torch.round(flat / steps), -qmax, qmax) * steps - flat) ** 2).sum(-1)
        best = steps.squeeze(-1).gather(0, err.argmin(dim=0, keepdim=True)).squeeze(0)
        return _per_channel(best, w)

    def quantize(self, w: Tensor, bits: int) -> Tensor:
        if bits >= FLOAT_BITS:
            return w
        s = self.scale(w, bits)
        if bits == 1:
            q = torch.where(w >= 0, 1.0, -1.0).to(w.dtype)
        else:
            qmax = 2 ** (bits - 1) - 1
            q = torch.clamp(torch.round(w / s), -qmax, qmax)
        return q * s


class ActivationQuantizer(nn.Module):
    """Asymmetric per-tensor fake-quant of a layer's input, calibrated by min/max.

    In ``observing`` mode it records the range and passes values through; after
    calibration it rounds to the ``bits``-bit grid with a straight-through gradient.
    An input that only ever held 0 and 1 during calibration carries spikes: while it
    still does, it passes unchanged, since spikes are exact at any width (a grid
    fitted to a layer that happened not to fire would otherwise erase every later
    spike); any other value is quantized on the calibrated grid.
    """

    def __init__(self, bits: int) -> None:
        super().__init__()
        self.bits = bits
        self.observing = False
        self.register_buffer("lo", torch.tensor(float("inf")))
        self.register_buffer("hi", torch.tensor(float("-inf")))
        self.register_buffer("binary", torch.tensor(True))

    @property
    def calibrated(self) -> bool:
        return bool(torch.isfinite(self.lo)) and bool(torch.isfinite(self.hi))

    def qparams(self) -> tuple[Tensor, Tensor]:
        """(scale, zero point) of the grid; the range always contains 0 so that 0 is exact."""
        lo = torch.minimum(self.lo, torch.zeros(()))
        hi = torch.maximum(self.hi, torch.zeros(()))
        levels = 2**self.bits - 1
        scale = ((hi - lo) / levels).clamp_min(1e-12)
        zero_point = torch.round(-lo / scale)
        return scale, zero_point

    def forward(self, x: Tensor) -> Tensor:
        if self.bits >= FLOAT_BITS:
            return x
        if self.observing:
            self.lo = torch.minimum(self.lo, x.detach().min())
            self.hi = torch.maximum(self.hi, x.detach().max())
            self.binary = self.binary & ((x == 0) | (x == 1)).all()
            return x
        if not self.calibrated:
            raise RuntimeError("ActivationQuantizer used before calibration")
        if self.binary and ((x == 0) | (x == 1)).all():
            return x
        return x + (self.fake_quant(x.detach()) - x).detach()

    def fake_quant(self, x: Tensor) -> Tensor:
        """``x`` on the calibrated grid (no gradient path; forward adds the straight-through one)."""
        scale, zp = self.qparams()
        q = torch.clamp(torch.round(x / scale) + zp, 0, 2**self.bits - 1)
        return (q - zp) * scale
