"""Hypervolume (moocore) against known values, its history, the knee, and best-under-budget."""

import json

import numpy as np
import pytest

from bitnas.cli import main
from bitnas.errors import BitnasError
from bitnas.search.hypervolume import (
    REFERENCE_ATTR,
    best_under,
    history,
    hypervolume,
    knee,
    parse_bounds,
    study_reference,
)
from bitnas.search.study import run_search
from bitnas.spec import Objective, load_spec
from tests.conftest import write_spec

MIN2 = ["minimize", "minimize"]


@pytest.mark.parametrize("points,ref,directions,expected", [
    ([[1, 2], [2, 1]], [3, 3], MIN2, 3.0),  # two 2x1 boxes overlapping in a unit square
    ([[0.9, 2], [0.5, 1]], [0, 3], ["maximize", "minimize"], 1.4),  # 0.9 + 1.0 - 0.5
    ([[1, 2, 2], [2, 1, 2], [2, 2, 1]], [3, 3, 3], ["minimize"] * 3, 4.0),  # 6 - 3 + 1
    ([[1, 1, 1, 1]], [2, 3, 4, 5], ["minimize"] * 4, 24.0),
    ([[4, 1], [1, 4]], [3, 3], MIN2, 0.0),  # neither is inside the reference box
    ([], [3, 3], MIN2, 0.0),
])
def test_known_values(points, ref, directions, expected):
    assert hypervolume(points, ref, directions) == pytest.approx(expected)


def _sweep_2d(points, ref):
    """Independent exact 2-D hypervolume (minimisation): a sweep over the sorted front."""
    pts = sorted(p for p in points if p[0] < ref[0] and p[1] < ref[1])
    area, best_y = 0.0, ref[1]
    for x, y in pts:
        if y < best_y:
            area += (ref[0] - x) * (best_y - y)
            best_y = y
    return area


def test_random_2d_fronts_match_a_sweep():
    rng = np.random.default_rng(0)
    for _ in range(50):
        pts = rng.random((rng.integers(1, 30), 2)).tolist()
        assert hypervolume(pts, [1.0, 1.0], MIN2) == pytest.approx(_sweep_2d(pts, [1.0, 1.0]))


def test_knee_is_the_compromise():
    objectives = [Objective("accuracy", "maximize"), Objective("energy_j", "minimize")]
    records = [{"trial": i, "values": {"accuracy": a, "energy_j": e}}
               for i, (a, e) in enumerate([(0.99, 10.0), (0.97, 2.0), (0.5, 1.0)])]
    assert knee(records, objectives)["trial"] == 1
    assert knee([], objectives) is None


def test_best_under_and_bounds():
    objectives = [Objective("accuracy", "maximize"), Objective("energy_j", "minimize")]
    records = [{"trial": i, "values": {"accuracy": a, "energy_j": e}, "metrics": {},
                "cost": {"energy_j": e, "weight_bytes": w}}
               for i, (a, e, w) in enumerate([(0.99, 10.0, 900), (0.97, 2.0, 500), (0.5, 1.0, 100)])]
    assert best_under(records, objectives, {"energy_j": 5.0})["trial"] == 1
    assert best_under(records, objectives, {"energy_j": 5.0, "weight_bytes": 200})["trial"] == 2
    assert best_under(records, objectives, {"energy_j": 0.5}) is None
    assert parse_bounds(["energy_j=1e-5"], ["energy_j"]) == {"energy_j": 1e-5}
    for bad, message in [("energy_j", "FIELD=VALUE"), ("joules=1", "not one of"),
                         ("energy_j=lots", "not a number"), ("energy_j=inf", "finite")]:
        with pytest.raises(BitnasError, match=message):
            parse_bounds([bad], ["energy_j"])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("hv")
    extra = '\n[[objectives]]\nname = "latency_s"\nreference = 1.0\n'
    spec = load_spec(write_spec(tmp / "tiny.toml", trials=6, epochs=1, weight_bytes=3000, extra=extra))
    result = run_search(spec, tmp / "run", log=lambda m: None)
    return tmp / "run", result, spec


