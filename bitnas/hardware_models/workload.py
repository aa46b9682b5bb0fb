"""Workload extraction: one forward pass with hooks gives each layer's MACs and sizes."""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from bitnas.hardware_models.base import LayerWorkload


def _macs(module: nn.Module, out: torch.Tensor) -> int:
    out_elems = out[0].numel()  # batch 1
    if isinstance(module, nn.Conv2d):
        fan_in = (module.in_channels // module.groups) * math.prod(module.kernel_size)
        return out_elems * fan_in
    if isinstance(module, nn.Linear):
        return out_elems * module.in_features
    raise TypeError(type(module).__name__)


@torch.no_grad()
def extract_workload(
    model: nn.Module, example: torch.Tensor, groups: Mapping[str, list[str]]
) -> list[LayerWorkload]:
    """Per grouped layer, in execution order: MACs, weights, input and output elements.

    ``example`` is one input with a batch dimension of 1.
    """
    group_of = {name: g for g, names in groups.items() for name in names}
    modules = dict(model.named_modules())
    records: list[LayerWorkload] = []
    handles = []

    def hook(name: str):
        def fn(module: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            bias = getattr(module, "bias", None)
            records.append(
                LayerWorkload(
                    name=name,
                    kind="conv2d" if isinstance(module, nn.Conv2d) else "linear",
                    macs=_macs(module, out),
                    params=module.weight.numel(),
                    in_elems=inputs[0][0].numel(),
                    out_elems=out[0].numel(),
                    group=group_of[name],
                    bias_params=0 if bias is None else bias.numel(),
                )
            )

        return fn

    for name in group_of:
        handles.append(modules[name].register_forward_hook(hook(name)))
    was_training = model.training
    model.eval()
    try:
        model(example)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return records
