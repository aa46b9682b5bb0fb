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
    #: the weight's index looks up its value in a level table (or its sub-vector in a
    #: codebook), then a multiply-accumulate on the value looked up
    LOOKUP = "lookup"


def _positive(value: object, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise BitnasError(f"compute {what} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class Compute:
    """The operation per weight use, repeated over ``passes`` independent passes.

    A series expansion of the weight into k terms runs k passes, each at the stated
    bits; with the activation expanded into ``act_terms`` terms too, it runs k x
    act_terms passes (``passes`` counts them all), and each activation element is held
    as ``act_terms`` terms of the group's a bits. ``operand_bits`` is the width of the
    weight operand the multiplier sees when that is not the stored code's: a looked-up
    level or codeword value (None: the weight bits).
    """

    kind: ComputeKind
    passes: int = 1
    operand_bits: int | None = None
    act_terms: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.kind, ComputeKind):
            raise BitnasError(f"compute kind must be a ComputeKind, got {self.kind!r}")
        _positive(self.passes, "passes")
        _positive(self.act_terms, "act_terms")
        if self.operand_bits is not None:
            _positive(self.operand_bits, "operand_bits")
        if self.passes % self.act_terms:
            raise BitnasError(f"compute passes ({self.passes}) must count every weight term times "
                              f"each of the {self.act_terms} activation terms")

    def on_spikes(self) -> Compute:
        """The compute on a 0/1 (spike) input: its activation terms are the spike itself, so
        only the weight terms' passes remain."""
        return Compute(self.kind, self.passes // self.act_terms, self.operand_bits)

    def operand(self, w_bits: int) -> int:
        """The multiplier's weight operand width for a ``w_bits`` code."""
        return w_bits if self.operand_bits is None else self.operand_bits


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
