"""``--format onnx``: the candidate as an ONNX graph in QDQ form, for onnxruntime and the
converters that read QDQ models (TensorRT, TFLite's, vendors' NPU compilers).

One file, ``trial<N>.onnx`` (``candidate.onnx`` without a trial number). Every quantized
layer's input passes through QuantizeLinear/DequantizeLinear with the scale and zero point
bitnas calibrated; every uniformly quantized weight is stored as its integer codes and a
DequantizeLinear (per output channel, zero point 0) in front of the layer:

- **Activations** of b bits: a Clip to the calibrated b-bit range, then QDQ on uint8 with
  bitnas's scale and zero point (uint8 holds every b-bit code; the Clip makes the top of
  the range b bits wide). Float activations (32 bits) get no QDQ.
- **Weights** (scheme ``uniform``): int4 codes (``TensorProto.INT4``, opset 21) for 1-4
  bits, int8 codes for 5-8 bits; every code lies in the scheme's symmetric b-bit range.
  Wider integer weights (9-16 bits) and other schemes (``pot``, ``nonuniform``, ``series``,
  ``codebook``) have no exact QDQ form here: their weights are stored as the dequantized
  float values the search measured, and their bits and scheme go into the metadata. Float
  weights stay float.
- **Metadata** (``metadata_props``): ``bitnas.candidate`` (the candidate's JSON),
  ``bitnas.trial``, ``bitnas.metrics``, and ``bitnas.layers``: per layer its group, bits,
  scheme and how its weights are stored (``int4``, ``int8``, ``dequantized``, ``float``).

The graph is traced with PyTorch's TorchScript exporter at opset 20 (the highest it
supports); where int4 weights are written, the default domain is raised to 21, whose only
changes to the operators used here are the 4-bit types. The batch axis is dynamic.

What cannot be expressed is refused in one line naming the layer: spiking networks
(SpikingJelly neurons: export them with ``--format torch``), activations wider than 8 bits,
activation quantizers other than
bitnas's min/max grid (``series`` activation terms, the ``ai8x`` fixed-point activations:
use ``--format ai8x``), and ops the exporter cannot trace.

Agreement with bitnas's fake-quant model (``tests/exporters/test_onnx.py``, digits'
validation batch): onnxruntime's logits match to float rounding (at most 2e-6) on every
sample but those where an input lands on an exact half step of its grid (x / scale =
127.5: a digit's pixel of 0.5 at 8 bits), a tie that onnxruntime's float32 arithmetic and
torch's may break differently: 2 of 288 samples in a mixed 2/4/8-bit plan, 0.006 apart.
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bitnas.atomic import atomic_write
from bitnas.errors import BitnasError
from bitnas.exporters.base import ExportItem
from bitnas.plan import FLOAT_BITS, split_member
from bitnas.quantizers.fakequant import FakeQuantLayer
from bitnas.quantizers.uniform import ActivationQuantizer
from bitnas.registry import EXPORTERS

#: the opset the tracer writes; raised to INT4_OPSET where int4 weights are stored
OPSET = 20
INT4_OPSET = 21
#: weights of at most this many bits are stored as int4 codes
INT4_MAX_BITS = 4
#: the widest codes QDQ holds here (int8 weights, uint8 activations); wider weights are
#: stored dequantized, wider activations refused
QDQ_MAX_BITS = 8


def _onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise BitnasError("--format onnx needs the onnx package: pip install onnx "
                          "(or pip install 'bitnas[export]')") from None
    return onnx


def _weight_codes(wq: Tensor, bits: int) -> tuple[Tensor, Tensor] | None:
    """(per-channel scale, integer codes) with codes x scale == ``wq`` (a symmetric b-bit
    grid, one step per output row), or None if ``wq`` is not on such a grid."""
    flat = wq.detach().reshape(wq.shape[0], -1)
    qmax = 1 if bits == 1 else 2 ** (bits - 1) - 1
    scale = (flat.abs().amax(dim=1) / qmax)
    scale = torch.where(scale > 0, scale, torch.ones_like(scale))
    ratio = flat / scale[:, None]
    codes = torch.round(ratio)
    # on the grid: each weight within float rounding of an integer step (relative to its own
    # channel's step: a recomputed step may be an ulp off the quantizer's)
    if codes.abs().max() > qmax or (ratio - codes).abs().max() > 1e-3:
        return None
    return scale, codes.reshape(wq.shape)


class _Part(nn.Module):
    """One row range of a layer: its input's QDQ (or none) and its weight (QDQ or constant)."""

    def __init__(self, fq: FakeQuantLayer, part: int, name: str) -> None:
        super().__init__()
        lq = fq.lqs[part]
        act = fq.acts[part]
        if type(act) is not ActivationQuantizer:
            raise BitnasError(f"layer {name}: its {lq.quantizer} activation quantizer "
                              f"({type(act).__name__}) has no QDQ form; --format onnx takes bitnas's "
                              "min/max activation grid (use --format ai8x for ai8x layers)")
        self.a_bits = act.bits
        if QDQ_MAX_BITS < act.bits < FLOAT_BITS:
            raise BitnasError(f"layer {name}: {act.bits}-bit activations; --format onnx writes QDQ "
                              f"activations of 1..{QDQ_MAX_BITS} bits (or float): choose a_bits <= 8")
        if act.bits < FLOAT_BITS:
            if not act.calibrated:
                raise BitnasError(f"layer {name}: its activation quantizer was never calibrated")
            scale, zp = act.qparams()
            self.a_scale, self.a_zero = float(scale), int(zp)
            self.a_lo = (0 - self.a_zero) * self.a_scale
            self.a_hi = (2**act.bits - 1 - self.a_zero) * self.a_scale
        with torch.no_grad():
            wq, bias = fq.quantized(part)
        self.register_buffer("weight", wq.detach().clone())
        self.register_buffer("bias", None if bias is None else bias.detach().clone())
        rows = fq.parts[part]
        self.rows = None if rows is None else (rows.start, rows.stop)
        self.storage = "float"
        self.w_bits = lq.w_bits
        self.scheme = lq.quantizer
        if lq.w_bits < FLOAT_BITS:
            exact = lq.quantizer == "uniform" and lq.w_bits <= QDQ_MAX_BITS
            grid = _weight_codes(wq, lq.w_bits) if exact else None
            if grid is None:
                self.storage = "dequantized"
            else:
                self.storage = "int4" if lq.w_bits <= INT4_MAX_BITS else "int8"
                self.register_buffer("w_scale", grid[0])

    def forward(self, x: Tensor, layer: nn.Module) -> Tensor:
        if self.a_bits < FLOAT_BITS:
            x = torch.clamp(x, self.a_lo, self.a_hi)
            x = torch.fake_quantize_per_tensor_affine(x, self.a_scale, self.a_zero, 0, 255)
        w = self.weight
        if self.storage in ("int4", "int8"):
            zeros = torch.zeros(w.shape[0], dtype=torch.int32)
            w = torch.fake_quantize_per_channel_affine(w, self.w_scale, zeros, 0, -128, 127)
        if isinstance(layer, nn.Linear):
            return F.linear(x, w, self.bias)
        return layer._conv_forward(x, w, self.bias)


