"""The ILP is optimal (against brute force); sensitivities estimate what they claim."""

import numpy as np
import pytest
import torch
from optuna.trial import TrialState
from torch import nn

from bitnas.evaluators.base import Split
from bitnas.search import ilp
from bitnas.search.sensitivity import estimate, perturbations
from bitnas.spaces.base import WeightChoice


def test_ilp_matches_brute_force_on_tiny_problems():
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(40):
        groups, choices = rng.integers(2, 5), rng.integers(2, 4)
        omega, cost = rng.random((groups, choices)), rng.random((groups, choices))
        if checked % 2:  # joules and bytes: scales far from 1 must not matter
            omega, cost = omega * 1e-6, cost * (1e-10 if checked % 4 == 1 else 1e5)
        budget = rng.uniform(cost.min(axis=1).sum(), cost.max(axis=1).sum())
        got, want = ilp.solve(omega, cost, budget), ilp.brute_force(omega, cost, budget)
        rows = np.arange(groups)
        assert cost[rows, got].sum() <= budget * (1 + 1e-9)
        assert omega[rows, got].sum() == pytest.approx(omega[rows, want].sum(), rel=1e-6)
        checked += 1
    assert checked == 40
    assert ilp.solve(np.ones((2, 2)), np.ones((2, 2)), 1.0) is None  # nothing fits


def test_ilp_keeps_further_limits():
    rng = np.random.default_rng(2)
    bound_hits = 0
    for _ in range(30):
        omega, cost, other = rng.random((3, 3)), rng.random((3, 3)), rng.random((3, 3)) * 1e4
        limits = [(other, rng.uniform(other.min(axis=1).sum(), other.max(axis=1).sum()))]
        budget = rng.uniform(cost.min(axis=1).sum(), cost.max(axis=1).sum())
        got = ilp.solve(omega, cost, budget, limits=limits)
        want = ilp.brute_force(omega, cost, budget, limits=limits)
        if want is None:
            assert got is None
            continue
        assert other[[0, 1, 2], got].sum() <= limits[0][1] * (1 + 1e-9)
        assert omega[[0, 1, 2], got].sum() == pytest.approx(omega[[0, 1, 2], want].sum())
        bound_hits += ilp.brute_force(omega, cost, budget) != want  # the limit changed the answer
    assert bound_hits > 0


def test_sweep_stops_at_the_best_plan_the_limits_allow():
    omega = np.array([[4.0, 1.0, 0.0], [40.0, 10.0, 0.0]])
    cost = np.array([[2.0, 4.0, 8.0], [2.0, 4.0, 8.0]])
    size = np.array([[1.0, 2.0, 4.0], [1.0, 2.0, 4.0]])  # e.g. weight bytes: at most 5
    plans = ilp.sweep(omega, cost, 20, limits=[(size, 5.0)])
    assert plans and all(size[[0, 1], p].sum() <= 5.0 for p in plans)
    assert plans[-1] == [0, 2]  # the least sensitive plan within the limit ...
    assert any(size[[0, 1], p].sum() > 5.0 for p in ilp.sweep(omega, cost, 20))  # (it binds)
    assert ilp.sweep(omega, cost, 20, limits=[(size, 1.0)]) == []  # ... and none when none fits


def test_sweep_trades_sensitivity_for_cost():
    # two groups, choices = (2, 4, 8) bits: sensitivity falls, cost rises with bits
    omega = np.array([[4.0, 1.0, 0.0], [40.0, 10.0, 0.0]])
    cost = np.array([[2.0, 4.0, 8.0], [2.0, 4.0, 8.0]])
    plans = ilp.sweep(omega, cost, 20)
    assert plans[0] == [0, 0] and plans[-1] == [2, 2]
    costs = [cost[[0, 1], p].sum() for p in plans]
    sens = [omega[[0, 1], p].sum() for p in plans]
    assert costs == sorted(costs) and sens == sorted(sens, reverse=True)
    assert [0, 1] in plans  # the sensitive group (1) gets its bits first ...
    assert [1, 0] not in plans and [2, 0] not in plans and [2, 1] not in plans  # ... never the other


