"""bitnas's pool-EHVI sampler: exact improvement arithmetic, and search that beats random."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import optuna
import pytest

from bitnas.search.ehvi import PoolEHVISampler, hvi_2d
from bitnas.search.hypervolume import hypervolume

optuna.logging.set_verbosity(optuna.logging.ERROR)
GROUPS = [f"g{i}.w_bits" for i in range(6)]
SENS = [3.0, 0.2, 1.5, 0.1, 0.8, 0.05]  # how much accuracy each group loses at low bits


def _acc(bits):
    return 1.0 - sum(s * 2.0 ** (-b) for s, b in zip(SENS, bits, strict=True))


def _energy(bits):
    return float(sum((i + 1) * b for i, b in enumerate(bits)))


def _objective(trial):
    bits = [trial.suggest_categorical(g, [2, 4, 8]) for g in GROUPS]
    return _acc(bits), _energy(bits)


def _true_hv(ref):
    pts = [[_acc(b), _energy(b)] for b in itertools.product([2, 4, 8], repeat=len(GROUPS))]
    return hypervolume(pts, ref, ["maximize", "minimize"])


def _hv_ratio(sampler, n):
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    study.optimize(_objective, n_trials=n)
    ref = [0.0, 1.05 * _energy([8] * len(GROUPS))]
    return hypervolume([t.values for t in study.trials], ref, ["maximize", "minimize"]) / _true_hv(ref), study


def test_hvi_2d_is_the_exact_hypervolume_gain():
    rng = np.random.default_rng(0)
    ref = np.array([1.0, 1.0])
    for _ in range(100):
        front = rng.random((rng.integers(0, 7), 2))
        points = rng.random((5, 2)) * 1.2  # some beyond the reference point
        base = hypervolume(front.tolist(), ref.tolist(), ["minimize", "minimize"]) if len(front) else 0.0
        for p, gain in zip(points, hvi_2d(points, front, ref), strict=True):
            both = hypervolume(np.vstack([front, p]).tolist(), ref.tolist(), ["minimize", "minimize"])
            assert gain == pytest.approx(both - base, abs=1e-12)


def test_beats_random_search_at_the_same_budget():
    ours = [_hv_ratio(PoolEHVISampler(seed=s, n_startup_trials=8), 30)[0] for s in range(2)]
    rand = [_hv_ratio(optuna.samplers.RandomSampler(seed=s), 30)[0] for s in range(2)]
    assert min(ours) > max(rand)
    assert min(ours) > 0.97


def test_never_proposes_a_candidate_twice():
    _, study = _hv_ratio(PoolEHVISampler(seed=0, n_startup_trials=5), 40)
    keys = [tuple(t.params[g] for g in GROUPS) for t in study.trials[5:]]
    assert len(set(keys)) == len(keys)


def test_seeded_studies_repeat_and_seeds_differ():
    a = _hv_ratio(PoolEHVISampler(seed=3, n_startup_trials=5), 15)[1]
    b = _hv_ratio(PoolEHVISampler(seed=3, n_startup_trials=5), 15)[1]
    c = _hv_ratio(PoolEHVISampler(seed=4, n_startup_trials=5), 15)[1]
    assert [t.params for t in a.trials] == [t.params for t in b.trials]
    assert [t.params for t in a.trials] != [t.params for t in c.trials]


def test_learns_where_the_constraint_holds():
    """With an energy cap, its proposals after the random start break it far less often
    than a random plan does."""

    def capped(trial):
        values = _objective(trial)
        trial.set_constraint("energy_j", values[1] - 80.0)
        return values

    plans = list(itertools.product([2, 4, 8], repeat=len(GROUPS)))
    random_share = sum(_energy(b) > 80.0 for b in plans) / len(plans)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = optuna.create_study(directions=["maximize", "minimize"],
                                    sampler=PoolEHVISampler(seed=0, n_startup_trials=10))
        study.optimize(capped, n_trials=35)
    late = study.trials[10:]
    share = sum(max(t.constraints.values()) > 0 for t in late) / len(late)
    assert random_share > 0.6
    assert share < 0.6 * random_share


def test_three_objectives_and_knobs_outside_its_space():
    """Three objectives take the scalarised branch; a float knob, and a knob only some
    trials have, are sampled at random."""

    def obj(trial):
        bits = [trial.suggest_categorical(g, [2, 4, 8]) for g in GROUPS[:4]]
        lr = trial.suggest_float("lr", 1e-3, 1e-1, log=True)
        if bits[0] == 8:
            trial.suggest_categorical("extra", ["a", "b"])
        return _acc(bits + [8, 8]), _energy(bits + [8, 8]), lr

    study = optuna.create_study(directions=["maximize", "minimize", "minimize"],
                                sampler=PoolEHVISampler(seed=0, n_startup_trials=5))
    study.optimize(obj, n_trials=25)
    assert len(study.trials) == 25 and all(t.state.name == "COMPLETE" for t in study.trials)
    assert len({tuple(t.params[g] for g in GROUPS[:4]) for t in study.trials}) > 15


def test_one_hot_for_named_choices():
    """A quantizer's name is a categorical input: the sampler handles mixed knobs."""

    def obj(trial):
        q = trial.suggest_categorical("g0.quantizer", ["uniform", "pot"])
        bits = [trial.suggest_categorical(g, [2, 4, 8]) for g in GROUPS[:3]]
        return _acc(bits + [8, 8, 8]) - (0.1 if q == "pot" else 0.0), _energy(bits + [8, 8, 8]) * (
            0.5 if q == "pot" else 1.0)

    study = optuna.create_study(directions=["maximize", "minimize"],
                                sampler=PoolEHVISampler(seed=0, n_startup_trials=5))
    study.optimize(obj, n_trials=20)
    assert {t.params["g0.quantizer"] for t in study.trials[5:]} == {"uniform", "pot"}


def test_one_objective_beats_random_search():
    """One objective takes expected improvement; on a sum of per-knob bowls it finds
    better plans than random search in 30 trials."""

    def bowls(trial):
        return float(sum((trial.suggest_categorical(f"x{i}", [1, 2, 4, 8]) - 4) ** 2 for i in range(5)))

    def best(sampler):
        study = optuna.create_study(sampler=sampler)
        study.optimize(bowls, n_trials=30)
        return study.best_value

    ours = [best(PoolEHVISampler(seed=s, n_startup_trials=5)) for s in range(3)]
    rand = [best(optuna.samplers.RandomSampler(seed=s)) for s in range(3)]
    assert sum(ours) < 0.6 * sum(rand)


def test_a_space_too_big_to_number_is_sampled():
    """40 knobs of 6 choices: 6^40 candidates, more than an int64 can index."""

    def obj(trial):
        bits = [trial.suggest_categorical(f"g{i}.w_bits", [1, 2, 3, 4, 6, 8]) for i in range(40)]
        return sum(2.0 ** -b for b in bits), float(sum(bits))

    study = optuna.create_study(directions=["minimize", "minimize"],
                                sampler=PoolEHVISampler(seed=0, n_startup_trials=4))
    study.optimize(obj, n_trials=8)
    assert len({tuple(t.params.values()) for t in study.trials}) == 8
