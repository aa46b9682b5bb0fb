"""Post-training quantization: fake-quantize per the plan, calibrate activations."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from bitnas.plan import QuantPlan
from bitnas.quantizers import fake_quantize, weights_fixed


@torch.no_grad()
def calibrate(qmodel: nn.Module, batches: list[Tensor]) -> nn.Module:
    """Record each activation quantizer's range (and any other module's with an
    ``observing`` flag, such as a quantized scan state) over ``batches`` (float upstream)."""
    # every fake-quant layer's activation quantizers, and any other module that calibrates a range
    # (a quantized scan state): they all declare ``observing``
    acts = [m for m in qmodel.modules() if hasattr(m, "observing")]
    for a in acts:
        a.observing = True
    qmodel.eval()
    with weights_fixed(qmodel):
        for x in batches:
            qmodel(x)
    for a in acts:
        a.observing = False
    return qmodel


def calibration_batches(x: Tensor, n_batches: int, batch_size: int, seed: int) -> list[Tensor]:
    """A fixed, seeded sample of training inputs for calibration."""
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(x), generator=gen)[: n_batches * batch_size]
    return [x[order[i : i + batch_size]] for i in range(0, len(order), batch_size)]


def ptq(
    model: nn.Module,
    plan: QuantPlan,
    groups: Mapping[str, list[str]],
    calib: list[Tensor],
    neurons: Mapping[str, list[str]] | None = None,
) -> nn.Module:
    """A calibrated fake-quant copy of ``model`` under ``plan``; ``model`` is untouched.

    ``neurons`` (spiking spaces) names the neurons whose membrane takes each group's v_bits.
    """
    return calibrate(fake_quantize(model, plan, groups, neurons), calib)
