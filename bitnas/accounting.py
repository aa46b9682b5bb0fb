"""What a quantized weight tensor asks of the hardware: its storage and its compute kind.

This is the vocabulary quantizers and cost models share (neither imports the
other): a :class:`~bitnas.quantizers.Quantizer` reports a :class:`Storage` for a
tensor shape and a :class:`Compute` for its bits, and every hardware model prices
them, or refuses a kind it cannot price with a one-line error. A cost model never
assumes "b bits per weight, one multiply" for a scheme that says otherwise.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from bitnas.errors import BitnasError


class ComputeKind(enum.Enum):
    """How the hardware applies one stored weight to an activation."""

    #: an integer (or float, at 32 bits) multiply, then an accumulate
    MULTIPLY = "multiply"
    #: a shift by the weight's exponent (power-of-two weights), then an accumulate
    SHIFT = "shift"
    #: the weight's index looks up its value in a level table, then a multiply-accumulate
    LOOKUP = "lookup"


@dataclass(frozen=True)
class Compute:
    """The operation per weight use, repeated over ``passes`` independent passes
    (a series expansion into k terms runs k passes, each at the stated bits)."""

    kind: ComputeKind
    passes: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.kind, ComputeKind):
            raise BitnasError(f"compute kind must be a ComputeKind, got {self.kind!r}")
        if isinstance(self.passes, bool) or not isinstance(self.passes, int) or self.passes < 1:
            raise BitnasError(f"compute passes must be a positive integer, got {self.passes!r}")


@dataclass(frozen=True)
class Storage:
    """Bits the hardware must hold for one weight tensor.

    ``element_bits`` are the per-element codes (numel x bits, or numel x k x b for k
    terms); ``scale_bits`` the scales and zero points (per channel or per tensor);
    ``table_bits`` the layer's own level tables. ``shared`` names structures that
    several layers, or several networks, share (a universal codebook): each is
    counted once per model however many layers use it, and a cost model may place
    it in ROM.
    """

    element_bits: int
    scale_bits: int = 0
    table_bits: int = 0
    shared: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("element_bits", "scale_bits", "table_bits"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise BitnasError(f"storage {name} must be a non-negative integer, got {v!r}")
        object.__setattr__(self, "shared", MappingProxyType(dict(self.shared)))

    @property
    def layer_bits(self) -> int:
        """What this tensor alone occupies (shared structures left out)."""
        return self.element_bits + self.scale_bits + self.table_bits
