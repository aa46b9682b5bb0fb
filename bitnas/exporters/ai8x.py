"""``--format ai8x``: what Analog Devices' ai8x-synthesis ("izer") takes for a MAX7800x.

Two files:

- ``<name>.pth.tar``: ``torch.save`` of a dict with ``state_dict``, ``arch``, ``epoch`` and
  ``extras``, in the layout ai8x-synthesis's quantize.py writes. Per layer ``<name>``:
  ``<name>.op.weight`` (the b-bit integers, in [-2^(b-1), 2^(b-1) - 1], as float
  tensors), ``<name>.op.bias`` (the bias integers q, on the weights' scale and at the
  same bits, stored as q * 2^(b-1): the izer divides by 2^(b-1)), ``weight_bits``,
  ``bias_bits`` (8, the bias memory's width), ``output_shift`` (the layer's power-of-two
  shift; the izer adds 8 - b), ``quantize_activation`` (1), ``adjust_output_shift`` (0)
  and ``shift_quantile``. ``extras["bitnas"]`` holds the candidate, so that
  :func:`load_checkpoint` rebuilds the network from the file alone.
- ``<name>.yaml``: the network YAML: ``arch``, ``dataset`` and per layer ``processors`` and
  ``output_processors`` (64-bit hex masks), ``in_offset``/``out_offset`` (the data-memory
  ping-pong), ``op``, ``kernel_size``, ``pad``, ``activate``, ``max_pool``/``avg_pool`` with
  ``pool_stride``, ``data_format`` (first layer), ``flatten`` and ``output_width``.

The processor maps and offsets are the ones the ``max78000``/``max78002`` cost model
computed for the candidate (the study's model, or max78000 for another hardware). Every
layer must use the ``ai8x`` quantizer, whose fake-quantized forward is the chip's
arithmetic (b-bit weights and bias on one shift, 8-bit fixed-point activations) for
convolutions, linear layers and max pooling; the chip's average pooling floors a sum of
integers, which bitnas's float average does not mirror. Each layer's ``quantization``
states its bits.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import nn

from bitnas.atomic import atomic_write_all
from bitnas.errors import BitnasError
from bitnas.exporters.base import ExportItem
from bitnas.hardware_models.max7800x import HwLayer, MAX7800x
from bitnas.plan import Candidate, LayerQuant, QuantPlan, split_member
from bitnas.quantizers.ai8x import Ai8xQuantizer, to_int
from bitnas.quantizers.fakequant import FakeQuantLayer, fake_quantize
from bitnas.registry import EXPORTERS, HARDWARE

ARCH = "bitnas_ai8x"
#: the keys the network YAML may hold (ai8x-synthesis izer/yamlcfg.py), top level and per layer
TOP_KEYS = {"arch", "dataset", "layers", "output_map", "unload", "data_buffer", "bias", "weights", "snoop"}
LAYER_KEYS = {"processors", "output_processors", "op", "operation", "operator", "convolution",
              "kernel_size", "pad", "activate", "activation", "max_pool", "avg_pool", "pool_stride",
              "in_offset", "out_offset", "data_format", "quantization", "output_shift", "output_width",
              "flatten", "eltwise", "operands", "in_sequences", "streaming", "name", "in_dim",
              "in_channels", "out_channels", "stride", "write_gap", "bias_group", "bias_quadrant"}
OPS = {"conv2d": "Conv2d", "conv1d": "Conv1d", "linear": "MLP"}


def _mask(processors: list[int]) -> str:
    return f"0x{sum(1 << p for p in processors):016x}"


def _quantized_layer(item: ExportItem, layer: HwLayer) -> tuple[FakeQuantLayer, Ai8xQuantizer, LayerQuant]:
    module = item.model.get_submodule(layer.name)
    if not isinstance(module, FakeQuantLayer) or len(module.parts) != 1:
        raise BitnasError(f"layer {layer.name} is not one fake-quantized layer; the ai8x format "
                          "writes whole convolution and linear layers")
    quantizer, lq = module.weight_quantizers[0], module.lqs[0]
    if not isinstance(quantizer, Ai8xQuantizer):
        raise BitnasError(f"layer {layer.name} uses quantizer {lq.quantizer}; the MAX7800x stores "
                          "weights under one power-of-two shift per layer: search with "
                          "quantizers = [\"ai8x\"]")
    return module, quantizer, lq


def checkpoint(item: ExportItem, layers: list[HwLayer]) -> dict[str, Any]:
    """The ai8x-synthesis checkpoint dict of the candidate."""
    state: dict[str, torch.Tensor] = {}
    for layer in layers:
        module, quantizer, lq = _quantized_layer(item, layer)
        w, b = module.layer.weight.detach(), None if module.layer.bias is None else module.layer.bias.detach()
        bits = lq.w_bits
        shift = quantizer.layer_shift(w, b)
        if not -15 <= shift + 8 - bits <= 15:
            raise BitnasError(f"layer {layer.name}: output shift {shift} at {bits} bits leaves the "
                              "hardware's [-15, 15]")
        name = layer.name
        state[f"{name}.op.weight"] = to_int(w, bits, shift).float()
        if b is not None:
            state[f"{name}.op.bias"] = to_int(b, bits, shift).float() * 2 ** (bits - 1)
        state[f"{name}.weight_bits"] = torch.tensor([float(bits)])
        state[f"{name}.bias_bits"] = torch.tensor([8.0])
        state[f"{name}.output_shift"] = torch.tensor([float(shift)])
        state[f"{name}.quantize_activation"] = torch.tensor([1.0])
        state[f"{name}.adjust_output_shift"] = torch.tensor([0.0])
        state[f"{name}.shift_quantile"] = torch.tensor([float(quantizer.config.shift_quantile)])
    extras = {"bitnas": {"candidate": item.candidate.to_json(), "trial": item.trial,
                         "task": item.task, "hardware": item.hardware.name,
                         "metrics": dict(item.metrics or {})}}
    return {"state_dict": state, "arch": ARCH, "epoch": 0, "extras": extras}


def network_yaml(item: ExportItem, layers: list[HwLayer]) -> dict[str, Any]:
    """The network YAML of the candidate, from the cost model's mapping."""
    out = []
    last = len(layers) - 1
    for i, layer in enumerate(layers):
        if layer.op not in OPS:
            raise BitnasError(f"layer {layer.name} is a {layer.op} layer; the ai8x export writes "
                              "convolution and linear layers only")
        entry: dict[str, Any] = {"name": layer.name, "processors": _mask(layer.processors),
                                 "output_processors": _mask(list(range(layer.out_processors))),
                                 "in_offset": f"0x{layer.in_offset:04x}",
                                 "out_offset": f"0x{layer.out_offset:04x}", "op": OPS[layer.op]}
        # the bits, stated: the izer would otherwise guess them from the integers' range
        entry["quantization"] = layer.bits
        if layer.op == "conv2d":
            entry["kernel_size"] = f"{layer.kernel[0]}x{layer.kernel[1]}"
            entry["pad"] = layer.pad[0]
        elif layer.op == "conv1d":
            entry["kernel_size"] = layer.kernel[0]
            entry["pad"] = layer.pad[0]
        if layer.pool_module:
            pool = item.model.get_submodule(layer.pool_module)
            kind = "avg_pool" if "Avg" in type(pool).__name__ else "max_pool"
            entry[kind] = layer.pool[0] if layer.op == "conv1d" or layer.pool[0] == layer.pool[1] \
                else list(layer.pool)
            entry["pool_stride"] = int(layer.pool_stride[0])
        if i == 0:
            entry["data_format"] = "CHW" if layer.chw else "HWC"
        if layer.flatten:
            entry["flatten"] = True
        if i == last:
            entry["activate"] = "None"
            entry["output_width"] = 32
        else:
            entry["activate"] = "ReLU"
        out.append(entry)
    return {"arch": ARCH, "dataset": item.task, "layers": out}


