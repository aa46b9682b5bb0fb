"""Measured spiking activity: SpikingJelly's op counters, attributed to bitnas's layers.

SpikingJelly decides per operation, from the actual tensors, whether a layer did
dense multiply-accumulates (its input is not binary) or synaptic operations (a
spike times a weight row); bitnas only maps its scopes to layers and groups and
turns counts into per-layer input spike rates: rate = SynOps / (T * MACs per step),
the synaptic activity the energy conventions charge. It also records the share of
inputs that spike, which differs where padding drops border products, for the
models that route spikes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch import nn

from bitnas.hardware_models.base import LayerWorkload
from bitnas.plan import split_member

#: the aten operations of convolutions and linear layers (not BatchNorm, not adds)
LAYER_OPS = ("convolution", "addmm", "mm", "bmm", "linear")


def _layer_total(counts: dict, scope: str) -> float:
    return float(sum(n for op, n in counts.get(scope, {}).items()
                     if any(name in str(op) for name in LAYER_OPS)))


@torch.no_grad()
def measure_activity(model: nn.Module, x: torch.Tensor,
                     workload: Sequence[LayerWorkload]) -> list[LayerWorkload]:
    """``workload`` with each layer's measured input spike rate on the batch ``x``.

    A layer whose input SpikingJelly found dense keeps ``in_spike_rate = None``;
    counts are averaged over the batch. Row-sliced layers (fused q/k/v) share
    their module's counts by rows, which is exact: every row sees the same input.
    """
    from spikingjelly.activation_based.op_counter import (
        DispatchCounterMode,
        MACCounter,
        SynOpCounter,
    )

    mac, syn = MACCounter(), SynOpCounter()
    nonzero: dict[str, list[float]] = {}

    def record(name: str):
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            nonzero.setdefault(name, []).append(float((inputs[0] != 0).float().mean()))

        return hook

    modules = {split_member(w.name)[0] for w in workload}
    handles = [model.get_submodule(m).register_forward_pre_hook(record(m)) for m in modules]
    was_training = model.training
    model.eval()
    try:
        with DispatchCounterMode([mac, syn]):
            model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    macs, synops = mac.get_counts(), syn.get_counts()
    prefix = type(model).__name__
    batch = x.shape[0]
    out = []
    for w in workload:
        module, rows = split_member(w.name)
        scope = f"{prefix}.{module}"
        if scope not in macs and scope not in synops:
            raise RuntimeError(f"SpikingJelly's counters saw no operation of {module}; "
                               "the model's module names have changed")
        share = 1.0 if rows is None else w.params / max(1, _params_of(model, module))
        dense = _layer_total(macs, scope) * share / batch
        events = _layer_total(synops, scope) * share / batch
        rate = None if dense > 0 else events / (w.timesteps * w.macs)
        fraction = None if rate is None else sum(nonzero[module]) / len(nonzero[module])
        out.append(dataclasses.replace(w, in_spike_rate=rate, in_spike_fraction=fraction))
    return out


def _params_of(model: nn.Module, module: str) -> int:
    layer = model.get_submodule(module)
    return getattr(layer, "layer", layer).weight.numel()  # a FakeQuantLayer wraps the layer
