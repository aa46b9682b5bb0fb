"""The TOML study spec: what to search, on which task and hardware, for which objectives.

``load_spec`` reads and validates a file; every bad field raises one ``SpecError``
line that names the field and the accepted values. A minimal spec::

    [study]
    name = "quickstart"
    trials = 40

    [space]
    name = "cnn"

    [task]
    name = "digits"

    [hardware]
    name = "generic45nm"

    [[objectives]]
    name = "accuracy"

    [[objectives]]
    name = "energy_j"
"""

from __future__ import annotations

import copy
import inspect
import json
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bitnas.errors import BitnasError, SpecError
from bitnas.plan import FLOAT_BITS
from bitnas.registry import HARDWARE, QUANTIZERS, SPACES, STRATEGIES, TASKS

SECTIONS = ("study", "space", "task", "hardware", "quantizers", "objectives", "constraints")
#: the strategy of a spec that names none: ILP warm start, then GP, then TPE (`bitnas bench`)
DEFAULT_STRATEGY = "sensitivity-guided"
STUDY_KEYS = ("name", "trials", "seed", "storage", "strategy", "sampler", "directions")
DIRECTIONS = ("maximize", "minimize")
#: what a space gets besides its [space] options: from the task, and the [quantizers] tables
SPACE_CONTEXT = {"input_shape", "num_classes", "quantizer_options", "input_vocab"}
STUDY_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


QAT_MODES = ("off", "always", "when_broken", "promote")


