"""The Pareto front of a study (feasible trials only), its records, and their export."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from bitnas.atomic import STALE_TMP_S, atomic_write, atomic_write_all  # noqa: F401 (re-exported)
from bitnas.hardware_models.base import COST_FIELDS
from bitnas.plan import FLOAT_BITS, PLAN_LEGEND, candidate_key, describe_arch, describe_plan
from bitnas.spec import Objective


def _key(trial: FrozenTrial) -> str:
    """Identifies the candidate a trial evaluated (duplicates share it)."""
    return candidate_key(trial.user_attrs.get("candidate", trial.params))


def _first_of_each(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """The bitnas trials among ``trials``, each candidate once: its earliest trial.
    (Trials added by hand carry no candidate or cost: there is nothing to export.)"""
    seen: set[str] = set()
    out = []
    for t in sorted(trials, key=lambda t: t.number):
        if {"candidate", "cost"} <= set(t.user_attrs) and _key(t) not in seen:
            seen.add(_key(t))
            out.append(t)
    return out


def front_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Non-dominated feasible COMPLETE trials, sorted by the first objective.

    A candidate proposed more than once appears once, as its earliest trial.
    """
    return sorted(_first_of_each(study.best_trials), key=lambda t: (t.values[0], t.number))


def feasible_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Feasible COMPLETE bitnas trials, each candidate once (its earliest trial)."""
    return _first_of_each([t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                           if is_feasible(t)])


def is_feasible(trial: FrozenTrial) -> bool:
    return all(v <= 0 for v in trial.constraints.values())


def minimising_signs(directions: Sequence[str]) -> list[float]:
    """1 for a minimised objective, -1 for a maximised one: values multiplied by these
    are all to be minimised."""
    return [-1.0 if d == "maximize" else 1.0 for d in directions]


def dominates(a: Sequence[float], b: Sequence[float], directions: Sequence[str]) -> bool:
    """Whether ``a`` is at least as good as ``b`` in every objective and better in one."""
    pairs = [(s * x, s * y) for s, x, y in zip(minimising_signs(directions), a, b, strict=True)]
    return all(x <= y for x, y in pairs) and any(x < y for x, y in pairs)


def objective_value(trial: FrozenTrial, objective: Objective, index: int) -> float | None:
    """The objective's value: the stored value if evaluated, else the cost (infeasible trials)."""
    if trial.state == TrialState.COMPLETE:
        return trial.values[index]
    cost = trial.user_attrs.get("cost", {})
    return float(cost[objective.name]) if objective.name in cost else None


def member_record(trial: FrozenTrial, objectives: Sequence[Objective]) -> dict[str, Any]:
    """One pareto.json entry."""
    cand = trial.user_attrs["candidate"]
    cost = trial.user_attrs["cost"]
    return {
        "trial": trial.number,
        "values": {o.name: v for o, v in zip(objectives, trial.values, strict=True)},
        "arch": cand["arch"],
        "plan": cand["plan"],
        "cost": {**{k: cost[k] for k in COST_FIELDS}, **cost.get("fields", {}),
                 "per_layer": cost["per_layer"]},
        "metrics": trial.user_attrs.get("metrics", {}),
        "params": trial.params,
    }


#: a temporary file of atomic_write_all older than this was left by a killed process
def write_json(records: list[dict[str, Any]], path: Path) -> None:
    """pareto.json at ``path`` as given (export_front makes it atomic)."""
    path.write_text(json.dumps(records, indent=2) + "\n")


def write_csv(records: list[dict[str, Any]], objectives: Sequence[Objective], path: Path) -> None:
    """pareto.csv at ``path`` as given (export_front makes it atomic)."""
    import pandas as pd

    rows = []
    membranes = any("v_bits" in lq for r in records for lq in r["plan"].values())
    for r in records:
        row: dict[str, Any] = {"trial": r["trial"]}
        row.update({o.name: r["values"][o.name] for o in objectives})
        # every cost field the hardware model reports, extra fields and energy parts included
        row.update({f"cost.{k}": v for k, v in r["cost"].items() if k != "per_layer"})
        for k, v in r["arch"].items():
            row[f"arch.{k}"] = json.dumps(v) if isinstance(v, list | dict) else v
        for group, lq in r["plan"].items():
            row[f"{group}.w_bits"] = lq["w_bits"]
            row[f"{group}.a_bits"] = lq["a_bits"]
            row[f"{group}.quantizer"] = lq["quantizer"]
            if membranes:  # a spiking plan: membrane bits, 32 where held in float
                row[f"{group}.v_bits"] = lq.get("v_bits", FLOAT_BITS)
            for k, v in lq.get("options", {}).items():
                row[f"{group}.{k}"] = v
        rows.append(row)
    pd.DataFrame(rows).to_csv(path, index=False)


def axis_label(name: str) -> str:
    """An objective's axis label: its quantity and unit where known, else its name."""
    return {"energy_j": "energy (J)", "latency_s": "latency (s)", "weight_bytes": "weights (bytes)",
            "peak_act_bytes": "peak activations (bytes)"}.get(name, name)


