"""Contracts shared by every cost model: the per-layer workload, the cost, the model."""

from __future__ import annotations

import math
import tomllib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from bitnas.errors import BitnasError
from bitnas.plan import LayerQuant, QuantPlan
from bitnas.registry import QUANTIZERS

#: Cost fields that may be objectives or constraints; all are minimised.
COST_FIELDS = ("energy_j", "latency_s", "weight_bytes", "peak_act_bytes")


@dataclass(frozen=True)
class LayerWorkload:
    """What one quantizable layer does in one inference (batch 1), independent of bits."""

    name: str
    kind: str  # "conv2d" | "linear"
    macs: int
    params: int  # weight elements (quantized at the group's w_bits)
    in_elems: int
    out_elems: int
    group: str = ""  # the layer group whose LayerQuant applies
    bias_params: int = 0  # kept at 32 bits
    timesteps: int = 1
    in_spike_rate: float | None = None
    state_elems: int = 0  # membrane potentials of the spiking neurons the group owns (per step)
    # share of the layer's inputs that carry a spike (in_spike_rate counts synaptic ops, which
    # padding dilutes); routing and neuron activity depend on this one
    in_spike_fraction: float | None = None

    @property
    def fan_in(self) -> int:
        """Products summed into one output: sets the accumulator width."""
        return max(1, self.macs // max(1, self.out_elems))


@dataclass(frozen=True)
class Cost:
    """A cost estimate; units are in the names. ``violations`` > 0 means infeasible."""

    energy_j: float
    latency_s: float
    weight_bytes: int
    peak_act_bytes: int
    per_layer: Mapping[str, Mapping[str, float]]
    violations: Mapping[str, float] = field(default_factory=dict)

    @property
    def feasible(self) -> bool:
        return all(v <= 0 for v in self.violations.values())

    def value(self, name: str) -> float:
        if name not in COST_FIELDS:
            raise KeyError(name)
        return float(getattr(self, name))

    @classmethod
    def from_layers(cls, per_layer: Mapping[str, Mapping[str, float]], *, weight_bytes: int,
                    peak_act_bytes: int, violations: Mapping[str, float] | None = None) -> Cost:
        """A cost whose energy and latency are the sums of its layers' (a chain of layers)."""
        return cls(energy_j=sum(p["energy_j"] for p in per_layer.values()),
                   latency_s=sum(p["latency_s"] for p in per_layer.values()),
                   weight_bytes=weight_bytes, peak_act_bytes=peak_act_bytes,
                   per_layer=per_layer, violations=dict(violations or {}))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Cost:
        return cls(d["energy_j"], d["latency_s"], d["weight_bytes"], d["peak_act_bytes"],
                   d["per_layer"], d.get("violations", {}))

    def to_dict(self) -> dict[str, Any]:
        return {
            "energy_j": self.energy_j,
            "latency_s": self.latency_s,
            "weight_bytes": self.weight_bytes,
            "peak_act_bytes": self.peak_act_bytes,
            "per_layer": {k: dict(v) for k, v in self.per_layer.items()},
            "violations": dict(self.violations),
        }


class HardwareModel(ABC):
    """An analytical cost model of one target (registered by name in ``HARDWARE``).

    A model with ``needs_activity`` charges measured spikes: the search costs it
    once from the static workload (to check feasibility before any evaluation) and
    again, for the objectives, with the spike rates measured on the candidate's own
    quantized model.
    """

    needs_activity = False
    #: cost fields that depend on measured activity: their bounds wait for it
    activity_fields: tuple[str, ...] = ()
    #: the model's constants, in hardware_models/data/; the spec's [hardware] may override them
    constants_file: str | None = None

    def __init__(self, **overrides: Any) -> None:
        name = (self.constants_file or type(self).__name__).removesuffix(".toml")
        self.constants = load_constants(self.constants_file) if self.constants_file else {}
        self.c = apply_overrides(self.constants, overrides, name)

    @abstractmethod
    def cost(self, workload: Sequence[LayerWorkload], plan: QuantPlan) -> Cost:
        """Energy, latency and memory of running ``workload`` under ``plan``."""

    def settings(self) -> dict[str, float]:
        """The effective constants (defaults with overrides): what makes two models equal."""
        return dict(self.c)


def layer_quants(workload: Sequence[LayerWorkload], plan: QuantPlan) -> list[LayerQuant]:
    """Each layer's LayerQuant: its group's entry in the plan."""
    return [plan[w.group or w.name] for w in workload]


def weight_bits(layer: LayerWorkload, lq: LayerQuant) -> int:
    """Bits the layer's weights occupy under its scheme, biases at 32 bits."""
    return QUANTIZERS.create(lq.quantizer).storage_bits(layer.params, lq.w_bits) + 32 * layer.bias_params


@dataclass(frozen=True)
class Constant:
    value: float
    unit: str
    source: str


def load_constants(filename: str) -> dict[str, Constant]:
    """Read a ``hardware_models/data/*.toml`` file: each table has value, unit and source."""
    text = resources.files("bitnas.hardware_models").joinpath("data", filename).read_text()
    raw = tomllib.loads(text)
    out = {}
    for name, entry in raw.get("constants", {}).items():
        missing = {"value", "unit", "source"} - set(entry)
        if missing:
            raise ValueError(f"{filename}: constant {name} lacks {sorted(missing)}")
        out[name] = Constant(float(entry["value"]), str(entry["unit"]), str(entry["source"]))
    return out


def apply_overrides(
    constants: Mapping[str, Constant], overrides: Mapping[str, Any], model: str
) -> dict[str, float]:
    """Constant values with the spec's ``[hardware]`` overrides applied, validated."""
    values = {k: c.value for k, c in constants.items()}
    for key, v in overrides.items():
        if key not in values:
            raise BitnasError(
                f"hardware.{key} is not a constant of {model}; "
                f"settable: {', '.join(sorted(values))}"
            )
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
            raise BitnasError(f"hardware.{key} must be a positive number, got {v!r}")
        values[key] = float(v)
    return values