@dataclass(frozen=True)
class TrainConfig:
    """How FP models are trained and PTQ is calibrated (the spec's [task] table)."""

    epochs: int = 20
    lr: float = 3e-3
    batch_size: int = 64
    weight_decay: float = 0.0
    calib_batches: int = 4
    #: "off" | "always" | "when_broken" (PTQ lost more than qat_threshold) | "promote"
    #: (multi-fidelity: QAT only where PTQ, given promote_margin more accuracy, would
    #: not be dominated by the study's current front)
    qat: str = "off"
    qat_epochs: int = 2
    qat_lr: float = 5e-4
    qat_threshold: float = 0.02
    promote_margin: float = 0.01
    #: knowledge distillation: every QAT fine-tune learns from a larger FP teacher's soft
    #: targets at ``kd_temperature`` (weight ``kd_alpha``) beside the hard labels (1 - alpha)
    kd: bool = False
    kd_temperature: float = 4.0
    kd_alpha: float = 0.7
    #: the teacher: a space ("" = the study's) and an architecture of it (its arch dict, as
    #: stored on trials); trained once for ``teacher_epochs`` (0: ``epochs``) and cached
    teacher_space: str = ""
    teacher: Mapping[str, Any] = field(default_factory=dict)
    teacher_epochs: int = 0

    #: the fields FP training depends on (the FP cache key); the rest concern QAT
    FP_FIELDS = ("epochs", "lr", "batch_size", "weight_decay")

    def __post_init__(self) -> None:
        if self.qat not in QAT_MODES:
            raise BitnasError(f"task.qat = {self.qat!r}; use one of: {', '.join(QAT_MODES)}")
        if not isinstance(self.kd, bool):
            raise BitnasError(f"task.kd must be true or false, got {self.kd!r}")
        if not isinstance(self.teacher, Mapping):
            raise BitnasError("task.teacher must be a table of the teacher's architecture, e.g. "
                              "{ d_model = 64, depth = 2, heads = 4, mlp_ratio = 2 }")
        if not isinstance(self.teacher_space, str):
            raise BitnasError(f"task.teacher_space must be a space name, got {self.teacher_space!r}")
        if self.kd and not self.teacher:
            raise BitnasError("task.kd = true needs task.teacher, the teacher's architecture, e.g. "
                              "teacher = { d_model = 64, depth = 2, heads = 4, mlp_ratio = 2 }")
        if self.kd and self.qat == "off":
            raise BitnasError("task.kd = true distils during QAT, but task.qat = 'off'; set task.qat "
                              "(always, when_broken or promote)")
        t, a = self.kd_temperature, self.kd_alpha
        if isinstance(t, bool) or not isinstance(t, int | float) or not math.isfinite(t) or t <= 0:
            raise BitnasError(f"task.kd_temperature must be a positive number, got {t!r}")
        if isinstance(a, bool) or not isinstance(a, int | float) or not 0 <= a <= 1:
            raise BitnasError(f"task.kd_alpha must be a weight in 0..1, got {a!r}")
        if isinstance(self.teacher_epochs, bool) or not isinstance(self.teacher_epochs, int) \
                or self.teacher_epochs < 0:
            raise BitnasError(f"task.teacher_epochs must be 0 (task.epochs) or positive, "
                              f"got {self.teacher_epochs!r}")
        for name in ("qat_threshold", "promote_margin"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0 <= v <= 1:
                raise BitnasError(f"task.{name} must be an accuracy difference in 0..1, got {v!r}")
        for name in ("epochs", "batch_size", "calib_batches", "qat_epochs"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise BitnasError(f"task.{name} must be a positive integer, got {v!r}")
        for name in ("lr", "weight_decay", "qat_lr"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
                raise BitnasError(f"task.{name} must be a finite non-negative number, got {v!r}")


def train_config_fields() -> set[str]:
    return set(asdict(TrainConfig()))


#: the keys of a metric bound in [constraints]: absolute floor or ceiling, or the largest
#: loss against the floating-point model
BOUND_KEYS = ("min", "max", "max_drop")


@dataclass(frozen=True)
class MetricBound:
    """A bound on a task metric, applied after evaluation (``accuracy = { min = 0.9 }``, or
    ``{ max_drop = 0.01 }``: at most 1 point worse than the candidate's FP model)."""

    metric: str
    direction: str  # the metric's natural direction: what "worse" means for max_drop
    min: float | None = None
    max: float | None = None
    max_drop: float | None = None

    def violation(self, value: float, fp_value: float | None) -> float:
        """> 0 when ``value`` breaks the bound (Optuna's constraint convention), in the
        metric's own units: the largest excess over the bound's parts."""
        excess = []
        if self.min is not None:
            excess.append(self.min - value)
        if self.max is not None:
            excess.append(value - self.max)
        if self.max_drop is not None:
            if fp_value is None:
                raise BitnasError(f"constraint {self.metric}.max_drop needs the FP model's {self.metric}")
            drop = fp_value - value if self.direction == "maximize" else value - fp_value
            excess.append(drop - self.max_drop)
        return max(excess)

    def key(self) -> str:
        """The constraint's name on a trial."""
        return f"{self.metric}_bound"

    def to_dict(self) -> dict[str, float]:
        return {k: getattr(self, k) for k in BOUND_KEYS if getattr(self, k) is not None}


@dataclass(frozen=True)
class Objective:
    name: str
    direction: str
    #: the hypervolume reference value (worse than any result that should count); None:
    #: 0 for a maximised metric, and for a cost the run works one out and stores it
    reference: float | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "direction": self.direction}
        if self.reference is not None:
            d["reference"] = self.reference
        return d


@dataclass(frozen=True)
class StudySpec:
    """A validated study spec. ``to_dict``/``from_dict`` round-trip it."""

    name: str
    trials: int
    space: Mapping[str, Any]
    task: Mapping[str, Any]
    hardware: Mapping[str, Any]
    objectives: tuple[Objective, ...]
    seed: int = 0
    storage: str | None = None
    sampler: str = DEFAULT_STRATEGY
    constraints: Mapping[str, float] = field(default_factory=dict)
    #: bounds on task metrics, applied after evaluation
    metric_bounds: tuple[MetricBound, ...] = ()
    #: [quantizers.NAME] options (a list: searched per layer group)
    quantizers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: derived, not serialized: every cost field of the hardware model, and the task's metrics
    cost_fields: tuple[str, ...] = field(default=(), compare=False)
    metrics: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def directions(self) -> list[str]:
        return [o.direction for o in self.objectives]

    @property
    def train(self) -> TrainConfig:
        return TrainConfig(**{k: v for k, v in self.task.items() if k in train_config_fields()})

    def task_options(self) -> dict[str, Any]:
        return {k: v for k, v in self.task.items() if k != "name" and k not in train_config_fields()}

    def space_options(self) -> dict[str, Any]:
        return {k: v for k, v in self.space.items() if k != "name"}

    def space_kwargs(self) -> dict[str, Any]:
        """The space's options plus the quantizer options it fills into every plan."""
        return {**self.space_options(), "quantizer_options": copy.deepcopy(dict(self.quantizers))}

    def hardware_options(self) -> dict[str, Any]:
        return {k: v for k, v in self.hardware.items() if k != "name"}

    def to_dict(self, *, include_storage: bool = True) -> dict[str, Any]:
        """Plain dict of the spec; ``include_storage=False`` for copies stored on a study
        (a storage URL may hold a password)."""
        study: dict[str, Any] = {
            "name": self.name,
            "trials": self.trials,
            "seed": self.seed,
            "sampler": self.sampler,
        }
        if self.storage is not None and include_storage:
            study["storage"] = self.storage
        return {
            "study": study,
            "space": copy.deepcopy(dict(self.space)),
            "task": copy.deepcopy(dict(self.task)),
            "hardware": copy.deepcopy(dict(self.hardware)),
            "quantizers": copy.deepcopy(dict(self.quantizers)),
            "objectives": [o.to_dict() for o in self.objectives],
            "constraints": {**dict(self.constraints),
                            **{b.metric: b.to_dict() for b in self.metric_bounds}},
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], *, default_name: str = "study") -> StudySpec:
        return _validate(raw, default_name)

    def identity(self) -> dict[str, Any]:
        """What must match for a stored study to be resumed with this spec.

        The trial budget, sampler and storage may change between runs; what a
        trial's result depends on may not. Values are compared as validated, with
        defaults filled in, so ``w_bits = 4`` equals ``[4]`` and a default spelled
        out equals one left out.
        """
        space_cls = SPACES.get(self.space["name"])
        task_cls = TASKS.get(self.task["name"])
        hardware = HARDWARE.create(self.hardware["name"], **self.hardware_options())
        ident = {
            "space": {"name": self.space["name"],
                      **_with_defaults(space_cls, self.space_options(),
                                       skip=SPACE_CONTEXT)},
            "task": {"name": self.task["name"],
                     **_with_defaults(task_cls, self.task_options(), skip=set()),
                     **self._train_identity()},
            "hardware": {"name": self.hardware["name"], **hardware.settings()},
            "objectives": [o.to_dict() for o in self.objectives],
            "constraints": dict(self.constraints),
            "seed": self.seed,
        }
        # only where present, so that studies made before these existed still resume
        if self.metric_bounds:
            ident["metric_bounds"] = {b.metric: b.to_dict() for b in self.metric_bounds}
        if self.quantizers:
            ident["quantizers"] = dict(self.quantizers)
        return json.loads(json.dumps(ident))

    def _train_identity(self) -> dict[str, Any]:
        """The training settings; ``promote_margin`` only where it decides anything (and
        so a study made before it existed still resumes)."""
        train = asdict(self.train)
        if train["qat"] != "promote":
            del train["promote_margin"]
        return train

    def replace(self, **changes: Any) -> StudySpec:
        """A copy with [study] fields changed (CLI flags), validated again."""
        d = self.to_dict()
        for k, v in changes.items():
            if v is not None:
                d["study"][k] = v
        return _validate(d, self.name)


def _with_defaults(factory: Any, options: Mapping[str, Any], skip: set[str]) -> dict[str, Any]:
    """Keyword options with the factory's defaults filled in; a scalar given where the
    default is a sequence becomes a one-element list, and numbers compare as floats."""
    out: dict[str, Any] = {}
    for name, p in inspect.signature(factory).parameters.items():
        if p.kind is not p.KEYWORD_ONLY or name in skip:
            continue
        value = options.get(name, p.default)
        if isinstance(p.default, tuple | list) and not isinstance(value, tuple | list):
            value = [value]
        out[name] = _canonical(value)
    return out


def _canonical(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_canonical(v) for v in value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value


def load_spec(path: str | Path) -> StudySpec:
    """Read and validate a TOML study spec."""
    p = Path(path)
    if p.is_dir():
        raise SpecError(f"spec path {p} is a directory; pass the path to a .toml study spec")
    if not p.is_file():
        raise SpecError(f"spec file {p} not found; pass the path to a .toml study spec")
    try:
        raw = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{p}: malformed TOML: {e}") from None
    except UnicodeDecodeError:
        raise SpecError(f"{p}: not a text file; a spec is UTF-8 TOML") from None
    return _validate(raw, p.stem)


def _table(raw: Mapping[str, Any], key: str, *, required: bool) -> dict[str, Any]:
    value = raw.get(key)
    if value is None:
        if required:
            raise SpecError(f"[{key}] section is missing; it needs at least name = \"...\"")
        return {}
    if not isinstance(value, dict):
        raise SpecError(f"[{key}] must be a table, got {type(value).__name__}")
    return dict(value)


def _accepted(factory: Any, skip: set[str]) -> set[str]:
    params = inspect.signature(factory).parameters
    return {n for n, p in params.items() if p.kind is p.KEYWORD_ONLY} - skip


class _ReadKeys(dict):
    """A dict that records which keys were read (an architecture's knobs a space's build uses)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def keys(self) -> Any:  # a build that copies or walks the dict reads every key
        self.read.update(dict.keys(self))
        return super().keys()

    def items(self) -> Any:
        self.read.update(dict.keys(self))
        return super().items()

    def __iter__(self) -> Any:
        self.read.update(dict.keys(self))
        return super().__iter__()


def _check_kwargs(factory: Any, options: Mapping[str, Any], section: str, skip: set[str],
                  also: set[str] = frozenset()) -> None:
    """Reject option keys the registered factory does not accept (``also``: keys the
    section accepts besides, listed in the message too)."""
    accepted = _accepted(factory, skip) | set(also)
    unknown = set(options) - accepted
    if unknown:
        raise SpecError(
            f"unknown {section} option(s) {sorted(unknown)}; "
            f"accepted: {', '.join(sorted(accepted)) or '(none)'}"
        )


def _quantizer_options(raw: Any, offered: Sequence[str]) -> dict[str, dict[str, Any]]:
    """[quantizers.NAME] tables, each validated by the quantizer's config. A list value is
    searched per layer group; every value in it must be valid."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SpecError("[quantizers] must hold one table per quantizer, e.g. [quantizers.uniform]")
    out: dict[str, dict[str, Any]] = {}
    for name, table in raw.items():
        QUANTIZERS.check(name, "[quantizers] table")
        if name not in offered:
            raise SpecError(f"[quantizers.{name}] sets options of a quantizer the space does not "
                            f"offer; space.quantizers: {', '.join(offered)}")
        if not isinstance(table, dict):
            raise SpecError(f"[quantizers.{name}] must be a table of option = value")
        for key, value in table.items():
            values = value if isinstance(value, list) else [value]
            if not values or len(set(map(repr, values))) != len(values):
                raise SpecError(f"quantizers.{name}.{key} must list distinct values, got {value!r}")
            for v in values:
                QUANTIZERS.create(name, **{key: v})  # the config validates, in one line
        out[name] = dict(table)
    return out


def _metric_bound(name: str, value: Any, direction: str) -> MetricBound:
    where = f"constraints.{name}"
    if not isinstance(value, dict) or not value:
        raise SpecError(f"{where} bounds a task metric: write {{ min = 0.9 }}, {{ max = ... }} or "
                        f"{{ max_drop = 0.01 }} (at most that much worse than the FP model)")
    unknown = sorted(set(value) - set(BOUND_KEYS))
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {unknown}; use {', '.join(BOUND_KEYS)}")
    for k, v in value.items():
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise SpecError(f"{where}.{k} must be a finite number, got {v!r}")
    if "max_drop" in value and value["max_drop"] < 0:
        raise SpecError(f"{where}.max_drop must be >= 0 (a loss against FP), got {value['max_drop']!r}")
    if "min" in value and "max" in value and value["min"] > value["max"]:
        raise SpecError(f"{where}: min {value['min']} is above max {value['max']}")
    return MetricBound(name, direction, **{k: float(v) for k, v in value.items()})


def _check_weight_bits(space_obj: Any, hw: Any, hw_name: str) -> None:
    """Refuse weight (and activation) bits the hardware cannot run, naming the group and the bits."""
    acts = getattr(hw, "supported_act_bits", None)
    if acts is not None:
        bad = sorted(set(space_obj.precision.a_bits) - set(acts))
        if bad:
            raise SpecError(
                f"hardware {hw_name} runs {', '.join(str(b) for b in sorted(acts))}-bit activations, but "
                f"space.a_bits offers {bad} to layer group {space_obj.all_groups()[0]}; set space.a_bits = "
                f"{sorted(acts)} or choose another hardware model")
    prec = space_obj.precision
    for q in prec.quantizers:
        for combo in prec.option_combos(q):  # every combination a group may take, made once
            runs = QUANTIZERS.create(q, **dict(combo)).supported_bits()
            if runs is None:
                continue
            for g in space_obj.all_groups():
                bad = sorted(set(prec.w_bits_for(g)) - runs - {FLOAT_BITS})
                if bad:
                    shown = ", ".join(str(b) for b in sorted(runs))
                    with_opts = f" with {', '.join(f'{k} = {v!r}' for k, v in combo)}" if combo else ""
                    raise SpecError(f"quantizer {q}{with_opts} runs {shown}-bit weights, but the space "
                                    f"offers {bad} to layer group {g}; drop them from space.w_bits or the "
                                    "quantizer from space.quantizers")
    supported = hw.supported_weight_bits
    if supported is None:
        return
    shown = ", ".join(str(b) for b in sorted(supported))
    outside = sorted(set(prec.w_bits) - set(supported))
    free = [g for g in space_obj.all_groups() if g not in prec.group_w_bits]
    if outside and free:
        raise SpecError(
            f"hardware {hw_name} runs {shown}-bit weights, but space.w_bits offers {outside} to "
            f"layer group {free[0]}" + (f" and {len(free) - 1} more" if len(free) > 1 else "")
            + "; drop them or choose another hardware model")
    for g, bits in prec.group_w_bits.items():
        bad = sorted(set(bits) - set(supported))
        if bad:
            raise SpecError(f"hardware {hw_name} runs {shown}-bit weights, but space.group_w_bits."
                            f"{g} offers {bad} to layer group {g}; drop them or choose another "
                            "hardware model")


def _validate(raw: Mapping[str, Any], default_name: str) -> StudySpec:
    unknown = set(raw) - set(SECTIONS)
    if unknown:
        raise SpecError(f"unknown section(s) {sorted(unknown)}; sections: {', '.join(SECTIONS)}")

    study = _table(raw, "study", required=False)
    bad = set(study) - set(STUDY_KEYS)
    if bad:
        raise SpecError(f"unknown [study] key(s) {sorted(bad)}; accepted: {', '.join(STUDY_KEYS)}")
    name = study.get("name", default_name)
    if not isinstance(name, str) or not STUDY_NAME.fullmatch(name):
        raise SpecError(
            f"study.name must be letters, digits, '.', '_' or '-' (it names the run "
            f"directory), got {name!r}"
        )
    trials = study.get("trials", 20)
    if isinstance(trials, bool) or not isinstance(trials, int) or trials < 1:
        raise SpecError(f"study.trials must be a positive integer, got {trials!r}")
    seed = study.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise SpecError(f"study.seed must be an integer in 0..{2**32 - 1}, got {seed!r}")
    storage = study.get("storage")
    if storage is not None and (not isinstance(storage, str) or not storage):
        raise SpecError(f"study.storage must be a storage URL string, got {storage!r}")
    if "strategy" in study and "sampler" in study and study["strategy"] != study["sampler"]:
        raise SpecError("study.strategy and study.sampler name the same thing; give only strategy")
    key = "strategy" if "strategy" in study else "sampler"
    sampler = study.get(key, DEFAULT_STRATEGY)
    if not isinstance(sampler, str):
        raise SpecError(f"study.{key} must be a name, got {sampler!r}")
    STRATEGIES.check(sampler, f"study.{key}")

    space = _table(raw, "space", required=True)
    task = _table(raw, "task", required=True)
    hardware = _table(raw, "hardware", required=True)
    for section, table, reg in (("space", space, SPACES), ("task", task, TASKS),
                                ("hardware", hardware, HARDWARE)):
        if "name" not in table:
            raise SpecError(f"{section}.name is missing; choose one of: {', '.join(reg.names())}")
        if not isinstance(table["name"], str):
            raise SpecError(
                f"{section}.name must be a name string, got {table['name']!r}; "
                f"choose one of: {', '.join(reg.names())}"
            )
        reg.check(table["name"], f"{section}.name")
    # Constructing the parts validates every value (they are cheap: no data is loaded).
    space_opts = {k: v for k, v in space.items() if k != "name"}
    task_opts = {k: v for k, v in task.items() if k != "name"}
    train_opts = {k: v for k, v in task_opts.items() if k in train_config_fields()}
    task_opts = {k: v for k, v in task_opts.items() if k not in train_opts}
    task_cls = TASKS.get(task["name"])
    _check_kwargs(task_cls, task_opts, "task", skip=set(), also=train_config_fields())
    train_cfg = TrainConfig(**train_opts)
    space_cls = SPACES.get(space["name"])
    _check_kwargs(space_cls, space_opts, "space", skip=SPACE_CONTEXT)
    task_obj = task_cls(**task_opts)
    space_obj = make_space(space["name"], task_obj, task["name"], **space_opts)
    if train_cfg.kd:  # the teacher must build (it is trained only when the first QAT runs)
        teacher_name = train_cfg.teacher_space or space["name"]
        SPACES.check(teacher_name, "task.teacher_space")
        teacher_space = make_space(teacher_name, task_obj, task["name"],
                                   **(space_opts if teacher_name == space["name"] else {}))
        arch = _ReadKeys(train_cfg.teacher)
        try:
            teacher_space.build(arch)
        except (KeyError, TypeError, ValueError) as e:
            raise SpecError(f"task.teacher {dict(train_cfg.teacher)} is not an architecture of space "
                            f"{teacher_name} (missing or bad {e}); give every arch knob it needs") from None
        unread = sorted(set(dict.keys(arch)) - arch.read)
        if unread:
            raise SpecError(f"task.teacher sets {', '.join(unread)}, which space {teacher_name} does not "
                            f"use (it read {', '.join(sorted(arch.read))}); remove or rename them")
    quantizers = _quantizer_options(raw.get("quantizers"), space_obj.precision.quantizers)
    if quantizers:  # again, now with the options filled into every plan
        space_obj = make_space(space["name"], task_obj, task["name"], quantizer_options=quantizers,
                               **space_opts)
    hw_opts = {k: v for k, v in hardware.items() if k != "name"}
    hw = HARDWARE.get(hardware["name"])(**hw_opts)
    _check_weight_bits(space_obj, hw, hardware["name"])

    metrics: dict[str, str] = dict(task_cls.metrics)
    cost_fields = tuple(hw.cost_fields())
    objectives = _objectives(raw.get("objectives"), metrics, cost_fields, study.get("directions"))
    constraints, bounds = _constraints(raw.get("constraints"), metrics, cost_fields)
    return StudySpec(
        name=name, trials=trials, seed=seed, storage=storage, sampler=sampler,
        space=space, task=task, hardware=hardware, objectives=objectives,
        constraints=constraints, metric_bounds=bounds, quantizers=quantizers,
        cost_fields=cost_fields, metrics=metrics,
    )


def make_space(name: str, task: Any, task_name: str, **options: Any) -> Any:
    """Space ``name`` for ``task``'s inputs: its shape and classes, and, for a task of token
    ids (``input_vocab``), the vocabulary, which only a space that ``takes_tokens`` reads."""
    cls = SPACES.get(SPACES.check(name, "space.name"))
    tokens = bool(getattr(cls, "takes_tokens", False))
    if bool(getattr(task, "input_vocab", 0)) != tokens:
        if tokens:
            raise SpecError(f"space {name} reads token ids, and task {task_name} gives features; "
                            "use a token task (factual_recall, associations)")
        raise SpecError(f"task {task_name} gives token ids, and space {name} reads features; use a "
                        "space that takes tokens (recall_transformer, assoc_memory)")
    if tokens:
        options["input_vocab"] = task.input_vocab
    return cls(input_shape=task.input_shape, num_classes=task.num_classes, **options)


def _objectives(raw: Any, metrics: Mapping[str, str], cost_fields: Sequence[str],
                directions: Any) -> tuple[Objective, ...]:
    natural = {**metrics, **{f: "minimize" for f in cost_fields}}
    if not isinstance(raw, list) or not raw:
        raise SpecError(
            "[[objectives]] is missing; add one table per objective, name one of: "
            + ", ".join(natural)
        )
    if directions is not None and (not isinstance(directions, list) or len(directions) != len(raw)):
        raise SpecError(
            f"study.directions must list one direction per objective ({len(raw)}), got {directions!r}"
        )
    out: list[Objective] = []
    for i, entry in enumerate(raw):
        where = f"objectives[{i}]"
        if not isinstance(entry, dict):
            raise SpecError(f"{where} must be a table with name (and direction)")
        bad = set(entry) - {"name", "direction", "reference"}
        if bad:
            raise SpecError(f"unknown {where} key(s) {sorted(bad)}; accepted: name, direction, reference")
        reference = entry.get("reference")
        if reference is not None and (isinstance(reference, bool) or not isinstance(reference, int | float)
                                      or not math.isfinite(reference)):
            raise SpecError(f"{where}.reference must be a finite number (the hypervolume reference "
                            f"value), got {reference!r}")
        name = entry.get("name")
        if not isinstance(name, str) or name not in natural:
            raise SpecError(f"{where}.name = {name!r} is unknown; choose one of: {', '.join(natural)}")
        direction = entry.get("direction")
        if directions is not None and directions[i] not in DIRECTIONS:
            raise SpecError(f"study.directions[{i}] = {directions[i]!r}; use 'maximize' or 'minimize'")
        if directions is not None:
            if direction is not None and direction != directions[i]:
                raise SpecError(
                    f"{where}.direction = {direction!r} contradicts study.directions[{i}] = "
                    f"{directions[i]!r}; give it in one place"
                )
            direction = directions[i]
        direction = natural[name] if direction is None else direction
        if direction not in DIRECTIONS:
            raise SpecError(f"{where}.direction = {direction!r}; use 'maximize' or 'minimize'")
        if reference is not None and name in cost_fields and direction == "minimize" and reference <= 0:
            raise SpecError(f"{where}.reference = {reference!r}: no {name} can be below it, so the "
                            "hypervolume would always be 0; give a positive cost, worse than any "
                            "result that should count")
        out.append(Objective(name, direction, None if reference is None else float(reference)))
    names = [o.name for o in out]
    if len(set(names)) != len(names):
        raise SpecError(f"an objective is listed twice: {names}")
    return tuple(out)


def _constraints(raw: Any, metrics: Mapping[str, str], cost_fields: Sequence[str]
                 ) -> tuple[dict[str, float], tuple[MetricBound, ...]]:
    """(upper bounds on cost fields, bounds on task metrics)."""
    if raw is None:
        return {}, ()
    if not isinstance(raw, dict):
        raise SpecError("[constraints] must be a table: cost field = upper bound, or "
                        "metric = { min = ... } / { max_drop = ... }")
    out = {}
    bounds = []
    for key, value in raw.items():
        if key in metrics:
            bounds.append(_metric_bound(key, value, metrics[key]))
            continue
        if key not in cost_fields:
            raise SpecError(
                f"constraints.{key} is unknown; bound a cost field ({', '.join(cost_fields)}) "
                f"or a task metric ({', '.join(metrics)})"
            )
        if isinstance(value, dict) and set(value) == {"max"}:
            value = value["max"]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(
            value
        ) or value <= 0:
            raise SpecError(f"constraints.{key} must be a positive upper bound, got {value!r}")
        out[key] = float(value)
    return out, tuple(bounds)
