"""Fake-quantized stand-ins for Conv2d and Linear, and the function that swaps them in.

The wrapped layer computes exactly what the integer layer computes, in float:
inputs on the activation grid, weights on the weight grid, products summed
exactly (float32 holds these integer sums without rounding for the small layers
bitnas searches). Biases stay at 32 bits.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch.nn.functional as F
from torch import Tensor, nn

from bitnas.errors import BitnasError
from bitnas.plan import LayerQuant, QuantPlan
from bitnas.quantizers.uniform import ActivationQuantizer
from bitnas.registry import QUANTIZERS

QUANTIZABLE = (nn.Conv2d, nn.Linear)


class FakeQuantLayer(nn.Module):
    """A Conv2d or Linear whose input and weights are fake-quantized.

    Weights go through the scheme's quantizer with a straight-through gradient, so
    the same module serves PTQ and QAT.
    """

    def __init__(self, layer: nn.Module, lq: LayerQuant) -> None:
        super().__init__()
        if not isinstance(layer, QUANTIZABLE):
            raise TypeError(f"cannot fake-quantize {type(layer).__name__}")
        self.layer = layer
        self.lq = lq
        self.weight_quantizer = QUANTIZERS.create(lq.quantizer)
        self.act = ActivationQuantizer(lq.a_bits)

    def quantized_weight(self) -> Tensor:
        w = self.layer.weight
        wq = self.weight_quantizer.quantize(w, self.lq.w_bits)
        return w + (wq - w).detach()

    def forward(self, x: Tensor) -> Tensor:
        x = self.act(x)
        w = self.quantized_weight()
        if isinstance(self.layer, nn.Conv2d):
            return self.layer._conv_forward(x, w, self.layer.bias)
        return F.linear(x, w, self.layer.bias)


def fake_quantize(
    model: nn.Module, plan: QuantPlan, groups: Mapping[str, list[str]]
) -> nn.Module:
    """Return a copy of ``model`` with every grouped layer replaced by a FakeQuantLayer.

    ``groups`` maps layer-group names (the plan's keys) to module names. The copy's
    activation quantizers still need calibration (see ``bitnas.evaluators.ptq``).
    """
    missing = set(groups) - set(plan.layers)
    extra = set(plan.layers) - set(groups)
    if missing or extra:
        raise BitnasError(
            f"plan groups {sorted(plan.layers)} do not match the model's groups {sorted(groups)}"
        )
    qmodel = copy.deepcopy(model)
    for group, module_names in groups.items():
        for name in module_names:
            parent_name, _, attr = name.rpartition(".")
            parent = qmodel.get_submodule(parent_name) if parent_name else qmodel
            setattr(parent, attr, FakeQuantLayer(getattr(parent, attr), plan[group]))
    return qmodel


def fake_quant_layers(model: nn.Module) -> list[FakeQuantLayer]:
    return [m for m in model.modules() if isinstance(m, FakeQuantLayer)]
