"""How tensors become low-bit: weight schemes (registered) and fake-quant wrappers."""

from bitnas.quantizers.base import NoOptions, Quantizer, make_config
from bitnas.quantizers.fakequant import FakeQuantLayer, fake_quant_layers, fake_quantize, weights_fixed
from bitnas.quantizers.pot import PowerOfTwoQuantizer
from bitnas.quantizers.uniform import ActivationQuantizer, UniformQuantizer

__all__ = [
    "ActivationQuantizer",
    "FakeQuantLayer",
    "PowerOfTwoQuantizer",
    "NoOptions",
    "Quantizer",
    "UniformQuantizer",
    "fake_quant_layers",
    "fake_quantize",
    "make_config",
    "weights_fixed",
]
