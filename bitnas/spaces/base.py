"""The search-space contract and the per-group precision choices every space shares.

Knob names follow one rule, which samplers, baselines and reports rely on: an
architecture knob's name has no dot (``depth``, ``width0``); a precision knob is
``<group>.<knob>`` (``block0.q.w_bits``), where ``<knob>`` is ``w_bits``,
``a_bits``, ``quantizer``, ``v_bits`` or ``<quantizer>_<option>`` for a quantizer
option searched per group. Group names may hold dots themselves; the knob is what
follows the last one (:func:`split_knob`).
"""

from __future__ import annotations

import itertools
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import optuna
import torch
from torch import nn

from bitnas.errors import BitnasError
from bitnas.plan import FLOAT_BITS, Candidate, LayerQuant, check_bits
from bitnas.registry import QUANTIZERS

#: the precision knobs every group has (options searched per group come on top)
PRECISION_KNOBS = ("w_bits", "a_bits", "quantizer", "v_bits")


def precision_knob(group: str, knob: str) -> str:
    """The Optuna param name of a group's precision knob."""
    return f"{group}.{knob}"


def split_knob(name: str) -> tuple[str | None, str]:
    """(group, knob) of a param name; group None for an architecture knob."""
    if "." not in name:
        return None, name
    group, _, knob = name.rpartition(".")
    return group, knob


def choice_list(value: Any, field: str, *, kind: type = int, minimum: int | None = None) -> tuple:
    """Validate a TOML list of choices (a scalar means a single fixed choice)."""
    values = value if isinstance(value, list | tuple) else [value]
    if not values:
        raise BitnasError(f"{field} must list at least one choice")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, kind):
            raise BitnasError(f"{field} must hold {kind.__name__} values, got {v!r}")
        if minimum is not None and v < minimum:
            raise BitnasError(f"{field} values must be >= {minimum}, got {v!r}")
    if len(set(values)) != len(values):
        raise BitnasError(f"{field} lists a choice twice: {list(values)}")
    return tuple(values)


def choose(trial: optuna.trial.BaseTrial, name: str, choices: Sequence[Any]) -> Any:
    """``trial.suggest_categorical(name, choices)``, except that a knob with one choice is
    not asked: it is no search dimension, and every stored param costs a storage write
    (a Spikformer plan has about 40 knobs, most of them fixed). A stored trial's params
    therefore hold the searched knobs only; FixedTrial rebuilds ignore any others."""
    choices = tuple(choices)
    return choices[0] if len(choices) == 1 else trial.suggest_categorical(name, choices)


@dataclass(frozen=True)
class WeightChoice:
    """One weight precision a group may take: bits, scheme and the scheme's options (fixed
    and searched ones, as the plan's ``LayerQuant.options`` holds them). Strategies that
    reason per group (the ILP) choose among these; each is measured with its own quantizer."""

    w_bits: int
    quantizer: str
    options: tuple[tuple[str, Any], ...] = ()

    def params(self, group: str, searched: Mapping[str, Any]) -> dict[str, Any]:
        """The Optuna params that pick this choice for ``group``: its bits, scheme and the
        options the space searches (``searched``: quantizer -> option -> values)."""
        out: dict[str, Any] = {precision_knob(group, "w_bits"): self.w_bits,
                               precision_knob(group, "quantizer"): self.quantizer}
        for key, value in self.options:
            if isinstance(searched.get(self.quantizer, {}).get(key), list | tuple):
                out[precision_knob(group, f"{self.quantizer}_{key}")] = value
        return out

    def label(self) -> str:
        opts = ",".join(f"{k}={v}" for k, v in self.options)
        return f"{self.quantizer}{self.w_bits}" + (f"({opts})" if opts else "")


