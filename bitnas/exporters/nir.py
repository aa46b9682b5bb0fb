"""``--format nir``: a spiking candidate as a Neuromorphic Intermediate Representation graph
(the ``nir`` package's HDF5 file), for the simulators and chips that read NIR (snnTorch,
Norse, Lava, SpiNNaker2, Speck, Xylo).

One file, ``trial<N>.nir`` (``candidate.nir`` without a trial number). The network is
walked in execution order and written as a chain ``input -> ... -> output`` of NIR nodes,
one per op, named after the model's modules:

- a convolution (with the BatchNorm after it folded in: weight x gamma / sqrt(var + eps),
  bias (b - mean) x gamma / sqrt(var + eps) + beta) -> ``Conv2d``; a linear layer ->
  ``Affine``. The weights are the quantized values the search measured (dequantized:
  NIR holds float tensors); each node's ``metadata`` holds its group, weight bits, scheme
  and activation bits;
- SpikingJelly's ``LIFNode`` (``decay_input``, hard reset to 0) -> ``LIF`` with
  ``tau = tau_sj x dt``, ``r = 1``, ``v_leak = 0``, ``v_reset = 0`` and the same threshold;
  ``dt`` is :data:`DT`, 1e-4 s, the step snnTorch's importer assumes. One NIR step is one
  SpikingJelly step: ``v += (dt / tau)(r I - v)`` is SpikingJelly's ``v += (x - v) / tau``;
- ``AvgPool2d`` -> ``AvgPool2d``; ``Flatten`` -> ``Flatten`` (per sample: start_dim 0).

The graph's ``metadata`` holds the candidate, the trial and its metrics, the time steps,
the encoding, ``dt``, the read-out (the logits are the mean of the output over the T steps)
and, where the first layer quantizes its input, that grid (``bitnas.input_grid``: bits,
scale, zero point): NIR has no quantizer node, so a reader feeds frames already on that
grid, as bitnas's model sees them. Every later layer takes spikes, which any grid holds
exactly.

What NIR cannot express is refused in one line naming the op: a network that is not
spiking (use ``--format onnx``), spike-times-spike attention (Spikformer's and the Spike-driven
Transformer's: no NIR primitive), quantized membranes (``v_bits`` < 32: NIR's LIF holds a
float membrane), a quantized input to a layer fed by anything but spikes, and any other op
without a NIR node (MaxPool, residual adds).

Agreement (``tests/exporters/test_nir.py``): snnTorch's ``import_from_nir`` reads the file;
its per-step output, averaged over T, equals bitnas's quantized model exactly on the same
on-grid frames (every validation sample of digits and event digits). A membrane within float
rounding of the threshold could still fire in one and not the other (SpikingJelly fires at
``>=``, snnTorch at ``>``); none did.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy
import torch
from torch import Tensor, nn

from bitnas.atomic import atomic_write
from bitnas.errors import BitnasError
from bitnas.exporters.base import ExportItem
from bitnas.plan import FLOAT_BITS
from bitnas.quantizers.fakequant import FakeQuantLayer
from bitnas.registry import EXPORTERS

#: the simulation step the file assumes (snnTorch's importer hard-codes it)
DT = 1e-4
#: module class names of the spiking attentions (spike-times-spike products)
_ATTENTION = ("SSA", "SDSA", "Attention", "SpikingSelfAttention")


def _nir() -> Any:
    try:
        import nir
    except ImportError:
        raise BitnasError("--format nir needs the nir package: pip install nir "
                          "(or pip install 'bitnas[export]')") from None
    return nir


def _leaves(module: nn.Module, prefix: str) -> Iterator[tuple[str, nn.Module]]:
    """The ops of a chain of ``nn.Sequential`` in execution order."""
    if isinstance(module, nn.Sequential):
        for name, child in module.named_children():
            yield from _leaves(child, f"{prefix}.{name}" if prefix else name)
    else:
        yield prefix, module


def _is_lif(m: nn.Module) -> bool:
    return hasattr(m, "v_threshold") and hasattr(m, "tau")


def _refuse_unexpressible(model: nn.Module) -> None:
    for name, m in model.named_modules():
        cls = type(m).__name__
        if any(cls.endswith(a) for a in _ATTENTION):
            raise BitnasError(f"op {name} ({cls}): spike-times-spike attention has no NIR primitive; "
                              "export spiking transformers with --format torch, or search the "
                              "spiking_cnn space for NIR")


def _per_sample_inputs(model: nn.Module, example: Tensor, names: list[str]) -> dict[str, tuple[int, ...]]:
    """Op name -> the shape of one sample's input at one step."""
    from spikingjelly.activation_based import functional

    shapes: dict[str, tuple[int, ...]] = {}
    modules = dict(model.named_modules())
    handles = []
    for name in names:
        def hook(m: nn.Module, inputs: tuple[Tensor, ...], out: Tensor, name: str = name) -> None:
            shapes[name] = tuple(inputs[0].shape[2:])  # [T, B, ...] -> one step of one sample
        handles.append(modules[name].register_forward_hook(hook))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
        functional.reset_net(model)
        model.train(was_training)
    return shapes


