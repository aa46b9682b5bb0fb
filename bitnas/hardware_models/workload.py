"""Workload extraction: one forward pass with hooks gives each layer's MACs and sizes."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping

import torch
from torch import nn

from bitnas.hardware_models.base import LayerWorkload
from bitnas.plan import split_member


def _macs(module: nn.Module, out: torch.Tensor) -> int:
    out_elems = out[0].numel()  # batch 1
    if isinstance(module, nn.Conv1d | nn.Conv2d):
        fan_in = (module.in_channels // module.groups) * math.prod(module.kernel_size)
        return out_elems * fan_in
    if isinstance(module, nn.Linear):
        return out_elems * module.in_features
    raise TypeError(type(module).__name__)


@torch.no_grad()
def neuron_state_elems(model: nn.Module, example: torch.Tensor,
                       neurons: Mapping[str, list[str]]) -> dict[str, int]:
    """Group -> membrane potentials its spiking neurons hold (per sample, per step)."""
    counts = {g: 0 for g in neurons}
    modules = dict(model.named_modules())
    handles = []

    def hook(group: str):
        def fn(module: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            counts[group] += out[0].numel()  # [T, 1, ...] -> one step of one sample

        return fn

    for g, names in neurons.items():
        for name in names:
            handles.append(modules[name].register_forward_hook(hook(g)))
    try:
        model.eval()
        model(example)
    finally:
        for h in handles:
            h.remove()
    return counts


def with_state(workload: list[LayerWorkload], state: Mapping[str, int]) -> list[LayerWorkload]:
    """Attach each group's membrane count to the group's first layer."""
    out, seen = [], set()
    for w in workload:
        if w.group in state and w.group not in seen:
            seen.add(w.group)
            w = dataclasses.replace(w, state_elems=state[w.group])
        out.append(w)
    return out


@torch.no_grad()
def extract_workload(
    model: nn.Module, example: torch.Tensor, groups: Mapping[str, list[str]]
) -> list[LayerWorkload]:
    """Per grouped layer, in execution order: MACs, weights, input and output elements.

    ``example`` is one input with a batch dimension of 1. Figures are per sample and
    per time step; ``timesteps`` is how often the layer runs in one inference (the
    leading dimension of its output, which multi-step spiking layers give as T).
    A group member ``name[a:b]`` owns output rows a..b of a fused layer and gets
    that share of its work.
    """
    members: dict[str, list[tuple[str, slice | None]]] = {}
    for g, names in groups.items():
        for member in names:
            name, rows = split_member(member)
            members.setdefault(name, []).append((g, rows))
    modules = dict(model.named_modules())
    records: list[LayerWorkload] = []
    handles = []

    def hook(name: str):
        def fn(module: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            bias = getattr(module, "bias", None)
            n_out = module.weight.shape[0]
            for group, rows in members[name]:
                share = 1.0 if rows is None else (rows.stop - rows.start) / n_out
                records.append(
                    LayerWorkload(
                        name=name if rows is None else f"{name}[{rows.start}:{rows.stop}]",
                        kind=type(module).__name__.lower() if isinstance(module, nn.Conv1d | nn.Conv2d)
                        else "linear",
                        macs=round(_macs(module, out) * share),
                        params=round(module.weight.numel() * share),
                        weight_shape=(n_out if rows is None else rows.stop - rows.start,
                                      *module.weight.shape[1:]),
                        in_elems=inputs[0][0].numel(),
                        out_elems=round(out[0].numel() * share),
                        group=group,
                        bias_params=0 if bias is None else round(bias.numel() * share),
                        timesteps=out.shape[0] if out.dim() > 1 else 1,
                    )
                )

        return fn

    for name in members:
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