def test_reference_is_declared_once_and_kept(run):
    out, result, spec = run
    stored = result.study.user_attrs[REFERENCE_ATTR]
    assert stored["values"]["accuracy"] == 0.0  # a maximised metric's worst value
    assert stored["values"]["latency_s"] == 1.0 and stored["sources"]["latency_s"] == "spec"
    # energy: the static cost of the largest candidate at the widest bits bounds every trial
    energies = [t.values[1] for t in result.study.trials if t.values]
    assert stored["values"]["energy_j"] >= max(energies)
    sentinel = {"values": {**stored["values"], "energy_j": 123.0}, "sources": stored["sources"]}
    result.study.set_user_attr(REFERENCE_ATTR, sentinel)  # a later run must not redeclare it
    again = run_search(spec.replace(trials=7), out, log=lambda m: None)
    assert again.study.user_attrs[REFERENCE_ATTR] == sentinel
    result.study.set_user_attr(REFERENCE_ATTR, stored)


def test_history_never_falls_and_ends_at_the_front(run):
    _, result, spec = run
    ref = study_reference(result.study, spec.objectives)
    hist = history(result.study, spec.objectives, ref)
    assert [n for n, _ in hist] == list(range(1, len(hist) + 1))
    values = [hv for _, hv in hist]
    assert all(b >= a for a, b in zip(values, values[1:], strict=False)) and values[-1] > 0
    front = [list(t.values) for t in result.study.best_trials]
    assert values[-1] == pytest.approx(hypervolume(front, ref, spec.directions))


def test_pareto_cli_prints_hypervolume_knee_and_best_under(run, capsys):
    out, result, _ = run
    assert main(["pareto", str(out)]) == 0
    text = capsys.readouterr().out
    assert "hypervolume" in text and "knee: trial" in text
    front = json.loads((out / "pareto.json").read_text())
    cheapest = min(front, key=lambda r: r["values"]["energy_j"])
    bound = cheapest["values"]["energy_j"]
    assert main(["pareto", str(out), "--under", f"energy_j={bound!r}", "--json"]) == 0
    picked = json.loads(capsys.readouterr().out)
    assert [r["trial"] for r in picked] == [cheapest["trial"]]
    assert main(["pareto", str(out), "--under", f"energy_j={bound / 2!r}"]) == 1
    assert "no feasible trial of" in capsys.readouterr().err
    # a bound on a field that is not an objective: the best of all feasible trials
    from bitnas.search.pareto import feasible_trials

    feas = feasible_trials(result.study)
    sizes = sorted(t.user_attrs["cost"]["weight_bytes"] for t in feas)
    bound = sizes[len(sizes) // 2]
    want = max((t for t in feas if t.user_attrs["cost"]["weight_bytes"] <= bound),
               key=lambda t: t.values[0])
    assert main(["pareto", str(out), "--under", f"weight_bytes={bound}", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got[0]["values"]["accuracy"] == want.values[0] and got[0]["cost"]["weight_bytes"] <= bound
    assert main(["pareto", str(out), "--under", "volts=3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "volts is not one of" in err[0]


def test_history_keeps_only_the_front_and_equals_recomputing_every_trial():
    """history() recomputes the volume only when a point joins the non-dominated set; the
    curve equals the plain recomputation over every point after every trial."""
    import random

    import optuna

    from bitnas.search import hypervolume as hv
    from bitnas.spec import Objective

    directions = ["maximize", "minimize", "minimize"]
    objectives = [Objective(n, d) for n, d in zip("abc", directions, strict=True)]
    rng = random.Random(0)
    study = optuna.create_study(directions=directions)
    for _ in range(40):
        study.tell(study.ask(), [rng.random(), rng.random(), rng.random()])
    reference = [0.0, 1.0, 1.0]
    points, plain = [], []
    for t in study.trials:
        points.append(list(t.values))
        plain.append(hv.hypervolume(points, reference, directions))
    fast = [v for _, v in hv.history(study, objectives, reference)]
    assert fast == pytest.approx(plain, rel=1e-12, abs=1e-15)
    assert len(set(fast)) < len(fast)  # dominated trials leave it unchanged