def _weight(fq: FakeQuantLayer) -> tuple[Tensor, Tensor | None]:
    """The layer's quantized weight (every row range's part in place) and its bias."""
    layer = fq.layer
    w = torch.empty_like(layer.weight, dtype=torch.float64)
    bias = None if layer.bias is None else torch.empty_like(layer.bias, dtype=torch.float64)
    with torch.no_grad():
        for i, rows in enumerate(fq.parts):
            wq, b = fq.quantized(i)
            sl = slice(None) if rows is None else rows
            w[sl] = wq.double()
            if bias is not None and b is not None:
                bias[sl] = b.double()
    return w, bias


def _fold(w: Tensor, bias: Tensor | None, bn: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """(weight, bias) of conv followed by the BatchNorm in eval mode (float64, then float32)."""
    with torch.no_grad():
        scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
        b = torch.zeros(w.shape[0], dtype=torch.float64) if bias is None else bias
        shift = (b - bn.running_mean.double()) * scale + bn.bias.double()
        return w * scale.reshape(-1, *([1] * (w.dim() - 1))), shift


def _layer_meta(fq: FakeQuantLayer, group: str) -> dict[str, Any]:
    lqs = fq.lqs
    return {"group": group, "w_bits": ",".join(str(lq.w_bits) for lq in lqs),
            "scheme": ",".join(lq.quantizer for lq in lqs),
            "a_bits": ",".join(str(a.bits) for a in fq.acts)}


def _input_grid(fq: FakeQuantLayer, name: str, fed_spikes: bool) -> dict[str, Any] | None:
    """The first layer's input grid (for the metadata), or None; refuses a grid elsewhere."""
    grids = []
    for act in fq.acts:
        if act.bits >= FLOAT_BITS:
            continue
        if type(act).__name__ != "ActivationQuantizer":
            raise BitnasError(f"layer {name}: its {type(act).__name__} activation quantizer has no NIR form; "
                              "--format nir takes bitnas's min/max activation grid")
        if not act.calibrated:
            raise BitnasError(f"layer {name}: its activation quantizer was never calibrated")
        if fed_spikes and not bool(act.binary):
            raise BitnasError(f"layer {name}: its input quantizer was calibrated on values other than "
                              "spikes, so it may round what NIR passes unchanged")
        scale, zp = act.qparams()
        grids.append({"bits": act.bits, "scale": float(scale), "zero_point": int(zp)})
    if not grids or fed_spikes:  # spikes pass a calibrated-binary quantizer unchanged
        return None
    if any(g != grids[0] for g in grids):
        raise BitnasError(f"layer {name}: its row ranges quantize the input on different grids; "
                          "NIR's input takes one")
    return grids[0]


@EXPORTERS.register("nir")
class NirExporter:
    """NIR graph of a spiking network (see the module docstring)."""

    description = "NIR graph (HDF5) of a spiking CNN (LIF, quantized conv/affine) for snnTorch, Norse, Lava"

    def __init__(self) -> None:
        _nir()  # a missing package before any work

    def export(self, item: ExportItem, out_dir: Path) -> list[Path]:
        nir = _nir()
        graph = self.graph(item)
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / (f"trial{item.trial}.nir" if item.trial is not None else "candidate.nir")
        atomic_write(path, lambda p: nir.write(p, graph))
        return [path]

    def graph(self, item: ExportItem) -> Any:
        """The candidate's NIR graph (a chain of the model's ops)."""
        nir = _nir()
        model = item.model
        if not getattr(item.space, "spiking", False) or not hasattr(model, "net"):
            raise BitnasError(f"space {getattr(item.space, 'name', '?')} is not a spiking network: NIR "
                              "holds spiking networks; export it with --format onnx or torch")
        _refuse_unexpressible(model)
        group_of = {member: g for g, members in item.groups.items() for member in members}
        ops = [(f"net.{n}", m) for n, m in _leaves(model.net, "")
               if not isinstance(m, nn.Identity | nn.Dropout)]
        if not ops:
            raise BitnasError("the model has no ops to export")
        shapes = _per_sample_inputs(model, item.space.example_input(), [n for n, _ in ops])
        nodes: dict[str, Any] = {}
        edges: list[tuple[str, str]] = []
        input_grid = None
        prev, fed_spikes, i = "input", False, 0
        while i < len(ops):
            name, m = ops[i]
            if name not in shapes:
                raise BitnasError(f"op {name} ({type(m).__name__}) never ran on an example input; "
                                  "--format nir writes a chain of ops")
            if isinstance(m, FakeQuantLayer):
                grid = _input_grid(m, name, fed_spikes)
                if grid is not None:
                    if i > 0:
                        raise BitnasError(f"layer {name}: its input is quantized to a {grid['bits']}-bit "
                                          "grid and is not spikes; NIR has no quantizer node (only the first "
                                          "layer's input grid can be stated, in the metadata)")
                    input_grid = grid
                bn = ops[i + 1] if i + 1 < len(ops) and isinstance(ops[i + 1][1], nn.BatchNorm2d) else None
                node = _weighted(nir, name, m, bn, shapes[name], group_of.get(name, ""))
                i += 1 if bn else 0
                fed_spikes = False
            elif _is_lif(m):
                node = _lif(nir, name, m, shapes[name], group_of.get(name, ""))
                fed_spikes = True
            elif isinstance(m, nn.AvgPool2d):
                node = nir.AvgPool2d(kernel_size=_pair(m.kernel_size),
                                     stride=_pair(m.stride or m.kernel_size), padding=_pair(m.padding))
                fed_spikes = False
            elif isinstance(m, nn.Flatten):  # flattening keeps spikes spikes
                if m.start_dim != 1 or m.end_dim != -1:
                    raise BitnasError(f"op {name}: a partial Flatten has no NIR form here")
                node = nir.Flatten(input_type={"input": numpy.array(shapes[name])}, start_dim=0, end_dim=-1)
            else:
                raise BitnasError(f"op {name}: a {type(m).__name__} has no NIR node; --format nir takes "
                                  "conv/linear (+ BatchNorm), LIF, AvgPool2d and Flatten")
            key = name.removeprefix("net.")
            nodes[key] = node
            edges.append((prev, key))
            prev = key
            i += 1
        nodes["input"] = nir.Input(input_type={"input": numpy.array(shapes[ops[0][0]])})
        nodes["output"] = nir.Output(output_type={"output": numpy.array([item.space.num_classes])})
        edges.append((prev, "output"))
        metadata = {
            "bitnas.candidate": "" if item.candidate is None else item.candidate.to_json(),
            "bitnas.trial": "" if item.trial is None else str(item.trial),
            "bitnas.metrics": json.dumps(dict(item.metrics or {})),
            "bitnas.task": item.task,
            "bitnas.time_steps": int(model.steps),
            "bitnas.encoding": "events" if model.events else str(model.encoding),
            "bitnas.dt": DT,
            "bitnas.readout": "logits = mean over the T steps of the output node",
            "bitnas.input_grid": json.dumps(input_grid) if input_grid else "",
        }
        return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)