def test_hutchinson_matches_the_exact_hessian_trace():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3))
    x, y = torch.randn(32, 4), torch.randint(0, 3, (32,))
    w = model[0].weight

    def loss_of(weight):
        return nn.functional.cross_entropy(nn.functional.linear(x, weight, model[0].bias), y)

    exact = torch.autograd.functional.hessian(loss_of, w.detach()).reshape(12, 12).trace().item()
    sens = estimate(model, {"fc": ["0"]}, Split(x, y), [WeightChoice(4, "uniform")], samples=2000,
                    estimator="hutchinson")
    assert sens.estimator == "hutchinson"
    assert sens.trace["fc"] * 12 == pytest.approx(exact, rel=0.1)


def test_perturbation_falls_with_bits():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 8))
    choices = [WeightChoice(b, "uniform") for b in (2, 4, 8)]
    p = perturbations(model, {"fc": ["0"]}, choices)["fc"]
    assert p[choices[0]] > p[choices[1]] > p[choices[2]] > 0
    # each choice is measured with its own quantizer and options: more series terms, less error
    terms = [WeightChoice(2, "series", (("terms", k),)) for k in (1, 2, 3)]
    p = perturbations(model, {"fc": ["0"]}, terms)["fc"]
    assert p[terms[0]] > p[terms[1]] > p[terms[2]] > 0


def test_spiking_models_use_the_fisher_trace():
    from bitnas.registry import SPACES, load_all

    load_all()
    space = SPACES.create("spikformer", input_shape=(2, 2, 16, 16), num_classes=3, time_steps=[2],
                          embed_dims=[16], depth=[1], heads=[1], mlp_ratio=[2], w_bits=[2, 4])
    torch.manual_seed(0)
    arch = {"time_steps": 2, "embed_dims": 16, "depth": 1, "heads": 1, "mlp_ratio": 2}
    model = space.build(arch)
    batch = Split(torch.rand(4, 2, 2, 16, 16), torch.tensor([0, 1, 2, 0]))
    choices = [WeightChoice(2, "uniform"), WeightChoice(4, "uniform")]
    sens = estimate(model, space.layer_groups(model), batch, choices)
    assert sens.estimator == "fisher"
    assert all(v >= 0 for v in sens.trace.values()) and any(v > 0 for v in sens.trace.values())


@pytest.mark.parametrize("strategy", ["ilp", "sensitivity-guided"])
def test_ilp_strategies_queue_their_front(tmp_path, strategy):
    from bitnas.search.study import run_search
    from bitnas.spec import load_spec
    from tests.conftest import write_spec

    spec = load_spec(write_spec(tmp_path / "s.toml", trials=8, epochs=2))
    logs = []
    result = run_search(spec.replace(sampler=strategy), tmp_path / "run", log=logs.append)
    claim = result.study.user_attrs["bitnas_warm_start"]
    assert (claim["strategy"], claim["state"]) == (strategy, "done")
    assert any(line.startswith("ilp: hutchinson sensitivities") for line in logs)
    queued = [t for t in result.study.trials if "fixed_params" in t.system_attrs]
    assert len(queued) >= 2
    plans = {tuple(sorted((k, v) for k, v in t.params.items() if "." not in k or k.endswith(".w_bits")))
             for t in queued}
    assert len(plans) == len(queued)  # distinct plans
    done = result.study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(done) == 8


def test_ilp_queues_no_plan_over_the_specs_bounds(tmp_path):
    from bitnas.search.study import run_search
    from bitnas.spec import load_spec
    from tests.conftest import write_spec

    spec = load_spec(write_spec(tmp_path / "s.toml", trials=4, epochs=1)).replace(sampler="ilp")
    unbounded = run_search(spec, tmp_path / "free", log=lambda m: None).study
    sizes = sorted(t.user_attrs["cost"]["weight_bytes"] for t in unbounded.trials
                   if "fixed_params" in t.system_attrs)
    assert len(sizes) >= 3
    bound = (sizes[0] + sizes[-1]) // 2  # the dearer plans of the unbounded sweep break it
    bounded = load_spec(write_spec(tmp_path / "b.toml", trials=4, epochs=1, weight_bytes=bound))
    logs = []
    study = run_search(bounded.replace(sampler="ilp"), tmp_path / "run", log=logs.append).study
    queued = [t for t in study.trials if "fixed_params" in t.system_attrs]
    assert len(queued) >= 2 and any("within weight_bytes" in line for line in logs)
    assert all(t.user_attrs["cost"]["weight_bytes"] <= bound for t in queued)


