"""Hypervolume of a study's front, its history, the knee point, and "best under budget".

The hypervolume is computed by moocore (its exact 2-D/3-D/n-D algorithms; public and
tested), not by Optuna's private helper. It needs a reference point, one value per
objective that is worse than any result that should count. The point is *declared*
and stored on the study (user attr ``hv_reference``) the first time a run opens it,
so every later figure of that study uses the same one:

- an objective's ``reference`` in the spec, when given;
- else, for a maximised metric (accuracy), 0;
- else, for a cost, the spec's budget on that field if it has one (nothing above it
  is feasible), or the static cost of the most expensive candidate the space can
  propose: every arch knob at its largest choice, every group at its widest bits,
  under the dearest scheme.
  For activity-based models the static cost assumes every input spikes, an upper
  bound.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from bitnas.errors import BitnasError
from bitnas.search.pareto import dominates, is_feasible, minimising_signs
from bitnas.spec import Objective, StudySpec

REFERENCE_ATTR = "hv_reference"


def hypervolume(points: Sequence[Sequence[float]], reference: Sequence[float],
                directions: Sequence[str]) -> float:
    """The volume dominated by ``points`` and bounded by ``reference``.

    ``directions`` says per objective whether it is maximised; points that are not
    strictly better than the reference in every objective add nothing.
    """
    import moocore

    pts = np.asarray(points, dtype=float).reshape(-1, len(directions))
    ref = np.asarray(reference, dtype=float)
    sign = np.array(minimising_signs(directions))
    pts, ref = pts * sign, ref * sign  # all minimised from here
    pts = pts[np.all(pts < ref, axis=1)]
    if not len(pts):
        return 0.0
    return float(moocore.hypervolume(pts, ref=ref))


def default_reference(spec: StudySpec, ctx: Any) -> dict[str, Any]:
    """The reference point a new study declares (see the module docstring)."""
    from bitnas.search.strategies import uniform_params

    values: dict[str, float] = {}
    sources: dict[str, str] = {}
    worst = None
    for o in spec.objectives:
        if o.reference is not None:
            values[o.name], sources[o.name] = o.reference, "spec"
        elif o.direction == "maximize":
            values[o.name], sources[o.name] = 0.0, "worst value of a maximised metric"
        elif o.name in spec.constraints:
            values[o.name], sources[o.name] = float(spec.constraints[o.name]), "the spec's budget"
        elif o.name in spec.cost_fields:
            if worst is None:
                from optuna.trial import FixedTrial

                space = ctx.space  # each group at its widest bits, under each scheme
                worst = [ctx.cost(space.suggest(FixedTrial(uniform_params(space, max, q, arch_pick=max))))
                         for q in space.precision.quantizers]
            values[o.name] = max(float(c.value(o.name)) for c in worst)
            sources[o.name] = "static cost of the largest candidate at the widest bits"
        else:
            raise BitnasError(f"objective {o.name} is minimised and has no natural worst value; "
                              f"give it a reference in the spec ([[objectives]] reference = ...)")
    return {"values": values, "sources": sources}


def study_reference(study: optuna.Study, objectives: Sequence[Objective]) -> list[float] | None:
    """The study's declared reference point, in objective order (None if it has none)."""
    stored = study.user_attrs.get(REFERENCE_ATTR)
    if not stored:
        return None
    return [float(stored["values"][o.name]) for o in objectives]


def feasible_points(trials: Sequence[FrozenTrial]) -> list[list[float]]:
    """Objective values of the feasible COMPLETE trials."""
    return [list(t.values) for t in trials
            if t.state == TrialState.COMPLETE and t.values is not None and is_feasible(t)]


def history(study: optuna.Study, objectives: Sequence[Objective],
            reference: Sequence[float]) -> list[tuple[int, float]]:
    """(finished trials so far, hypervolume) after each finished trial, in trial order."""
    directions = [o.direction for o in objectives]
    finished = sorted((t for t in study.get_trials(deepcopy=False)
                       if t.state in (TrialState.COMPLETE, TrialState.PRUNED)), key=lambda t: t.number)
    # only the non-dominated points so far count, and the volume changes only when a new
    # point joins them: recomputed then, not after every trial (a long study stays linear in
    # its trials times its front)
    out, points, hv = [], [], 0.0
    for n, t in enumerate(finished, start=1):
        changed = False
        for p in feasible_points([t]):
            if any(q == p or dominates(q, p, directions) for q in points):
                continue
            points = [q for q in points if not dominates(p, q, directions)] + [p]
            changed = True
        if changed:
            hv = hypervolume(points, reference, directions)
        out.append((n, hv))
    return out


def knee(records: Sequence[Mapping[str, Any]], objectives: Sequence[Objective]) -> Mapping[str, Any] | None:
    """The front member closest to the ideal point once every objective is scaled to
    [0, 1] over the front (0 = the front's best value, 1 = its worst)."""
    if not records:
        return None
    vals = np.array([[r["values"][o.name] for o in objectives] for r in records], dtype=float)
    vals = vals * np.array(minimising_signs([o.direction for o in objectives]))
    lo, hi = vals.min(axis=0), vals.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    dist = np.linalg.norm((vals - lo) / span, axis=1)
    return records[int(np.argmin(dist))]


def parse_bounds(items: Sequence[str], allowed: Sequence[str]) -> dict[str, float]:
    """``["energy_j=1e-5", ...]`` -> {field: bound}; one-line errors for anything else."""
    bounds: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise BitnasError(f"--under {item!r}: write FIELD=VALUE, e.g. energy_j=1e-5")
        if name not in allowed:
            raise BitnasError(f"--under {item!r}: {name} is not one of: {', '.join(allowed)}")
        try:
            bound = float(value)
        except ValueError:
            raise BitnasError(f"--under {item!r}: {value!r} is not a number") from None
        if not np.isfinite(bound):
            raise BitnasError(f"--under {item!r}: the bound must be finite")
        bounds[name] = bound
    return bounds


def value_of(record: Mapping[str, Any], name: str) -> float:
    """A front record's objective value, metric or cost field."""
    if name in record["values"]:
        return float(record["values"][name])
    if name in record.get("metrics", {}):
        return float(record["metrics"][name])
    return float(record["cost"][name])


def best_under(records: Sequence[Mapping[str, Any]], objectives: Sequence[Objective],
               bounds: Mapping[str, float]) -> Mapping[str, Any] | None:
    """The record with the best first objective among those within every bound."""
    ok = [r for r in records if all(value_of(r, k) <= v for k, v in bounds.items())]
    if not ok:
        return None
    first = objectives[0]
    pick = max if first.direction == "maximize" else min
    return pick(ok, key=lambda r: r["values"][first.name])


def front_hypervolume(study: optuna.Study, objectives: Sequence[Objective]) -> str:
    """One line: the hypervolume of the study's feasible trials and its reference point."""
    reference = study_reference(study, objectives)
    if reference is None:
        return "hypervolume: the study declares no reference point (made by an older bitnas)"
    hv = hypervolume(feasible_points(study.get_trials(deepcopy=False)), reference,
                     [o.direction for o in objectives])
    ref = ", ".join(f"{o.name}={v:.4g}" for o, v in zip(objectives, reference, strict=True))
    return f"hypervolume {hv:.6g} (reference point {ref})"
