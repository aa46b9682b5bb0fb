"""The quantizer contract: how a weight tensor becomes low-bit, and what storing it costs."""

from __future__ import annotations

from abc import ABC, abstractmethod

from torch import Tensor


class Quantizer(ABC):
    """A weight quantization scheme (registered by name in ``QUANTIZERS``)."""

    #: how the hardware applies such a weight: "multiply", or "shift" for powers of two
    mult_kind = "multiply"

    @abstractmethod
    def quantize(self, w: Tensor, bits: int) -> Tensor:
        """Return the fake-quantized (dequantized) tensor: same shape and dtype as ``w``."""

    def storage_bits(self, numel: int, bits: int) -> int:
        """Bits the hardware must hold for ``numel`` weights at ``bits`` each."""
        return numel * bits
