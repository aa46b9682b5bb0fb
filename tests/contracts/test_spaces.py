"""The search-space contract, for every registered space (built-in or plugin): it builds,
suggests, round-trips its candidate through JSON, and runs one PTQ trial on a tiny task.
Each space names the small task and tiny options the suite uses (``example_task``,
``tiny_options``)."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import FixedTrial

from bitnas.plan import Candidate
from bitnas.registry import SPACES
from bitnas.spaces.base import PRECISION_KNOBS, split_knob
from bitnas.spec import StudySpec

NAMES = SPACES.names()


def _spec(name: str) -> StudySpec:
    cls = SPACES.get(name)
    return StudySpec.from_dict({
        "study": {"name": f"contract_{name}", "trials": 1, "strategy": "random"},
        "space": {"name": name, **cls.tiny_options},
        "task": {**cls.example_task, "epochs": 1, "calib_batches": 1},
        "hardware": {"name": "generic45nm"},
        "objectives": [{"name": "accuracy"}, {"name": "weight_bytes"}],
    })


@pytest.mark.parametrize("name", NAMES)
def test_space_builds_suggests_round_trips_and_runs_one_ptq_trial(name, tmp_path):
    from bitnas.search.context import SearchContext

    spec = _spec(name)
    ctx = SearchContext(spec, cache_dir=None)
    space = ctx.space
    assert set(space.all_groups()), "a space names its layer groups"
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = study.ask()
    cand = space.suggest(trial)
    assert isinstance(cand, Candidate) and cand.space == name
    assert Candidate.from_json(cand.to_json()) == cand
    assert space.suggest(FixedTrial(dict(trial.params))) == cand
    for param in trial.params:  # the knob-name rule
        group, knob = split_knob(param)
        assert group is None or group in cand.plan.layers, param
        assert group is None or knob in PRECISION_KNOBS or "_" in knob, param

    model = space.build(cand.arch_dict())
    groups = space.layer_groups(model)
    assert list(groups) == list(cand.plan.layers)
    assert set(groups) <= set(space.all_groups())
    metrics, timing, cost = ctx.evaluate(cand)
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert set(spec.metrics) <= set(metrics)
    assert cost.weight_bytes > 0 and cost.energy_j > 0
    again, _, _ = ctx.evaluate(cand)
    assert again == metrics  # evaluation is deterministic: a stored trial rebuilds