def test_ilp_respects_choices_a_group_may_not_take():
    rng = np.random.default_rng(1)
    for _ in range(20):
        omega, cost = rng.random((3, 3)), rng.random((3, 3))
        allowed = rng.random((3, 3)) < 0.7
        allowed[:, 0] = True  # every group can take something
        budget = rng.uniform(0.5, 2.5)
        got, want = ilp.solve(omega, cost, budget, allowed), ilp.brute_force(omega, cost, budget, allowed)
        if want is None:
            assert got is None
            continue
        assert all(allowed[g, c] for g, c in enumerate(got))
        assert omega[[0, 1, 2], got].sum() == pytest.approx(omega[[0, 1, 2], want].sum())


def test_ilp_with_a_group_pinned_below_the_others(tmp_path):
    from bitnas.search.study import run_search
    from bitnas.spec import load_spec
    from tests.conftest import write_spec

    text = write_spec(tmp_path / "s.toml", trials=3, epochs=1).read_text()
    text = text.replace("w_bits = [2, 4, 8]", "w_bits = [4, 8]\ngroup_w_bits = { fc = [2, 8] }")
    (tmp_path / "s.toml").write_text(text)
    spec = load_spec(tmp_path / "s.toml").replace(sampler="ilp")
    result = run_search(spec, tmp_path / "run", log=lambda m: None)
    queued = [t for t in result.study.trials if "fixed_params" in t.system_attrs]
    assert queued and all(t.params["fc.w_bits"] in (2, 8) and t.params["conv0.w_bits"] in (4, 8)
                          for t in queued)


def test_arch_params_lists_every_architecture_once():
    from bitnas.registry import SPACES, load_all
    from bitnas.search.strategies import arch_params

    load_all()
    space = SPACES.create("cnn", input_shape=(1, 8, 8), num_classes=10, depth=[1, 2],
                          widths=[4, 8, 16], kernel_size=[3], w_bits=[2, 8])
    archs = arch_params(space)
    # depth 1: 3 widths; depth 2: 3 x 3
    assert len(archs) == 12 and len({tuple(sorted(a.items())) for a in archs}) == 12
    assert archs[0] == {"depth": 1, "width0": 4}  # the space's first choices first
    assert sum(a["depth"] == 2 and set(a) == {"depth", "width0", "width1"} for a in archs) == 9
    assert len(arch_params(space, limit=5)) == 5


@pytest.mark.parametrize("trials", [7, 16])
def test_the_ilp_warm_start_spreads_its_plans_over_architectures(tmp_path, trials):
    from bitnas.search.strategies import WARM_ARCHS
    from bitnas.search.study import run_search
    from bitnas.spec import load_spec
    from tests.conftest import write_spec

    spec = load_spec(write_spec(tmp_path / "s.toml", trials=trials, epochs=1)).replace(sampler="ilp")
    logs = []
    study = run_search(spec, tmp_path / "run", log=logs.append).study
    queued = [t for t in study.trials if "fixed_params" in t.system_attrs]
    archs = {(t.params["depth"], t.params["width0"], t.params.get("width1")) for t in queued}
    # 3 plans per architecture at least, WARM_ARCHS architectures at most, of the tiny
    # space's 6; always its cheapest and its dearest
    n = min(trials // 3, WARM_ARCHS)
    assert {(1, 4, None), (2, 8, 8)} <= archs and len(archs) == n
    assert sum(line.startswith("ilp: architecture ") for line in logs) == n
    assert sum("distinct plans" in line for line in logs) == n
