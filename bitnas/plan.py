"""What a candidate is: per-layer-group quantization choices plus architecture knobs.

All three types are frozen, validated on construction, and round-trip through
plain dicts (and so JSON) without loss.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from bitnas.errors import BitnasError

#: 32 means "leave in floating point"; 1..16 are integer bit-widths.
FLOAT_BITS = 32
MAX_INT_BITS = 16


def check_bits(value: Any, what: str) -> int:
    """Return ``value`` as a bit-width, or raise a one-line error naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise BitnasError(f"{what} must be an integer bit-width, got {value!r}")
    if not (1 <= value <= MAX_INT_BITS or value == FLOAT_BITS):
        raise BitnasError(
            f"{what} = {value} is out of range; use 1..{MAX_INT_BITS}, or {FLOAT_BITS} for float"
        )
    return value


@dataclass(frozen=True)
class LayerQuant:
    """The quantization of one layer group."""

    w_bits: int
    a_bits: int = 8
    quantizer: str = "uniform"
    v_bits: int = FLOAT_BITS  # membrane potential of the group's spiking neurons; 32 = float
    #: the quantizer's options for this group (its typed config, as plain values): the spec's
    #: [quantizers.NAME] table, or the group's searched value of an option
    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_bits(self.w_bits, "w_bits")
        check_bits(self.a_bits, "a_bits")
        check_bits(self.v_bits, "v_bits")
        if self.v_bits < 2:
            raise BitnasError("v_bits = 1 cannot hold a membrane potential; use 2..16 or 32")
        if not isinstance(self.quantizer, str) or not self.quantizer:
            raise BitnasError(f"quantizer must be a non-empty name, got {self.quantizer!r}")
        if not isinstance(self.options, Mapping):
            raise BitnasError(f"quantizer options must be a table, got {self.options!r}")
        for k, v in self.options.items():
            if not isinstance(k, str) or not isinstance(v, bool | int | float | str):
                raise BitnasError(f"quantizer option {k!r} = {v!r}: options are plain numbers, "
                                  "booleans or strings")
        object.__setattr__(self, "options", MappingProxyType(dict(sorted(self.options.items()))))

    def __hash__(self) -> int:
        return hash((self.w_bits, self.a_bits, self.quantizer, self.v_bits,
                     tuple(self.options.items())))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LayerQuant) and self.to_dict() == other.to_dict()

    def to_dict(self) -> dict[str, Any]:
        """Plain dict; ``v_bits`` appears only when the membrane is quantized, ``options``
        only when there are any (so plans stored before either existed read back equal)."""
        d: dict[str, Any] = {"w_bits": self.w_bits, "a_bits": self.a_bits, "quantizer": self.quantizer}
        if self.v_bits != FLOAT_BITS:
            d["v_bits"] = self.v_bits
        if self.options:
            d["options"] = dict(self.options)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LayerQuant:
        unknown = set(d) - {"w_bits", "a_bits", "quantizer", "v_bits", "options"}
        if unknown:
            raise BitnasError(
                f"unknown layer quant field(s) {sorted(unknown)}; use w_bits, a_bits, quantizer, "
                "v_bits, options"
            )
        if "w_bits" not in d:
            raise BitnasError("a layer quant entry needs w_bits")
        return cls(**dict(d))

    def replace(self, **changes: Any) -> LayerQuant:
        """A copy with some fields changed."""
        return LayerQuant(**{**self.to_dict(), **changes})


def describe_layer(d: Mapping[str, Any]) -> str:
    """A layer quant (its dict form) in a few characters: scheme and weight bits, then
    activation bits, then membrane bits where quantized, e.g. ``pot4/8/v4``."""
    text = f"{d['quantizer']}{d['w_bits']}/{d.get('a_bits', 8)}"
    if d.get("v_bits", FLOAT_BITS) != FLOAT_BITS:
        text += f"/v{d['v_bits']}"
    if d.get("options"):
        text += "(" + ",".join(f"{k}={v}" for k, v in sorted(d["options"].items())) + ")"
    return text


#: what :func:`describe_plan` shows, for table headers
PLAN_LEGEND = "scheme+w_bits/a_bits[/v membrane bits] per group"


