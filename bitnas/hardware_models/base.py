"""Contracts shared by every cost model: the per-layer workload, the cost, the model.

Every hardware model reports the four base cost fields, the energy breakdown
(``ENERGY_FIELDS``) and any extra fields it declares (``extra_cost_fields``, for
example processors or flash bytes); all of them may be objectives or constraints
in a spec, and all are exported with the front.
"""

from __future__ import annotations

import functools
import math
import tomllib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, ClassVar

from bitnas.accounting import Compute, ComputeKind, Storage
from bitnas.errors import BitnasError
from bitnas.plan import FLOAT_BITS, MAX_INT_BITS, LayerQuant, QuantPlan
from bitnas.registry import QUANTIZERS

#: The cost fields every model reports; all are minimised.
COST_FIELDS = ("energy_j", "latency_s", "weight_bytes", "peak_act_bytes")
#: The energy breakdown every model reports, per layer and in total (their sum is at most
#: energy_j; a model may declare further parts, such as static energy, as extra fields).
#: compute: arithmetic; weight: reading weights; act: moving activations or spikes;
#: state: reading and writing neuron state (membranes, recurrent state)
ENERGY_FIELDS = ("compute_energy_j", "weight_energy_j", "act_energy_j", "state_energy_j")
#: what every model reports beside: the read-only structures a plan's schemes share across
#: layers and networks (a universal codebook), counted once and placed in ROM, so not in
#: ``weight_bytes``
SHARED_FIELDS = ("rom_bytes",)
#: every bit-width a plan may hold
ALL_WEIGHT_BITS = frozenset([*range(1, MAX_INT_BITS + 1), FLOAT_BITS])
#: the op kinds with weights (they hold the group's w_bits and run its quantizer's compute);
#: "param" is a parameter tensor another op reads (a selective scan's A and D): stored and
#: read at the group's bits, no work of its own (``macs`` 0)
WEIGHTED_KINDS = frozenset({"conv1d", "conv2d", "linear", "param"})
#: every op kind a workload may hold (LayerWorkload.kind): weighted layers; "matmul", products of
#: two activations (attention); "pool"; "norm"; "eltwise", element-wise adds (residuals); "scan",
#: a selective scan (Mamba): ``timesteps`` steps of ``macs`` multiply-adds of its state (at the
#: group's ``v_bits``) with its inputs (at ``a_bits``), its ``state_elems`` read and written every
#: step; "act", an element-wise function (``macs`` evaluations: an exp, a SiLU, a softplus,
#: softmax's exp-and-scale, a gate's product), which a ReLU fused into its layer's clamp is not.
#: A model refuses a kind it does not price (:func:`refuse_kind`), never costs it as a
#: weighted MAC.
OP_KINDS = WEIGHTED_KINDS | {"matmul", "pool", "norm", "eltwise", "scan", "act"}