@EXPORTERS.register("ai8x")
class Ai8xExporter:
    """MAX78000/MAX78002: an ai8x-synthesis checkpoint (.pth.tar) and network YAML."""

    description = "MAX78000/MAX78002: ai8x-synthesis checkpoint (.pth.tar) and network YAML"

    def export(self, item: ExportItem, out_dir: Path) -> list[Path]:
        hw = item.hardware if isinstance(item.hardware, MAX7800x) else HARDWARE.create("max78000")
        mapping = hw.map(item.workload, item.candidate.plan)
        _, scheme = hw.scheme_violations(item.workload, item.candidate.plan)
        broken = {**{k.removeprefix(f"{hw.name}_"): (1.0, r) for k, r in scheme.items()}, **mapping.broken}
        if broken:
            limit, (_, reason) = next(iter(broken.items()))
            raise BitnasError(f"the candidate does not fit the {hw.name} ({limit}: {reason}); "
                              "export a feasible trial")
        ck = checkpoint(item, mapping.layers)
        net = network_yaml(item, mapping.layers)
        out_dir.mkdir(parents=True, exist_ok=True)
        stem = f"trial{item.trial}" if item.trial is not None else "candidate"
        ck_path, yaml_path = out_dir / f"{stem}.pth.tar", out_dir / f"{stem}.yaml"
        atomic_write_all({ck_path: lambda p: torch.save(ck, p),  # both or neither
                          yaml_path: lambda p: p.write_text(yaml.safe_dump(net, sort_keys=False))})
        return [ck_path, yaml_path]


def load_checkpoint(path: Path, space: Any) -> tuple[nn.Module, Candidate]:
    """The network an ai8x checkpoint holds, as bitnas's model: the float layers set to the
    stored integers times their step, under the chip's fixed-point activations. Loaded with
    ``weights_only=True``."""
    try:
        ck = torch.load(path, weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as e:
        raise BitnasError(f"cannot read checkpoint {path} ({type(e).__name__}); export it again") from None
    info = ck.get("extras", {}).get("bitnas") if isinstance(ck, dict) else None
    if not isinstance(info, dict) or "candidate" not in info or "state_dict" not in ck:
        raise BitnasError(f"checkpoint {path} was not written by `bitnas export --format ai8x` (no "
                          "extras.bitnas.candidate); bitnas rebuilds only its own exports")
    cand = Candidate.from_json(info["candidate"])
    model = space.build(cand.arch_dict())
    state = ck["state_dict"]
    for key in [k for k in state if k.endswith(".op.weight")]:
        name = key.removesuffix(".op.weight")
        bits = int(state[f"{name}.weight_bits"].item())
        step = 2.0 ** (int(state[f"{name}.output_shift"].item()) - bits + 1)
        layer = model.get_submodule(name)
        with torch.no_grad():
            layer.weight.copy_(state[key] * step)
            if f"{name}.op.bias" in state and layer.bias is not None:
                layer.bias.copy_(state[f"{name}.op.bias"] / 2 ** (bits - 1) * step)
    groups = space.layer_groups(model)
    names = {split_member(m)[0] for members in groups.values() for m in members}
    missing = names - {k.removesuffix(".op.weight") for k in state if k.endswith(".op.weight")}
    if missing:
        raise BitnasError(f"checkpoint {path} lacks layer(s) {sorted(missing)} of its network")
    # the weights are already on their grid: carried in float (32 bits) with the chip's activations
    plan = QuantPlan({g: LayerQuant(32, cand.plan[g].a_bits, "ai8x") for g in groups})
    return fake_quantize(model, plan, groups), cand
