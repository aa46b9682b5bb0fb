"""Fake-quantized stand-ins for Conv2d and Linear, and the function that swaps them in.

The wrapped layer computes exactly what the integer layer computes, in float:
inputs on the activation grid, weights on the weight grid, products summed
exactly (float32 holds these integer sums without rounding for the small layers
bitnas searches). Biases stay at 32 bits unless the scheme quantizes them with the
weights (``Quantizer.quantize_layer``: ai8x).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bitnas.errors import BitnasError
from bitnas.plan import FLOAT_BITS, LayerQuant, QuantPlan, split_member
from bitnas.quantizers.uniform import ActivationQuantizer
from bitnas.registry import QUANTIZERS

QUANTIZABLE = (nn.Conv1d, nn.Conv2d, nn.Linear)


def quantizable(module: nn.Module) -> bool:
    """A layer whose ``weight`` the fake-quant path can take over: a convolution, a linear
    layer, or any module with ``forward_with(weight, bias, *inputs)`` (a parameter another
    op reads, such as a selective scan's A and D: it returns what ``forward`` would, from the
    given weight)."""
    return isinstance(module, QUANTIZABLE) or hasattr(module, "forward_with")


def holds_state(module: nn.Module) -> bool:
    """A module whose recurrent state takes its group's ``v_bits``: it has
    ``with_state_bits(bits)``, which returns a copy that keeps its state at ``bits``."""
    return hasattr(module, "with_state_bits")


class FakeQuantLayer(nn.Module):
    """A Conv1d, Conv2d or Linear whose input and weights are fake-quantized.

    ``parts`` gives each row range of the output (None: all rows) its own
    LayerQuant, so a fused layer (Spikformer's q, k, v convolution) can hold groups
    at different precisions. Weights go through the scheme's quantizer with a
    straight-through gradient, so the same module serves PTQ and QAT. A multi-step
    spiking layer's [T, B, ...] input is folded to [T*B, ...] and back.
    """

    def __init__(self, layer: nn.Module, parts: list[tuple[slice | None, LayerQuant]]) -> None:
        super().__init__()
        if not quantizable(layer):
            raise TypeError(f"cannot fake-quantize {type(layer).__name__}")
        self.layer = layer
        self.parts = [rows for rows, _ in parts]
        self.lqs = [lq for _, lq in parts]
        self.weight_quantizers = [QUANTIZERS.create(lq.quantizer, **lq.options) for lq in self.lqs]
        self._cache: dict[int, tuple[tuple, tuple[Tensor, Tensor | None]]] = {}
        #: set by :func:`weights_fixed`: the weights do not change while it is
        self.fixed = False
        #: part index -> the scheme's learnable weight state, once fine-tuning starts
        self.trained = nn.ModuleDict()
        self.acts = nn.ModuleList(q.activation(lq.a_bits) or ActivationQuantizer(lq.a_bits)
                                  for q, lq in zip(self.weight_quantizers, self.lqs, strict=True))

    @property
    def act(self) -> ActivationQuantizer:
        return self.acts[0]

    @property
    def weight_quantizer(self):
        return self.weight_quantizers[0]

    def quantized(self, part: int = 0) -> tuple[Tensor, Tensor | None]:
        """The part's fake-quantized weight and bias, with straight-through gradients.

        Inside :func:`weights_fixed` (scoring, calibration) and without gradients, it is
        computed once and kept, so a scheme that fits levels or searches a codebook runs
        once, not once a batch; everywhere else it is computed on every call."""
        if not self.fixed or torch.is_grad_enabled():
            return self._quantized(part)
        key = tuple((id(t), t.data_ptr(), t._version) for t in (self.layer.weight, self.layer.bias)
                    if t is not None)
        hit = self._cache.get(part)
        if hit is None or hit[0] != key:
            hit = self._cache[part] = (key, self._quantized(part))
        return hit[1]

    def start_training(self) -> None:
        """Before fine-tuning: each part whose scheme keeps learnable state of its quantized
        weight (``Quantizer.trainable``) gets it, made from the current float weight."""
        for part, q in enumerate(self.weight_quantizers):
            if str(part) not in self.trained:
                rows = self.parts[part]
                w = self.layer.weight if rows is None else self.layer.weight[rows]
                module = q.trainable(w.detach(), self.lqs[part].w_bits)
                if module is not None:
                    self.trained[str(part)] = module

    def _quantized(self, part: int) -> tuple[Tensor, Tensor | None]:
        rows = self.parts[part]
        if str(part) in self.trained:  # the scheme's own learnable weight (QAT, then deployed)
            bias = self.layer.bias
            if bias is not None and rows is not None:
                bias = bias[rows]
            return self.trained[str(part)](), bias
        w = self.layer.weight if rows is None else self.layer.weight[rows]
        bias = self.layer.bias
        if bias is not None and rows is not None:
            bias = bias[rows]
        wq, bq = self.weight_quantizers[part].quantize_layer(w, bias, self.lqs[part].w_bits)
        if bias is not None and bq is not bias:
            bias = bias + (bq - bias).detach()
        return w + (wq - w).detach(), bias

    def quantized_weight(self, part: int = 0) -> Tensor:
        return self.quantized(part)[0]

    def _apply(self, x: Tensor, part: int) -> Tensor:
        w, bias = self.quantized(part)
        x = self.acts[part](x)
        if isinstance(self.layer, nn.Linear):
            return F.linear(x, w, bias)
        return self.layer._conv_forward(x, w, bias)

    def forward(self, *args: Tensor) -> Tensor:
        if not isinstance(self.layer, QUANTIZABLE):  # a parameter module: no input to quantize
            w, bias = self.quantized(0)
            return self.layer.forward_with(w, bias, *args)
        x = args[0]
        folded = isinstance(self.layer, nn.Conv1d | nn.Conv2d) and x.dim() == (
            4 if isinstance(self.layer, nn.Conv2d) else 3) + 1
        if folded:
            steps = x.shape[0]
            x = x.flatten(0, 1)
        channel_dim = -1 if isinstance(self.layer, nn.Linear) else 1
        outs = [self._apply(x, i) for i in range(len(self.parts))]
        y = outs[0] if len(outs) == 1 else torch.cat(outs, dim=channel_dim)
        return y.unflatten(0, (steps, -1)) if folded else y


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, module)


def fake_quantize(
    model: nn.Module,
    plan: QuantPlan,
    groups: Mapping[str, list[str]],
    neurons: Mapping[str, list[str]] | None = None,
) -> nn.Module:
    """Return a copy of ``model`` with every grouped layer replaced by a FakeQuantLayer.

    ``groups`` maps layer-group names (the plan's keys) to module names, where
    ``name[a:b]`` means output rows a..b of a fused layer; a member that holds recurrent
    state (:func:`holds_state`: a selective scan) takes its group's ``v_bits`` instead.
    ``neurons`` maps groups to the spiking neurons whose membrane takes the group's
    ``v_bits``. The copy's
    activation quantizers still need calibration (see ``bitnas.evaluators.ptq``).
    """
    missing = set(groups) - set(plan.layers)
    extra = set(plan.layers) - set(groups)
    if missing or extra:
        raise BitnasError(
            f"plan groups {sorted(plan.layers)} do not match the model's groups {sorted(groups)}"
        )
    qmodel = copy.deepcopy(model)
    parts: dict[str, list[tuple[slice | None, LayerQuant]]] = {}
    for group, members in groups.items():
        for member in members:
            name, rows = split_member(member)
            parts.setdefault(name, []).append((rows, plan[group]))
    for name, module_parts in parts.items():
        module = qmodel.get_submodule(name)
        if not quantizable(module) and holds_state(module):  # its group's bits are its state's
            v_bits = module_parts[0][1].v_bits
            if v_bits < FLOAT_BITS:
                _set(qmodel, name, module.with_state_bits(v_bits))
            continue
        module_parts.sort(key=lambda p: -1 if p[0] is None else p[0].start)
        _set(qmodel, name, FakeQuantLayer(module, module_parts))
    for group, names in (neurons or {}).items():
        v_bits = plan[group].v_bits
        if v_bits >= FLOAT_BITS:
            continue
        from bitnas.quantizers.neuron import QuantLIFNode

        for name in names:
            _set(qmodel, name, QuantLIFNode.from_lif(qmodel.get_submodule(name), v_bits))
    return qmodel


def fake_quant_layers(model: nn.Module) -> list[FakeQuantLayer]:
    return [m for m in model.modules() if isinstance(m, FakeQuantLayer)]


@contextlib.contextmanager
def weights_fixed(model: nn.Module) -> Iterator[nn.Module]:
    """While the model's weights stay as they are (scoring it, calibrating it), each fake-quant
    layer quantizes its weights once instead of once a batch; the kept weights are dropped
    on exit. Changing the weights inside is an error the cache would not see."""
    layers = fake_quant_layers(model)
    for layer in layers:
        layer.fixed = True
    try:
        yield model
    finally:
        for layer in layers:
            layer.fixed = False
            layer._cache.clear()
