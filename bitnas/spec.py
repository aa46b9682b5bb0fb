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
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bitnas.errors import SpecError
from bitnas.evaluators.training import TrainConfig, train_config_fields
from bitnas.hardware_models.base import COST_FIELDS
from bitnas.registry import HARDWARE, SPACES, STRATEGIES, TASKS, load_builtins

SECTIONS = ("study", "space", "task", "hardware", "objectives", "constraints")
#: the strategy of a spec that names none: ILP warm start, then GP, then TPE (`bitnas bench`)
DEFAULT_STRATEGY = "sensitivity-guided"
STUDY_KEYS = ("name", "trials", "seed", "storage", "strategy", "sampler", "directions")
DIRECTIONS = ("maximize", "minimize")
STUDY_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


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
            "objectives": [o.to_dict() for o in self.objectives],
            "constraints": dict(self.constraints),
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
                                       skip={"input_shape", "num_classes"})},
            "task": {"name": self.task["name"],
                     **_with_defaults(task_cls, self.task_options(), skip=set()),
                     **self._train_identity()},
            "hardware": {"name": self.hardware["name"], **hardware.settings()},
            "objectives": [o.to_dict() for o in self.objectives],
            "constraints": dict(self.constraints),
            "seed": self.seed,
        }
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


def _check_kwargs(factory: Any, options: Mapping[str, Any], section: str, skip: set[str]) -> None:
    """Reject option keys the registered factory does not accept."""
    params = inspect.signature(factory).parameters
    accepted = {n for n, p in params.items() if p.kind is p.KEYWORD_ONLY} - skip
    unknown = set(options) - accepted
    if unknown:
        raise SpecError(
            f"unknown {section} option(s) {sorted(unknown)}; "
            f"accepted: {', '.join(sorted(accepted)) or '(none)'}"
        )


def _validate(raw: Mapping[str, Any], default_name: str) -> StudySpec:
    load_builtins()
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
    _check_kwargs(task_cls, task_opts, "task", skip=set())
    TrainConfig(**train_opts)
    space_cls = SPACES.get(space["name"])
    _check_kwargs(space_cls, space_opts, "space", skip={"input_shape", "num_classes"})
    task_obj = task_cls(**task_opts)
    space_obj = space_cls(input_shape=task_obj.input_shape, num_classes=task_obj.num_classes, **space_opts)
    hw_opts = {k: v for k, v in hardware.items() if k != "name"}
    hw = HARDWARE.get(hardware["name"])(**hw_opts)
    bits_range = getattr(hw, "weight_bits_range", None)
    if bits_range is not None:
        lo, hi = bits_range
        outside = sorted({b for b in space_obj.precision.w_bits if not lo <= b <= hi})
        if outside:
            raise SpecError(
                f"hardware {hardware['name']} holds {lo}..{hi}-bit weights, but space.w_bits offers "
                f"{outside}; drop them or choose another hardware model"
            )

    metrics: dict[str, str] = dict(TASKS.get(task["name"]).metrics)
    objectives = _objectives(raw.get("objectives"), metrics, study.get("directions"))
    constraints = _constraints(raw.get("constraints"))
    return StudySpec(
        name=name, trials=trials, seed=seed, storage=storage, sampler=sampler,
        space=space, task=task, hardware=hardware, objectives=objectives,
        constraints=constraints,
    )


def _objectives(raw: Any, metrics: Mapping[str, str], directions: Any) -> tuple[Objective, ...]:
    natural = {**metrics, **{f: "minimize" for f in COST_FIELDS}}
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
        out.append(Objective(name, direction, None if reference is None else float(reference)))
    names = [o.name for o in out]
    if len(set(names)) != len(names):
        raise SpecError(f"an objective is listed twice: {names}")
    return tuple(out)


def _constraints(raw: Any) -> dict[str, float]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SpecError("[constraints] must be a table of cost field = upper bound")
    out = {}
    for key, value in raw.items():
        if key not in COST_FIELDS:
            raise SpecError(
                f"constraints.{key} is unknown; bound one of: {', '.join(COST_FIELDS)}"
            )
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(
            value
        ) or value <= 0:
            raise SpecError(f"constraints.{key} must be a positive upper bound, got {value!r}")
        out[key] = float(value)
    return out
