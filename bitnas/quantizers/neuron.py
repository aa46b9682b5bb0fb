"""Spiking neurons whose membrane potential is held in a v_bits-wide register.

The charge is computed at full precision (the accumulator); the potential carried
from one time step to the next is rounded to a signed fixed-point grid whose step
is v_threshold / 2^(v_bits-2), so the range is [-2, 2) thresholds and the
threshold itself sits exactly on the grid. This changes the spikes the network
produces, not only what the cost model is told.
"""

from __future__ import annotations

import torch
from spikingjelly.activation_based import base, neuron
from torch import Tensor

from bitnas.plan import FLOAT_BITS


def quantize_membrane(v: Tensor, bits: int, v_threshold: float) -> Tensor:
    """``v`` on the ``bits``-bit grid of a register scaled to the threshold (STE)."""
    if bits >= FLOAT_BITS or not isinstance(v, Tensor):
        return v
    step = v_threshold / 2 ** (bits - 2)
    q = torch.clamp(torch.round(v / step), -(2 ** (bits - 1)), 2 ** (bits - 1) - 1) * step
    return v + (q - v).detach()


class QuantLIFNode(neuron.LIFNode):
    """SpikingJelly's LIF neuron with its stored membrane potential quantized to v_bits."""

    def __init__(self, *args, v_bits: int = FLOAT_BITS, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.v_bits = v_bits

    @classmethod
    def from_lif(cls, node: neuron.LIFNode, v_bits: int) -> QuantLIFNode:
        return cls(tau=node.tau, decay_input=node.decay_input, v_threshold=node.v_threshold,
                   v_reset=node.v_reset, surrogate_function=node.surrogate_function,
                   detach_reset=node.detach_reset, step_mode=node.step_mode,
                   store_v_seq=node.store_v_seq, v_bits=v_bits)

    def single_step_functional_forward(self, inputs, states, **kwargs):
        outputs, (v, *rest) = super().single_step_functional_forward(inputs, states, **kwargs)
        return outputs, (quantize_membrane(v, self.v_bits, self.v_threshold), *rest)

    def multi_step_functional_forward(self, inputs, states, **kwargs):
        # LIFNode's fused kernel keeps v inside; SpikingJelly's generic loop over
        # single steps lets every stored potential pass through the register above
        return base.MemoryModule.multi_step_functional_forward(self, inputs, states, **kwargs)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, v_bits={self.v_bits}"