def _pair(v: Any) -> numpy.ndarray:
    return numpy.array(v if isinstance(v, tuple | list) else (v, v))


def _weighted(nir: Any, name: str, m: FakeQuantLayer, bn: tuple[str, nn.Module] | None,
              shape: tuple[int, ...], group: str) -> Any:
    """A Conv2d or Affine node of the layer's quantized weights, the BatchNorm after it folded."""
    meta = _layer_meta(m, group)
    w, bias = _weight(m)
    if bn is not None:
        w, bias = _fold(w, bias, bn[1])
        meta["folded"] = bn[0]
    b = numpy.zeros(w.shape[0], numpy.float32) if bias is None else bias.float().numpy()
    layer = m.layer
    if isinstance(layer, nn.Conv2d):
        return nir.Conv2d(input_shape=tuple(shape[-2:]), weight=w.float().numpy(), stride=layer.stride,
                          padding=layer.padding, dilation=layer.dilation, groups=layer.groups, bias=b,
                          metadata=meta)
    if isinstance(layer, nn.Linear):
        return nir.Affine(weight=w.float().numpy(), bias=b, metadata=meta)
    raise BitnasError(f"layer {name}: a {type(layer).__name__} has no NIR node here; --format nir takes "
                      "Conv2d and Linear layers")


def _lif(nir: Any, name: str, m: nn.Module, shape: tuple[int, ...], group: str) -> Any:
    """NIR's LIF for SpikingJelly's (see the module docstring for the mapping)."""
    if type(m).__name__ != "LIFNode":
        raise BitnasError(f"op {name}: a {type(m).__name__} (a membrane quantized to fewer than 32 bits, "
                          "or another neuron) has no NIR node; NIR's LIF holds a float membrane: search "
                          "v_bits = 32 for NIR, or export with --format torch")
    if not m.decay_input or m.v_reset is None or float(m.v_reset) != 0.0:
        raise BitnasError(f"op {name}: only a LIF with decay_input and a hard reset to 0 maps onto NIR's LIF")

    def full(value: float) -> numpy.ndarray:
        return numpy.full(shape, value, numpy.float32)

    return nir.LIF(tau=full(float(m.tau) * DT), r=full(1.0), v_leak=full(0.0),
                   v_threshold=full(float(m.v_threshold)), v_reset=full(0.0),
                   metadata={"group": group, "tau_steps": float(m.tau)})