def describe_plan(plan: Mapping[str, Mapping[str, Any]]) -> str:
    """A plan (its dict form) on one line: ``group:`` :func:`describe_layer` per group."""
    return " ".join(f"{g}:{describe_layer(lq)}" for g, lq in plan.items())


def describe_arch(arch: Mapping[str, Any]) -> str:
    """Architecture knobs on one line, ``name=value`` each (lists as compact JSON)."""
    return " ".join(f"{k}={json.dumps(v, separators=(',', ':'))}" for k, v in arch.items())


@dataclass(frozen=True)
class QuantPlan:
    """Layer-group name -> :class:`LayerQuant`, in execution order."""

    layers: Mapping[str, LayerQuant]

    def __post_init__(self) -> None:
        if not self.layers:
            raise BitnasError("a quant plan needs at least one layer group")
        for name, lq in self.layers.items():
            if not isinstance(name, str) or not name:
                raise BitnasError(f"layer group names must be non-empty strings, got {name!r}")
            if not isinstance(lq, LayerQuant):
                raise BitnasError(f"plan entry {name!r} must be a LayerQuant, got {lq!r}")
        object.__setattr__(self, "layers", MappingProxyType(dict(self.layers)))

    def __getitem__(self, group: str) -> LayerQuant:
        return self.layers[group]

    def __hash__(self) -> int:
        return hash(tuple(self.layers.items()))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, QuantPlan) and dict(self.layers) == dict(other.layers)

    @classmethod
    def uniform(
        cls, groups: list[str], w_bits: int, a_bits: int = 8, quantizer: str = "uniform"
    ) -> QuantPlan:
        """Every group at the same precision: the baseline every search is compared with."""
        lq = LayerQuant(w_bits, a_bits, quantizer)
        return cls({g: lq for g in groups})

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {name: lq.to_dict() for name, lq in self.layers.items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Mapping[str, Any]]) -> QuantPlan:
        return cls({name: LayerQuant.from_dict(v) for name, v in d.items()})


def split_member(member: str) -> tuple[str, slice | None]:
    """A layer group's member name -> (module name, output rows or None).

    ``'blocks.0.qkv[0:32]'`` -> ``('blocks.0.qkv', slice(0, 32))``: a group may own a
    row range of a fused layer (Spikformer computes q, k and v with one convolution).
    """
    if member.endswith("]") and "[" in member:
        name, _, rows = member[:-1].rpartition("[")
        start, _, stop = rows.partition(":")
        return name, slice(int(start), int(stop))
    return member, None


def candidate_key(candidate: Mapping[str, Any]) -> str:
    """Canonical JSON of a candidate dict (as stored on a trial)."""
    return json.dumps(candidate, sort_keys=True)


def _freeze(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, Mapping):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_thaw(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class Candidate:
    """One point of the search space: architecture knobs and a quant plan."""

    arch: Mapping[str, Any]
    plan: QuantPlan
    space: str = field(default="")

    def __post_init__(self) -> None:
        object.__setattr__(self, "arch", _freeze(dict(self.arch)))

    def __hash__(self) -> int:
        return hash((self.space, self.arch_key(), self.plan))

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Candidate)
            and self.space == other.space
            and _thaw(self.arch) == _thaw(other.arch)
            and self.plan == other.plan
        )

    def arch_dict(self) -> dict[str, Any]:
        return _thaw(self.arch)

    def arch_key(self) -> str:
        """A canonical string for the architecture alone (FP cache key, grouping)."""
        return json.dumps(self.arch_dict(), sort_keys=True)

    def to_dict(self) -> dict[str, Any]:
        return {"space": self.space, "arch": self.arch_dict(), "plan": self.plan.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Candidate:
        missing = {"arch", "plan"} - set(d)
        if missing:
            raise BitnasError(f"a candidate needs {sorted(missing)}")
        return cls(arch=d["arch"], plan=QuantPlan.from_dict(d["plan"]), space=d.get("space", ""))

    def to_json(self) -> str:
        """Canonical JSON: equal candidates give equal strings (used as a lookup key)."""
        return candidate_key(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> Candidate:
        return cls.from_dict(json.loads(text))
