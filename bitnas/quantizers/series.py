"""FP=xINT series expansion: a weight (and optionally the activation) as a sum of k low-bit terms.

Residual expansion, per layer and output channel: R_0 = W; term i is
W_i = s_i * Q_b(R_{i-1}); R_i = R_{i-1} - W_i; W ~ W_1 + ... + W_k (see :func:`expand`
for the steps s_i). Every term after the first quantizes what the ones before left,
so the error falls by 1/(2^b - 1), about 2^-b, per added term: the residual of a
b-bit rounding spans one step, and the next term's 2^b codes split that step.
The layer's output is sum_i W_i x: k independent integer products (k passes), which
the paper runs in parallel and in any order. With ``act_terms`` = k_a > 1 the layer's
input is expanded the same way (its calibrated asymmetric grid, then k_a - 1 residual
terms), and the output needs k x k_a integer passes.

Storage: k x b bits per weight and one scale per output channel (the later terms' steps
are fixed fractions of the first's). Compute: k
(x k_a) multiply passes at b bits; on spike inputs the k_a activation terms of a 0/1 value
are the value itself, so a cost model that knows its inputs are spikes charges k passes.

The paper (Zhang et al., arXiv 2412.06865) also expands at the layer and model level
(basis models summed); bitnas expands each tensor, which is what a per-layer search
can choose per group.
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
from bitnas.quantizers.uniform import CLIP_RATIOS, ActivationQuantizer, UniformQuantizer
from bitnas.registry import QUANTIZERS

MAX_TERMS = 8
#: first binary steps tried, as fractions of a channel's mean |w| (1 term: exactly the mean)
BINARY_RATIOS = torch.linspace(0.3, 1.5, 25)


@dataclass(frozen=True)
class SeriesConfig:
    """Options of the series-expansion quantizer (``terms`` may be searched per group)."""

    #: k: weight terms, each of the group's w_bits
    terms: int = 2
    #: k_a: activation terms, each of the group's a_bits (1: the input is not expanded)
    act_terms: int = 1
    #: bits of each term's per-channel scale as stored
    scale_bits: int = 32

    def __post_init__(self) -> None:
        for name in ("terms", "act_terms"):
            v = getattr(self, name)
            if not 1 <= v <= MAX_TERMS:
                raise BitnasError(f"{name} must be 1..{MAX_TERMS}, got {v}")
        if not 1 <= self.scale_bits <= 32:
            raise BitnasError(f"scale_bits must be 1..32, got {self.scale_bits}")


def expand(w: Tensor, bits: int, terms: int) -> list[Tensor]:
    """The k terms W_1..W_k of ``w``'s residual expansion (each dequantized).

    One term is the ``uniform`` quantizer's (MSE-clipped, restricted symmetric codes).
    With more, the first term has restricted symmetric codes at step s, and term i takes
    the full signed b-bit codes [-2^(b-1), 2^(b-1) - 1] at step s / (2^b - 1)^(i-1): for an
    unclipped weight (|w| <= s (2^(b-1) - 1)) each term's error is at most half its step,
    1/(2^b - 1) of the term before's. Each channel's s is the fraction of max|w| / (2^(b-1) - 1)
    (from the same grid ``uniform`` searches) whose whole k-term expansion has the least
    squared error. At 1 bit the terms are binary, sign(R) times s, s/2, s/4, ... (s the
    fraction of the channel's mean |w| with the least error; one term: the mean itself).
    """
    w = w.detach() if w.dim() else w.detach().reshape(1)
    if terms == 1:
        return [UniformQuantizer().quantize(w, bits)]
    flat = w.reshape(w.shape[0], -1)
    if bits == 1:  # binary terms +-s, +-s/2, +-s/4, ...: s from a grid around the mean |w|
        steps = (BINARY_RATIOS.to(flat.dtype).view(-1, 1) * flat.abs().mean(dim=1)).unsqueeze(-1)
        terms_r = _binary_terms(flat.unsqueeze(0), steps.clamp_min(torch.finfo(flat.dtype).tiny), terms)
        err = ((torch.stack(terms_r).sum(0) - flat) ** 2).sum(-1)
        best, rows = err.argmin(dim=0), torch.arange(flat.shape[0])
        return [t[best, rows].reshape(w.shape) for t in terms_r]
    qmax = 2 ** (bits - 1) - 1
    # candidate first steps [R, C, 1]: fractions of max|w|; each channel keeps the one whose
    # whole expansion errs least (clipping the first term leaves outliers the later terms
    # may not reach: the trade-off is measured, not assumed)
    top = (flat.abs().amax(dim=1) / qmax).clamp_min(1e-30)
    steps = (CLIP_RATIOS.to(flat.dtype).view(-1, 1) * top).unsqueeze(-1)
    terms_r = _terms(flat.unsqueeze(0), steps, bits, terms)
    err = ((torch.stack(terms_r).sum(0) - flat) ** 2).sum(-1)  # [R, C]
    best = err.argmin(dim=0)
    rows = torch.arange(flat.shape[0])
    return [t[best, rows].reshape(w.shape) for t in terms_r]


def _binary_terms(flat: Tensor, step: Tensor, terms: int) -> list[Tensor]:
    """k binary terms, each the sign of what the ones before left times a halving step."""
    out, approx = [], torch.zeros_like(flat)
    for _ in range(terms):
        out.append(torch.where(flat - approx >= 0, 1.0, -1.0).to(flat.dtype) * step)
        approx = approx + out[-1]
        step = step / 2
    return out


def _terms(flat: Tensor, step: Tensor, bits: int, terms: int) -> list[Tensor]:
    """The k dequantized terms of ``flat`` from first steps ``step`` (broadcast)."""
    qmax = 2 ** (bits - 1) - 1
    out = [torch.clamp(torch.round(flat / step), -qmax, qmax) * step]
    approx = out[0]
    tiny = torch.finfo(flat.dtype).tiny  # an all-zero channel's steps must not underflow to 0
    for _ in range(terms - 1):
        step = (step / (2 ** bits - 1)).clamp_min(tiny)
        out.append(torch.clamp(torch.round((flat - approx) / step), -(qmax + 1), qmax) * step)
        approx = approx + out[-1]
    return out


class SeriesActivation(ActivationQuantizer):
    """A layer input as k_a terms: its calibrated asymmetric grid, then k_a - 1 residual
    terms of full signed b-bit codes, each at 1/(2^b - 1) of the step before (as
    :func:`expand` does for weights)."""

    def __init__(self, bits: int, terms: int) -> None:
        super().__init__(bits)
        self.terms = terms

    def fake_quant(self, x: Tensor) -> Tensor:
        xq = super().fake_quant(x)
        step, _ = self.qparams()
        top = 2 ** (self.bits - 1)
        for _ in range(self.terms - 1):
            step = step / (2 ** self.bits - 1)
            xq = xq + torch.clamp(torch.round((x - xq) / step), -top, top - 1) * step
        return xq


@QUANTIZERS.register("series")
class SeriesQuantizer(Quantizer):
    """FP=xINT: k residual terms of b bits each (k passes), optionally k_a activation terms."""

    Config = SeriesConfig
    name = "series"

    def supported_bits(self) -> frozenset[int]:
        """1..8 bits a term: k wider terms expand nothing a single term at k times the bits
        would not hold."""
        return frozenset(range(1, 9))

    def quantize(self, w: Tensor, bits: int) -> Tensor:
        if bits >= FLOAT_BITS:
            return w
        return torch.stack(expand(w, bits, self.config.terms)).sum(0).reshape(w.shape).to(w.dtype)

    def storage(self, shape: Sequence[int], bits: int) -> Storage:
        """k x b bits per weight and one scale per output channel: the later terms' steps are
        fixed fractions of the first's (1/(2^b - 1)^(i-1); 1/2^(i-1) at 1 bit), the same for
        every channel."""
        if bits >= FLOAT_BITS:
            return Storage(numel(shape) * FLOAT_BITS)
        k = self.config.terms
        return Storage(numel(shape) * bits * k, scale_bits=channels(shape) * self.config.scale_bits)

    def compute(self, bits: int) -> Compute:
        """k x k_a multiply passes at b bits (one float pass for float weights)."""
        if bits >= FLOAT_BITS:
            return Compute(ComputeKind.MULTIPLY)
        ka = self.config.act_terms
        return Compute(ComputeKind.MULTIPLY, passes=self.config.terms * ka, act_terms=ka)

    def activation(self, bits: int):
        if self.config.act_terms == 1 or bits >= FLOAT_BITS:
            return None
        return SeriesActivation(bits, self.config.act_terms)
