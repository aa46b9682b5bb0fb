"""Non-uniform post-training weight quantization: data-free, weights only.

Scheme: Lloyd-Max levels fitted to the layer's own weights. The 2^b levels and their
decision thresholds (midpoints between neighbouring levels) minimise the mean squared
quantization error over the layer's weight distribution, which is the expected noise
of the paper's formulation: clipping noise (weights beyond the outermost threshold
snap to the outermost level) plus rounding noise (everything inside). So clipping is
not a separate heuristic here: the outermost level is the centroid of its tail, which
is where the noise-minimising clip lands. Lloyd's iteration (assign each weight to its
nearest level, move each level to the mean of its weights) converges to a local
optimum; it starts from the weight quantiles (the levels of an equal-population
quantizer), which for the bell-shaped weight distributions of trained layers lands
at the Lloyd-Max levels of a Gaussian or Laplacian. Each iteration's cells and means are
computed exactly on the sorted weights with prefix sums, so a layer of 100k weights takes
milliseconds.

The paper (Luqman, Qazi, Khan, arXiv 2412.07391) chooses clipping thresholds and
scales analytically from a fitted distribution; its exact level placement is not
published, so this implementation fits the empirical distribution directly (which is
what the analytical formulas approximate).

Hardware: each weight is stored as a b-bit index into a per-layer table of 2^b levels;
the table's levels are ``level_bits``-bit signed integers on a per-layer scale (one
32-bit scale), so a MAC first looks the level up, then multiplies a level_bits-bit
value. ``level_bits`` 32 keeps float levels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from bitnas.accounting import Compute, ComputeKind, Storage
from bitnas.errors import BitnasError
from bitnas.plan import FLOAT_BITS
from bitnas.quantizers.base import Quantizer, numel
from bitnas.registry import QUANTIZERS

#: the widest index: a table of 256 levels (a wider one is a slow, large uniform quantizer)
MAX_INDEX_BITS = 8
#: Lloyd iterations at most (it stops earlier once no level moves by 1e-9 of the range)
ITERATIONS = 500


def lloyd_max(values: Tensor, n_levels: int, iterations: int = ITERATIONS) -> Tensor:
    """Sorted levels minimising the squared error of ``values`` (1-D) rounded to the nearest,
    by Lloyd's algorithm from the quantile levels. Fewer distinct values than levels give
    the distinct values themselves (padded with repeats)."""
    x = values.detach().flatten().double().sort().values
    n = x.numel()
    distinct = torch.unique_consecutive(x)
    if distinct.numel() <= n_levels:
        pad = distinct[-1].repeat(n_levels - distinct.numel())
        return torch.cat([distinct, pad]).to(values.dtype)
    prefix = torch.cat([torch.zeros(1, dtype=x.dtype), x.cumsum(0)])
    # equal-population start: the mean of each of n_levels equal slices of the sorted weights
    edges = torch.linspace(0, n, n_levels + 1, dtype=torch.float64).round().long()
    levels = (prefix[edges[1:]] - prefix[edges[:-1]]) / (edges[1:] - edges[:-1]).clamp_min(1)
    for _ in range(iterations):
        thresholds = (levels[1:] + levels[:-1]) / 2
        cuts = torch.cat([torch.zeros(1, dtype=torch.long), torch.searchsorted(x, thresholds),
                          torch.full((1,), n, dtype=torch.long)])
        counts = cuts[1:] - cuts[:-1]
        means = (prefix[cuts[1:]] - prefix[cuts[:-1]]) / counts.clamp_min(1)
        new = torch.where(counts > 0, means, levels)  # an empty cell keeps its level
        new = new.sort().values
        moved = float((new - levels).abs().max())
        levels = new
        if moved <= 1e-9 * float(x[-1] - x[0]):
            break
    return levels.to(values.dtype)


def nearest(w: Tensor, levels: Tensor) -> Tensor:
    """Each element of ``w`` replaced by its nearest level (``levels`` sorted ascending)."""
    flat = w.reshape(-1)
    idx = torch.searchsorted(levels, flat).clamp(1, len(levels) - 1)
    lo, hi = levels[idx - 1], levels[idx]
    return torch.where((flat - lo).abs() <= (hi - flat).abs(), lo, hi).reshape(w.shape)


@dataclass(frozen=True)
class LevelConfig:
    """Options of the non-uniform quantizer."""

    #: bits of each level in the layer's table (signed integers on one per-layer scale);
    #: 32: float levels
    level_bits: int = 8
    #: bits of the per-layer scale of the table
    scale_bits: int = 32

    def __post_init__(self) -> None:
        if not (2 <= self.level_bits <= 16 or self.level_bits == FLOAT_BITS):
            raise BitnasError(f"level_bits must be 2..16, or 32 for float levels, got {self.level_bits}")
        if not 1 <= self.scale_bits <= 32:
            raise BitnasError(f"scale_bits must be 1..32, got {self.scale_bits}")


@QUANTIZERS.register("nonuniform")
class NonUniformQuantizer(Quantizer):
    """Lloyd-Max levels per layer (data-free): b-bit indices into a 2^b-level table."""

    Config = LevelConfig
    name = "nonuniform"

    def supported_bits(self) -> frozenset[int]:
        """1..8-bit indices (a table of at most 256 levels), and no more index bits than the
        levels have: a table of 2^b levels of fewer bits would repeat levels."""
        return frozenset(range(1, min(MAX_INDEX_BITS, self.config.level_bits) + 1))

    def levels(self, w: Tensor, bits: int) -> Tensor:
        """The layer's table: 2^b sorted levels, on the level_bits grid."""
        levels = lloyd_max(w, 2 ** bits)
        lb = self.config.level_bits
        if lb >= FLOAT_BITS:
            return levels
        top = levels.abs().max()
        if top == 0:
            return levels
        qmax = 2 ** (lb - 1) - 1
        step = top / qmax
        return (torch.round(levels / step).clamp(-qmax, qmax) * step).sort().values

    def quantize(self, w: Tensor, bits: int) -> Tensor:
        if bits >= FLOAT_BITS:
            return w
        with torch.no_grad():
            return nearest(w.detach(), self.levels(w, bits)).to(w.dtype)

    def storage(self, shape: Sequence[int], bits: int) -> Storage:
        """b bits per weight, the layer's table (2^b levels of level_bits) and its scale."""
        if bits >= FLOAT_BITS:
            return Storage(numel(shape) * FLOAT_BITS)
        lb = self.config.level_bits
        return Storage(numel(shape) * bits, table_bits=2 ** bits * lb,
                       scale_bits=0 if lb >= FLOAT_BITS else self.config.scale_bits)

    def compute(self, bits: int) -> Compute:
        """A table lookup, then a multiply by the level_bits-bit level."""
        if bits >= FLOAT_BITS:
            return Compute(ComputeKind.MULTIPLY)
        return Compute(ComputeKind.LOOKUP, operand_bits=self.config.level_bits)