class PrecisionChoices:
    """The bits and schemes a layer group may take; one Optuna parameter each."""

    def __init__(
        self,
        w_bits: Sequence[int],
        a_bits: Sequence[int],
        quantizers: Sequence[str],
        group_w_bits: Mapping[str, Sequence[int]] | None = None,
        options: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        self.w_bits = tuple(check_bits(b, "space.w_bits") for b in choice_list(w_bits, "space.w_bits"))
        if group_w_bits is not None and not isinstance(group_w_bits, Mapping):
            raise BitnasError("space.group_w_bits must be a table of group = [bits], e.g. "
                              "{ stem0 = [8], head = [8] }")
        #: per-group w_bits that replace ``w_bits`` (e.g. keep the first and last layers at 8)
        self.group_w_bits = {
            g: tuple(check_bits(b, f"space.group_w_bits.{g}")
                     for b in choice_list(bits, f"space.group_w_bits.{g}"))
            for g, bits in (group_w_bits or {}).items()}
        self.a_bits = tuple(check_bits(b, "space.a_bits") for b in choice_list(a_bits, "space.a_bits"))
        self.quantizers = tuple(
            QUANTIZERS.check(q, "space.quantizers")
            for q in choice_list(quantizers, "space.quantizers", kind=str)
        )
        #: quantizer -> option -> value, or a list of values searched per group
        self.options = {q: dict(opts) for q, opts in (options or {}).items()}

    def check_groups(self, known: set[str]) -> None:
        """Refuse group_w_bits entries for groups the space does not have."""
        unknown = sorted(set(self.group_w_bits) - known)
        if unknown:
            raise BitnasError(f"space.group_w_bits names unknown group(s) {unknown}; the space's groups: "
                              + ", ".join(sorted(known)))

    def all_w_bits(self) -> tuple[int, ...]:
        """Every w_bits any group may take."""
        return tuple(sorted({*self.w_bits, *(b for bits in self.group_w_bits.values() for b in bits)}))

    def w_bits_for(self, group: str) -> tuple[int, ...]:
        """The w_bits ``group`` may take."""
        return self.group_w_bits.get(group, self.w_bits)

    def option_combos(self, quantizer: str) -> list[tuple[tuple[str, Any], ...]]:
        """Every combination of the quantizer's options a group may take (each searched list
        crossed with the others; fixed options in every one), as sorted (key, value) pairs."""
        opts = self.options.get(quantizer, {})
        keys = sorted(opts)
        values = [v if isinstance(v, list | tuple) else [v] for v in (opts[k] for k in keys)]
        return [tuple(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]

    def weight_choices(self, group: str) -> list[WeightChoice]:
        """Every (bits, scheme, options) ``group`` may take: each quantizer with every
        combination of its searched options, at the bits the space offers the group and the
        quantizer (so configured) runs."""
        out = []
        for q in self.quantizers:
            for options in self.option_combos(q):
                runs = QUANTIZERS.create(q, **dict(options)).supported_bits()
                out.extend(WeightChoice(b, q, options) for b in self.w_bits_for(group)
                           if runs is None or b in runs or b == FLOAT_BITS)
        return out

    def suggest(self, trial: optuna.trial.BaseTrial, group: str) -> LayerQuant:
        w_bits = choose(trial, precision_knob(group, "w_bits"), self.w_bits_for(group))
        a_bits = choose(trial, precision_knob(group, "a_bits"), self.a_bits)
        quantizer = choose(trial, precision_knob(group, "quantizer"), self.quantizers)
        options = {}
        for key, value in self.options.get(quantizer, {}).items():
            values = value if isinstance(value, list | tuple) else [value]
            options[key] = choose(trial, precision_knob(group, f"{quantizer}_{key}"), values)
        return LayerQuant(w_bits=w_bits, a_bits=a_bits, quantizer=quantizer, options=options)


class SearchSpace(ABC):
    """A model family and its search dimensions (registered by name in ``SPACES``).

    Subclasses take the task's ``input_shape`` and ``num_classes``, the spec's
    ``quantizer_options`` (its [quantizers] tables) and their own options (the
    spec's ``[space]`` table) as keyword arguments, and set ``precision`` (the
    per-group precision choices) in ``__init__``. Knob names follow the rule in
    this module's docstring.
    """

    name: str = ""
    #: the bits, schemes and quantizer options each layer group may take
    precision: PrecisionChoices
    #: the [task] table (and options) of a small task this space runs on, and the [space]
    #: options of a tiny instance: what the contract suite (tests/contracts) builds and runs
    example_task: ClassVar[Mapping[str, Any]] = {"name": "digits"}
    tiny_options: ClassVar[Mapping[str, Any]] = {}
    #: whether its networks spike (SpikingJelly neurons): formats without neurons (onnx) refuse them
    spiking: ClassVar[bool] = False
    #: the export format that deploys its candidates best (the report's export commands name it;
    #: ``torch`` where that format is not installed)
    export_format: ClassVar[str] = "onnx"
    #: whether it reads token ids (a task with ``input_vocab``: it is then made with
    #: ``input_vocab=n``) instead of features; a study pairs token tasks with token spaces only
    takes_tokens: ClassVar[bool] = False

    def __init__(self, *, input_shape: Sequence[int], num_classes: int,
                 quantizer_options: Mapping[str, Mapping[str, Any]] | None = None,
                 input_vocab: int = 0) -> None:
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.quantizer_options = dict(quantizer_options or {})
        self.input_vocab = input_vocab

    @abstractmethod
    def all_groups(self) -> list[str]:
        """Every layer group any candidate of the space may have (for the spec's checks)."""

    @abstractmethod
    def suggest(self, trial: optuna.trial.BaseTrial) -> Candidate:
        """Ask ``trial`` for every knob; a FixedTrial of the stored params gives it back."""

    @abstractmethod
    def build(self, arch: Mapping[str, Any]) -> nn.Module:
        """The floating-point model of ``arch`` (untrained)."""

    @abstractmethod
    def layer_groups(self, model: nn.Module) -> dict[str, list[str]]:
        """Layer group -> module names, in execution order."""

    def neuron_groups(self, model: nn.Module) -> dict[str, list[str]]:
        """Layer group -> spiking neurons whose membrane takes the group's v_bits (none here)."""
        return {}

    def example_input(self) -> torch.Tensor:
        return torch.zeros(1, *self.input_shape)