def write_png(study: optuna.Study, objectives: Sequence[Objective], path: Path,
              title: str = "") -> None:
    """Every finished trial, feasible and infeasible apart, with the front highlighted.

    One panel per objective after the first, each against the first. Infeasible
    trials were never evaluated: on a metric axis they sit as ticks on the bottom edge.
    Written at ``path`` as given (export_front makes it atomic).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.transforms import blended_transform_factory

    y_obj = objectives[0]
    others = list(objectives[1:]) or [objectives[0]]
    front = {_key(t) for t in front_trials(study)}
    finished = [t for t in study.get_trials(deepcopy=False)
                if t.state in (TrialState.COMPLETE, TrialState.PRUNED) and "cost" in t.user_attrs]
    fig, axes = plt.subplots(1, len(others), figsize=(5.5 * len(others), 4.2), squeeze=False)
    for ax, x_obj in zip(axes[0], others, strict=True):
        xi, yi = objectives.index(x_obj), 0
        groups: dict[str, list[tuple[float | None, float | None]]] = {
            "feasible": [], "infeasible": [], "front": []}
        unplaced = 0
        for t in finished:
            x = objective_value(t, x_obj, xi)
            y = objective_value(t, y_obj, yi)
            if x is None and y is None:
                unplaced += 1
                continue
            kind = ("front" if _key(t) in front else "feasible") if (
                t.state == TrialState.COMPLETE and is_feasible(t)) else "infeasible"
            groups[kind].append((x, y))
        feas = groups["feasible"]
        if feas:
            ax.scatter([p[0] for p in feas], [p[1] for p in feas], s=18, c="0.6",
                       label=f"feasible ({len(feas)})")
        inf = groups["infeasible"]
        if inf:
            on_axis = [p for p in inf if p[0] is not None and p[1] is not None]
            bottom = [p for p in inf if p[1] is None]  # a metric on y: never measured
            left = [p for p in inf if p[0] is None]  # a metric on x
            if on_axis:
                ax.scatter([p[0] for p in on_axis], [p[1] for p in on_axis], marker="x",
                           c="tab:red", s=22, label=f"infeasible ({len(on_axis)})")
            if bottom or left:
                label = f"infeasible, not evaluated ({len(bottom) + len(left) + unplaced})"
            if bottom:
                trans = blended_transform_factory(ax.transData, ax.transAxes)
                ax.scatter([p[0] for p in bottom], [0.0] * len(bottom), marker="|", c="tab:red",
                           s=120, transform=trans, clip_on=False, label=label)
            if left:
                trans = blended_transform_factory(ax.transAxes, ax.transData)
                ax.scatter([0.0] * len(left), [p[1] for p in left], marker="_", c="tab:red",
                           s=120, transform=trans, clip_on=False, label=None if bottom else label)
        pts = sorted(groups["front"])
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "-o", c="tab:blue", ms=7,
                    drawstyle="steps-post" if y_obj.direction == "maximize" else "default",
                    label=f"Pareto front ({len(front)})")
        xs = [p[0] for g in groups.values() for p in g if p[0] is not None and p[0] > 0]
        if xs and max(xs) / min(xs) > 20:
            ax.set_xscale("log")
        ax.set_xlabel(f"{axis_label(x_obj.name)} ({x_obj.direction})")
        ax.set_ylabel(f"{axis_label(y_obj.name)} ({y_obj.direction})")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110, format="png")
    finally:
        plt.close(fig)


def format_value(v: Any) -> str:
    """A table cell: whole numbers as integers (bytes, counts), other floats at 4 decimals, or
    4 significant digits when tiny or huge."""
    if isinstance(v, float):
        if v.is_integer() and 2 <= abs(v) < 1e9:  # not 1.0: an accuracy reads 1.0000
            return str(int(v))
        if v == 0 or (1e-3 <= abs(v) < 1e5):
            return f"{v:.4f}"
        return f"{v:.3e}"
    return str(v)


def format_table(records: Sequence[dict[str, Any]], objectives: Sequence[Objective]) -> str:
    """The front as an aligned text table, one row per member."""
    if not records:
        return "(no feasible trial yet: the front is empty)"
    has_ref = any("reference_int8" in r for r in records)
    header = ["trial", *[o.name for o in objectives], "weight_bytes", "arch", f"plan ({PLAN_LEGEND})"]
    if has_ref:
        header += ["FP acc", "int8 acc", "energy vs int8"]
    rows = []
    for r in records:
        bits = describe_plan(r["plan"])
        arch = describe_arch(r["arch"])
        row = [str(r["trial"]), *[format_value(r["values"][o.name]) for o in objectives],
               str(r["cost"]["weight_bytes"]), arch, bits]
        if has_ref:
            ref = r.get("reference_int8", {})
            ratio = r["cost"]["energy_j"] / ref["energy_j"] if ref.get("energy_j") else math.nan
            row += [format_value(r.get("fp_metrics", {}).get("accuracy", math.nan)),
                    format_value(ref.get("accuracy", math.nan)), f"{ratio:.2f}x"]
        rows.append(row)
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)