class _QdqLayer(nn.Module):
    """A FakeQuantLayer as the exporter traces it."""

    def __init__(self, fq: FakeQuantLayer, name: str) -> None:
        super().__init__()
        if not isinstance(fq.layer, nn.Conv1d | nn.Conv2d | nn.Linear):
            raise BitnasError(f"layer {name}: a {type(fq.layer).__name__} has no ONNX export here; "
                              "--format onnx takes convolutions and linear layers")
        self.layer = fq.layer
        self.parts = nn.ModuleList(_Part(fq, i, name) for i in range(len(fq.parts)))

    def forward(self, x: Tensor) -> Tensor:
        outs = [p(x, self.layer) for p in self.parts]
        dim = -1 if isinstance(self.layer, nn.Linear) else 1
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=dim)


@contextlib.contextmanager
def deployable(model: nn.Module) -> Iterator[dict[str, _Part]]:
    """While inside, ``model``'s fake-quant layers are swapped for ones that trace to QDQ
    (restored on exit); yields the parts by the name of the weight initializer they write
    (``<layer>.parts.<i>.weight``)."""
    for name, m in model.named_modules():
        if type(m).__module__.startswith("spikingjelly") or hasattr(m, "v_threshold"):
            raise BitnasError(f"op {name or type(m).__name__}: a spiking {type(m).__name__} has no ONNX "
                              "form; export spiking networks with --format torch")
    swapped: list[tuple[nn.Module, str, nn.Module]] = []
    parts: dict[str, _Part] = {}
    was_training = model.training
    try:
        for name, m in list(model.named_modules()):
            if isinstance(m, FakeQuantLayer):
                if not name:
                    raise BitnasError("the model is one fake-quant layer; nothing to export around it")
                qdq = _QdqLayer(m, name)
                parent_name, _, attr = name.rpartition(".")
                parent = model.get_submodule(parent_name) if parent_name else model
                setattr(parent, attr, qdq)
                swapped.append((parent, attr, m))
                for i, p in enumerate(qdq.parts):
                    parts[f"{name}.parts.{i}.weight"] = p
        model.eval()
        yield parts
    finally:
        for parent, attr, m in reversed(swapped):
            setattr(parent, attr, m)
        model.train(was_training)