@dataclass(frozen=True)
class LayerWorkload:
    """What one counted op does in one inference (batch 1), independent of bits.

    ``macs`` is the op's work per sample and step: products for the weighted kinds and
    "matmul", adds or compares for "pool" and "eltwise", multiply-adds for "norm", function
    evaluations for "act". Ops
    without weights have ``params = 0``: no weight storage, no weight energy.
    """

    name: str
    kind: str  # one of OP_KINDS
    macs: int
    params: int  # weight elements (quantized at the group's w_bits)
    in_elems: int
    out_elems: int
    group: str = ""  # the layer group whose LayerQuant applies
    #: the weight tensor's shape (output rows first; a row slice's own rows), for storage
    weight_shape: tuple[int, ...] = ()
    bias_params: int = 0  # kept at 32 bits
    timesteps: int = 1
    in_spike_rate: float | None = None
    #: membrane potentials (per sample) of the spiking neurons this op feeds: each neuron's
    #: state sits on the closest preceding op of the neuron's group (see extract_workload)
    state_elems: int = 0
    # share of the layer's inputs that carry a spike (in_spike_rate counts synaptic ops, which
    # padding dilutes); routing and neuron activity depend on this one
    in_spike_fraction: float | None = None
    #: a BatchNorm that folds into the preceding layer at inference: counted, but no model
    #: charges it any work; its shift becomes that layer's bias, which ``bias_params`` holds
    #: where the layer had none (stored with the weights)
    folded: bool = False
    #: the module whose forward the op belongs to ("" for a hand-made workload: the name)
    module: str = ""
    #: geometry, for models that map ops onto hardware (an accelerator's processors and
    #: memories): the input and output shapes of one sample and one step (no batch or time
    #: axis: (C, H, W), (C, L) or (features,)); window ops (convolutions, pools) add their
    #: kernel, stride and padding per spatial axis and their channel groups. Empty where
    #: the counter does not know (a hand-made workload)
    in_shape: tuple[int, ...] = ()
    out_shape: tuple[int, ...] = ()
    kernel: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()
    padding: tuple[int, ...] = ()
    channel_groups: int = 1
    #: how many of its ``timesteps`` have their inputs and outputs live at once: 1 where the
    #: op runs step by step (a spiking layer at each time step); all of them where the ops
    #: before it made every step's input at once (a selective scan reads the whole sequence
    #: its projections made, and writes every step's output before the next op runs)
    live_steps: int = 1

    @property
    def weighted(self) -> bool:
        """Whether the op holds weights (a convolution or a linear layer)."""
        return self.kind in WEIGHTED_KINDS

    @property
    def fan_in(self) -> int:
        """Products summed into one output: sets the accumulator width."""
        return max(1, self.macs // max(1, self.out_elems))


@dataclass(frozen=True)
class Cost:
    """A cost estimate; units are in the names. ``violations`` > 0 means infeasible.

    A violation is relative (0.25: a quarter over the limit); ``reasons`` may say, for a
    violation > 0, what broke in words a user understands ("layer conv3: 36 KiB per
    channel at 2 passes; one data-memory instance holds 32 KiB").
    """

    energy_j: float
    latency_s: float
    weight_bytes: int
    peak_act_bytes: int
    per_layer: Mapping[str, Mapping[str, float]]
    violations: Mapping[str, float] = field(default_factory=dict)
    #: the energy breakdown and the model's extra cost fields, by name
    fields: Mapping[str, float] = field(default_factory=dict)
    #: violation name -> what broke, in words (only for violations > 0)
    reasons: Mapping[str, str] = field(default_factory=dict)

    @property
    def feasible(self) -> bool:
        return all(v <= 0 for v in self.violations.values())

    def value(self, name: str) -> float:
        """Any cost field: a base field, a part of the energy, or an extra field."""
        if name in COST_FIELDS:
            return float(getattr(self, name))
        if name in self.fields:
            return float(self.fields[name])
        raise KeyError(name)

    def values(self) -> dict[str, float]:
        """Every cost field by name."""
        return {**{f: float(getattr(self, f)) for f in COST_FIELDS},
                **{k: float(v) for k, v in self.fields.items()}}

    @classmethod
    def from_layers(cls, per_layer: Mapping[str, Mapping[str, float]], *, weight_bytes: int,
                    peak_act_bytes: int, violations: Mapping[str, float] | None = None,
                    extra: Mapping[str, float] | None = None, rom_bytes: int = 0) -> Cost:
        """A cost whose energy, its parts and latency are the sums of its layers' (a chain
        of layers run one after the other); ``rom_bytes``: the plan's shared structures."""
        def total(key: str) -> float:
            return float(sum(p.get(key, 0.0) for p in per_layer.values()))

        return cls(energy_j=total("energy_j"), latency_s=total("latency_s"),
                   weight_bytes=weight_bytes, peak_act_bytes=peak_act_bytes,
                   per_layer=per_layer, violations=dict(violations or {}),
                   fields={**{f: total(f) for f in ENERGY_FIELDS}, "rom_bytes": float(rom_bytes),
                           **dict(extra or {})})

    def with_violations(self, violations: Mapping[str, float],
                        reasons: Mapping[str, str] | None = None) -> Cost:
        """The same cost with ``violations`` (and their ``reasons``, added to this one's)."""
        return Cost(self.energy_j, self.latency_s, self.weight_bytes, self.peak_act_bytes,
                    self.per_layer, dict(violations), self.fields,
                    {**self.reasons, **dict(reasons or {})})

    def why_infeasible(self) -> list[str]:
        """One phrase per broken limit: its reason, or its name and how far over."""
        return [self.reasons.get(k) or f"{k} {v:+.0%}" for k, v in self.violations.items() if v > 0]

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Cost:
        return cls(d["energy_j"], d["latency_s"], d["weight_bytes"], d["peak_act_bytes"],
                   d["per_layer"], d.get("violations", {}), d.get("fields", {}),
                   d.get("reasons", {}))

    def to_dict(self) -> dict[str, Any]:
        return {
            "energy_j": self.energy_j,
            "latency_s": self.latency_s,
            "weight_bytes": self.weight_bytes,
            "peak_act_bytes": self.peak_act_bytes,
            "fields": dict(self.fields),
            "per_layer": {k: dict(v) for k, v in self.per_layer.items()},
            "violations": dict(self.violations),
            **({"reasons": dict(self.reasons)} if self.reasons else {}),
        }


class HardwareModel(ABC):
    """An analytical cost model of one target (registered by name in ``HARDWARE``).

    A model with ``needs_activity`` charges measured spikes: the search costs it
    once from the static workload (to check feasibility before any evaluation) and
    again, for the objectives, with the spike rates measured on the candidate's own
    quantized model.

    Declared, and read by the spec and the search (never guessed):

    - ``supported_weight_bits``: the weight bit-widths the target runs (None: any of
      1..16 and float); the spec refuses a space that offers others, naming the
      layer group and the bits;
    - ``supported_act_bits``: the activation bit-widths it runs (None: any); the spec
      refuses a space whose ``a_bits`` offer others;
    - ``compute_kinds``: the :class:`~bitnas.accounting.ComputeKind` values the model
      prices; a plan whose quantizer needs another is refused with one line
      (:meth:`compute_of`), never costed as a plain multiply;
    - ``infeasible_kinds``: kinds the model knows its target cannot run (an accelerator
      without table lookups): a plan that uses one is infeasible, with a violation
      ``<name>_scheme`` and a reason (:meth:`scheme_violations`), not an error, so that a
      search over schemes per layer learns to avoid it; the spec refuses a space whose
      quantizers need a kind in neither set;
    - ``extra_cost_fields``: cost fields beyond the base four and the energy parts,
      which :meth:`cost` fills into ``Cost.fields``;
    - ``fields_falling_as_weight_bits_grow``: the fields that may fall as weight bits grow
      (every other field never falls when any bit grows);
    - ``activity_fields``: the cost fields that depend on measured activity; their
      bounds are checked once the spikes are measured.
    """

    needs_activity: ClassVar[bool] = False
    activity_fields: ClassVar[tuple[str, ...]] = ()
    supported_weight_bits: frozenset[int] | None = None
    supported_act_bits: frozenset[int] | None = None
    compute_kinds: ClassVar[frozenset[ComputeKind]] = frozenset({ComputeKind.MULTIPLY, ComputeKind.SHIFT})
    infeasible_kinds: ClassVar[frozenset[ComputeKind]] = frozenset()
    extra_cost_fields: ClassVar[tuple[str, ...]] = ()
    #: cost fields that may fall when a weight's bits grow, where the target really is faster at
    #: its native width (a microcontroller unpacks 4-bit and 1-2-bit weights to 16 bits before
    #: its int8 kernels run them); the contract suite exempts exactly these, and only for
    #: weight bits
    fields_falling_as_weight_bits_grow: ClassVar[tuple[str, ...]] = ()
    #: the model's constants, in hardware_models/data/; the spec's [hardware] may override them
    constants_file: ClassVar[str | None] = None
    #: the registered name, set by subclasses (for messages)
    name: ClassVar[str] = ""

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

    @classmethod
    def cost_fields(cls) -> tuple[str, ...]:
        """Every field this model's costs carry: objectives and constraints may use any."""
        return (*COST_FIELDS, *ENERGY_FIELDS, *SHARED_FIELDS, *cls.extra_cost_fields)

    def compute_of(self, lq: LayerQuant) -> Compute:
        """The operation ``lq``'s quantizer runs per weight, if this model prices it."""
        compute = quantizer_of(lq).compute(lq.w_bits)
        if compute.kind not in self.compute_kinds and compute.kind not in self.infeasible_kinds:
            label = self.name or type(self).__name__
            raise BitnasError(
                f"hardware {label} cannot price compute kind {compute.kind.value!r} (quantizer "
                f"{lq.quantizer}); it prices {', '.join(sorted(k.value for k in self.compute_kinds))}: "
                "drop the quantizer from the space or choose another hardware model")
        return compute


    def scheme_issue(self, layer: LayerWorkload, lq: LayerQuant) -> str:
        """Why the target cannot run ``layer`` under its group's scheme ("" if it can): by
        default, a compute kind in ``infeasible_kinds``. A model may refuse more (scales or
        tables it cannot hold)."""
        compute = self.compute_of(lq)
        if compute.kind in self.infeasible_kinds:
            return (f"quantizer {lq.quantizer} needs a {compute.kind.value} per weight, which the "
                    f"{self.name or type(self).__name__} cannot run")
        return ""

    @property
    def scheme_key(self) -> str:
        """The violation a scheme the target cannot run breaks: ``<name>_scheme``."""
        return f"{self.name or type(self).__name__}_scheme"

    def scheme_violations(self, workload: Sequence[LayerWorkload], plan: QuantPlan
                          ) -> tuple[dict[str, float], dict[str, str]]:
        """The violation ``<name>_scheme`` (the share of weighted layers whose scheme the target
        cannot run; 0 when all can) and its reason, naming the first such layer."""
        key = self.scheme_key
        weighted = [w for w in workload if w.weighted and not w.folded]
        issues = [(w, issue) for w in weighted
                  if (issue := self.scheme_issue(w, plan[w.group or w.name]))]
        if not issues:
            return {key: 0.0}, {}
        first, issue = issues[0]
        more = f" (and {len(issues) - 1} more layers)" if len(issues) > 1 else ""
        return ({key: len(issues) / len(weighted)},
                {key: f"layer {first.name}: {issue}{more}"})


@functools.lru_cache(maxsize=256)
def _quantizer(name: str, options: tuple[tuple[str, Any], ...]) -> Any:
    return QUANTIZERS.create(name, **dict(options))


def quantizer_of(lq: LayerQuant) -> Any:
    """The quantizer (with its options) of a layer quant; made once per distinct config."""
    return _quantizer(lq.quantizer, tuple(lq.options.items()))


def layer_quants(workload: Sequence[LayerWorkload], plan: QuantPlan) -> list[LayerQuant]:
    """Each layer's LayerQuant: its group's entry in the plan."""
    return [plan[w.group or w.name] for w in workload]


def weight_storage(layer: LayerWorkload, lq: LayerQuant) -> Storage:
    """What the layer's weights occupy under its scheme (biases not included)."""
    return quantizer_of(lq).storage(layer.weight_shape or (layer.params,), lq.w_bits)


def weight_bits_per_layer(workload: Sequence[LayerWorkload], lqs: Sequence[LayerQuant]) -> list[int]:
    """Stored bits per layer: its weights with their scales and tables, biases at 32 bits.
    Structures shared across layers or networks (a codebook) are not in it: see
    :func:`rom_bytes`."""
    out = []
    for layer, lq in zip(workload, lqs, strict=True):
        if not layer.weighted:  # its group's scheme stores nothing for an op without weights
            out.append(32 * layer.bias_params)
            continue
        out.append(weight_storage(layer, lq).layer_bits + 32 * layer.bias_params)
    return out


def weight_bits(layer: LayerWorkload, lq: LayerQuant) -> int:
    """Bits one layer's weights occupy under its scheme (scales and tables included, shared
    structures not), biases at 32 bits."""
    return weight_bits_per_layer([layer], [lq])[0]


def shared_structures(workload: Sequence[LayerWorkload], lqs: Sequence[LayerQuant]) -> dict[str, int]:
    """The shared structures (a universal codebook) the plan's schemes use: key -> bits,
    each once however many layers use it."""
    out: dict[str, int] = {}
    for layer, lq in zip(workload, lqs, strict=True):
        if layer.weighted:
            out.update(weight_storage(layer, lq).shared)
    return out


def rom_bytes(workload: Sequence[LayerWorkload], lqs: Sequence[LayerQuant]) -> int:
    """``rom_bytes``: the shared structures, counted once, in bytes."""
    return math.ceil(sum(shared_structures(workload, lqs).values()) / 8)


def lookups(layer: LayerWorkload, lq: LayerQuant, compute: Compute) -> tuple[int, int]:
    """(value bits looked up per read of the layer's weights, bytes of the tables they come
    from): a table-lookup scheme reads each weight's value (``operand_bits``) from its
    layer's level table or a shared codebook whenever the weights are read; (0, 0) for
    any other kind."""
    if not layer.weighted or compute.kind is not ComputeKind.LOOKUP:
        return 0, 0
    st = weight_storage(layer, lq)
    return layer.params * compute.operand(lq.w_bits), math.ceil((st.table_bits + sum(st.shared.values())) / 8)


def act_width(lq: LayerQuant) -> int:
    """Bits an input activation of the group's layers occupies: its a bits, times the terms
    of a series-expanded activation (``Compute.act_terms``)."""
    if lq.a_bits >= FLOAT_BITS:
        return lq.a_bits
    return lq.a_bits * quantizer_of(lq).compute(lq.w_bits).act_terms


def act_bits_per_layer(workload: Sequence[LayerWorkload], in_bits: Sequence[int],
                       last_out_bits: int = 32) -> list[int]:
    """Activation bits each op holds while it runs: its input (``in_bits`` per element) and its
    output (at the width the next op reads it, ``last_out_bits`` after the last), of each of
    its ``live_steps``. A folded op
    does not exist at inference: it holds nothing and is skipped as "next"."""
    live = [i for i, w in enumerate(workload) if not w.folded]
    out = [0] * len(workload)
    for pos, i in enumerate(live):
        nxt = in_bits[live[pos + 1]] if pos + 1 < len(live) else last_out_bits
        w = workload[i]
        out[i] = w.live_steps * (w.in_elems * in_bits[i] + w.out_elems * nxt)
    return out


def live_peak_bytes(act_bits: Sequence[int], state_bits: Sequence[int]) -> int:
    """``peak_act_bytes``, the live set: the most that must be held at once, over ops in
    execution order. That is one op's input and output activations (``act_bits``, per step)
    plus every neuron's state (``state_bits``): membranes persist across time steps, so all of
    them, of every layer, are live for the whole inference."""
    return math.ceil((max(act_bits, default=0) + sum(state_bits)) / 8)


def refuse_kind(model: HardwareModel, layer: LayerWorkload, priced: Iterable[str],
                why: str = "") -> BitnasError:
    """The one-line error for an op ``model`` does not price (the caller raises it)."""
    label = model.name or type(model).__name__
    return BitnasError(f"hardware {label} cannot price {layer.kind!r} ops (op {layer.name}{why}); "
                       f"it prices {', '.join(sorted(priced))}: choose another hardware model")


#: how a constant is known (a data file's optional ``kind``): read off a measurement; derived
#: by arithmetic from published measurements; stated by the vendor (datasheet, SDK, tools);
#: or estimated (no published source: an assumption to be replaced)
CONSTANT_KINDS = ("measured", "derived", "vendor", "estimate")


@dataclass(frozen=True)
class Constant:
    value: float
    unit: str
    source: str
    kind: str = ""  # one of CONSTANT_KINDS, or "" where the file does not say


def load_constants(filename: str) -> dict[str, Constant]:
    """Read a ``hardware_models/data/*.toml`` file: each table has value, unit and source."""
    text = resources.files("bitnas.hardware_models").joinpath("data", filename).read_text()
    raw = tomllib.loads(text)
    out = {}
    for name, entry in raw.get("constants", {}).items():
        missing = {"value", "unit", "source"} - set(entry)
        if missing:
            raise ValueError(f"{filename}: constant {name} lacks {sorted(missing)}")
        kind = str(entry.get("kind", ""))
        if kind and kind not in CONSTANT_KINDS:
            raise ValueError(f"{filename}: constant {name} has kind {kind!r}, not one of {CONSTANT_KINDS}")
        out[name] = Constant(float(entry["value"]), str(entry["unit"]), str(entry["source"]), kind)
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
