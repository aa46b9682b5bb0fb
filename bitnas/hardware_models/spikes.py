"""Measured spiking activity: SpikingJelly's op counters, attributed to bitnas's ops.

SpikingJelly decides per operation, from the actual tensors, whether an op did dense
multiply-accumulates (no operand is binary: MACCounter) or accumulates (ACCounter: a
spike times a weight row or another activation, that is a synaptic op, and element-wise
adds: of two spike tensors one per spike, else one per element); bitnas only maps its
scopes to ops and turns counts into per-op rates: rate = counted ops / (T * static ops
per step), the activity the energy conventions charge. A layer's counts are those of its
module's scope; an op inside a module's own forward (an attention's products, a block's
residual adds) gets the counts of that scope less its children's, split by aten operation
(``MEASURED_OPS``). Pools and norms keep their static counts (SpikingJelly counts average
pools densely, as bitnas does, and max-pools not at all). Spiking neurons and BatchNorm
are not counted here: neurons are charged by their state, BatchNorm folds into weights.
For the models that route spikes it also records, per layer, the share of inputs that
spike, which differs from the rate where padding drops border products.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch import nn

from bitnas.hardware_models.base import LayerWorkload
from bitnas.plan import split_member

#: the aten operations of products: convolutions, linear layers, matmuls (not BatchNorm, not adds)
LAYER_OPS = frozenset({"convolution", "mm", "addmm", "bmm", "baddbmm", "linear"})
#: element-wise adds and subtracts (residual connections)
ELTWISE_OPS = frozenset({"add", "add_", "sub", "sub_", "rsub"})
#: the aten operations whose counts measure an op of each kind (pools and norms: none)
MEASURED_OPS = {
    "conv1d": LAYER_OPS, "conv2d": LAYER_OPS, "linear": LAYER_OPS,
    # the Spike-driven Transformer's attention sums its k * v products over the tokens
    "matmul": LAYER_OPS | {"sum"},
    "eltwise": ELTWISE_OPS,
}


def _aten_name(op: object) -> str:
    """'aten.bmm.default' -> 'bmm'."""
    parts = str(op).split(".")
    return parts[1] if len(parts) > 2 else parts[-1]


def _scope_total(counts: dict, scope: str, ops: frozenset[str]) -> float:
    return float(sum(n for op, n in counts.get(scope, {}).items() if _aten_name(op) in ops))


def _own_total(counts: dict, scope: str, children: Sequence[str], ops: frozenset[str]) -> float:
    """What a module's own forward counted: its scope less its children's."""
    return _scope_total(counts, scope, ops) - sum(
        _scope_total(counts, f"{scope}.{c}", ops) for c in children)


@torch.no_grad()
def measure_activity(model: nn.Module, x: torch.Tensor,
                     workload: Sequence[LayerWorkload]) -> list[LayerWorkload]:
    """``workload`` with each measured op's rate on the batch ``x``.

    A layer or matmul whose operands SpikingJelly found dense keeps ``in_spike_rate =
    None``; an element-wise op's rate is its counted adds per element (up to 2 where both
    operands are spike tensors); counts are averaged over the batch. Row-sliced layers
    (fused q/k/v) share their module's counts by rows, which is exact: every row sees the
    same input.
    """
    from spikingjelly.activation_based.neuron import BaseNode
    from spikingjelly.activation_based.op_counter import (
        ACCounter,
        DispatchCounterMode,
        MACCounter,
    )

    ignore = [BaseNode, nn.modules.batchnorm._BatchNorm]
    mac, acc = MACCounter(extra_ignore_modules=ignore), ACCounter(extra_ignore_modules=ignore)
    nonzero: dict[str, list[float]] = {}

    def record(name: str):
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            nonzero.setdefault(name, []).append(float((inputs[0] != 0).float().mean()))

        return hook

    modules = {_module(w) for w in workload if w.weighted}
    handles = [model.get_submodule(m).register_forward_pre_hook(record(m)) for m in modules]
    was_training = model.training
    model.eval()
    try:
        with DispatchCounterMode([mac, acc]):
            model(x)
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    macs, accs = mac.get_counts(), acc.get_counts()
    prefix = type(model).__name__
    batch = x.shape[0]
    out = []
    for w in workload:
        ops = MEASURED_OPS.get(w.kind)
        if ops is None or w.folded:
            out.append(w)
            continue
        module = _module(w)
        scope = f"{prefix}.{module}" if module else prefix
        if scope not in macs and scope not in accs:
            raise RuntimeError(f"SpikingJelly's counters saw no operation of {module}; "
                               "the model's module names have changed")
        possible = w.timesteps * max(1, w.macs)
        if w.weighted:
            share = 1.0 if w.name == module else w.params / max(1, _params_of(model, module))
            dense = _scope_total(macs, scope, ops) * share / batch
            events = _scope_total(accs, scope, ops) * share / batch
        else:
            children = [c for c, _ in model.get_submodule(module).named_children()]
            dense = _own_total(macs, scope, children, ops) / batch
            events = _own_total(accs, scope, children, ops) / batch
        if w.kind == "eltwise":  # an add is an add: SpikingJelly counts dense ones per element
            out.append(dataclasses.replace(w, in_spike_rate=events / possible))
            continue
        rate = None if dense > 0 else events / possible
        fraction = None
        if rate is not None and w.weighted:
            fraction = sum(nonzero[module]) / len(nonzero[module])
        out.append(dataclasses.replace(w, in_spike_rate=rate, in_spike_fraction=fraction))
    return out


def _module(w: LayerWorkload) -> str:
    """The module an op belongs to (a hand-made workload names it in ``name``)."""
    return w.module or split_member(w.name)[0]


def _params_of(model: nn.Module, module: str) -> int:
    layer = model.get_submodule(module)
    return getattr(layer, "layer", layer).weight.numel()  # a FakeQuantLayer wraps the layer