def _trace(model: nn.Module, example: Tensor) -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(model, (example,), buf, dynamo=False, opset_version=OPSET,
                              input_names=["input"], output_names=["logits"],
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
        except BitnasError:
            raise
        except Exception as e:  # the tracer names the op it could not express
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
            raise BitnasError(f"the model does not trace to ONNX: {first}") from None
    return buf.getvalue()


def _constants(graph: Any) -> dict[str, Any]:
    """Name -> numpy value of every initializer and Constant node's output."""
    from onnx import numpy_helper

    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attr.t)
    return values


def store_weight_codes(model: Any, parts: dict[str, _Part]) -> int:
    """Replace each QuantizeLinear over a weight initializer by the initializer of its codes
    (int4 or int8, as the part says), so the file holds integers; returns the opset used."""
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    values = _constants(graph)
    inits = {t.name: t for t in graph.initializer}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    drop, opset = [], OPSET
    for node in list(graph.node):
        if node.op_type != "QuantizeLinear" or node.input[0] not in parts:
            continue
        part = parts[node.input[0]]
        w, scale = values[node.input[0]], values[node.input[1]]
        shape = (-1,) + (1,) * (w.ndim - 1)
        codes = numpy.clip(numpy.round(w / scale.reshape(shape)), -128, 127).astype(numpy.int8)
        name = f"{node.input[0]}_codes"
        zero_name = f"{node.input[0]}_zero"
        if part.storage == "int4":
            opset = INT4_OPSET
            tensor = helper.make_tensor(name, TensorProto.INT4, codes.shape, codes.flatten().tolist())
            zero = helper.make_tensor(zero_name, TensorProto.INT4, [codes.shape[0]], [0] * codes.shape[0])
        else:
            tensor = numpy_helper.from_array(codes, name)
            zero = numpy_helper.from_array(numpy.zeros(codes.shape[0], numpy.int8), zero_name)
        graph.initializer.extend([tensor, zero])
        for dq in consumers.get(node.output[0], []):
            if dq.op_type != "DequantizeLinear":
                raise BitnasError(f"weight {node.input[0]}: its QuantizeLinear feeds {dq.op_type}, not a "
                                  "DequantizeLinear")
            dq.input[0], dq.input[2] = name, zero_name
        drop.append(node)
        if len(consumers.get(node.input[0], [])) == 1 and node.input[0] in inits:
            graph.initializer.remove(inits[node.input[0]])
    for node in drop:
        graph.node.remove(node)
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    for node in [n for n in graph.node if n.op_type == "Constant" and n.output[0] not in used]:
        graph.node.remove(node)  # the tracer's zero points that the codes' own replaced
    if opset != OPSET:
        for entry in model.opset_import:
            if entry.domain in ("", "ai.onnx"):
                entry.version = opset
    onnx.checker.check_model(model)
    return opset


def layer_table(model: nn.Module, groups: dict[str, list[str]]) -> dict[str, dict[str, Any]]:
    """Per traced layer part: group, bits, scheme and weight storage (the metadata)."""
    group_of = {}
    for g, members in groups.items():
        for member in members:
            name, rows = split_member(member)
            group_of[(name, None if rows is None else (rows.start, rows.stop))] = g
    table = {}
    for name, m in model.named_modules():
        if isinstance(m, _QdqLayer):
            for i, p in enumerate(m.parts):
                table[f"{name}.parts.{i}"] = {
                    "group": group_of.get((name, p.rows), ""),
                    "w_bits": p.w_bits, "a_bits": p.a_bits, "scheme": p.scheme, "weights": p.storage}
    return table


@EXPORTERS.register("onnx")
class OnnxExporter:
    """ONNX QDQ graph for onnxruntime (see the module docstring)."""

    description = "ONNX graph in QDQ form (int4/int8 weight codes, calibrated activation grids)"

    def __init__(self) -> None:
        _onnx()  # a missing package before any work (the export rebuilds and trains first)

    def export(self, item: ExportItem, out_dir: Path) -> list[Path]:
        onnx = _onnx()
        with deployable(item.model) as parts:
            proto = onnx.load_from_string(_trace(item.model, item.space.example_input()))
            layers = layer_table(item.model, dict(item.groups))
        opset = store_weight_codes(proto, parts)
        meta = {
            "bitnas.candidate": item.candidate.to_json(),
            "bitnas.trial": "" if item.trial is None else str(item.trial),
            "bitnas.metrics": json.dumps(dict(item.metrics or {})),
            "bitnas.layers": json.dumps(layers),
            "bitnas.task": item.task,
            "bitnas.opset": str(opset),
        }
        for key, value in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        proto.producer_name = "bitnas"
        out_dir.mkdir(parents=True, exist_ok=True)
        path = out_dir / (f"trial{item.trial}.onnx" if item.trial is not None else "candidate.onnx")
        data = proto.SerializeToString()
        atomic_write(path, lambda p: p.write_bytes(data))
        return [path]
