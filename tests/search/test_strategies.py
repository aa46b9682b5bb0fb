"""Uniform-precision params: the baselines queued into a study."""

import optuna
import pytest
from optuna.trial import FixedTrial

from bitnas.errors import BitnasError
from bitnas.registry import SPACES, STRATEGIES, load_all
from bitnas.search.strategies import uniform_params


@pytest.fixture(scope="module")
def cnn():
    load_all()
    return SPACES.create("cnn", input_shape=(1, 8, 8), num_classes=10, depth=[1, 2], widths=[8, 16],
                         w_bits=[2, 4, 8], a_bits=[4, 8], quantizers=["uniform", "pot"])


def test_every_group_gets_the_bits_and_scheme(cnn):
    params = uniform_params(cnn, 4, "pot", arch={"depth": 2})
    cand = cnn.suggest(FixedTrial(params))
    assert cand.arch_dict()["depth"] == 2
    assert {(lq.w_bits, lq.a_bits, lq.quantizer) for lq in cand.plan.layers.values()} == {(4, 8, "pot")}


def test_bits_outside_the_space_are_refused(cnn):
    with pytest.raises(BitnasError, match="w_bits = 3 is not one of"):
        uniform_params(cnn, 3)


@pytest.mark.parametrize("strategy", ["tpe", "nsga2", "nsga3", "gp", "ehvi", "random", "uniform"])
def test_every_strategy_runs_a_study(tmp_path, strategy):
    from optuna.trial import TrialState

    from bitnas.search.study import run_search
    from bitnas.spec import load_spec
    from tests.conftest import write_spec

    spec = load_spec(write_spec(tmp_path / "s.toml", trials=5, epochs=1, weight_bytes=3000))
    result = run_search(spec.replace(sampler=strategy), tmp_path / "run", log=lambda m: None)
    trials = result.study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(trials) == 5
    if strategy == "uniform":  # every trial's groups share one precision
        for t in trials:
            plan = t.user_attrs["candidate"]["plan"]
            assert len({(lq["w_bits"], lq["quantizer"]) for lq in plan.values()}) == 1


def test_strategy_is_the_spec_key_and_the_flag(tmp_path):
    import tomllib

    from bitnas.errors import SpecError
    from bitnas.spec import StudySpec
    from tests.conftest import TINY_SPEC

    raw = tomllib.loads(TINY_SPEC.format(trials=2, epochs=1, sampler="tpe", weight_bytes=3000))
    raw["study"]["strategy"] = raw["study"].pop("sampler")
    raw["study"]["strategy"] = "uniform"
    assert StudySpec.from_dict(raw).sampler == "uniform"
    raw["study"]["sampler"] = "tpe"
    with pytest.raises(SpecError, match="give only strategy"):
        StudySpec.from_dict(raw)
    from bitnas.cli import build_parser

    assert build_parser().parse_args(["search", "x.toml", "--strategy", "gp"]).sampler == "gp"


def test_group_w_bits_pins_groups():
    load_all()
    space = SPACES.create("cnn", input_shape=(1, 8, 8), num_classes=10, depth=[1], widths=[8],
                          w_bits=[2, 4], group_w_bits={"fc": [8]})
    params = uniform_params(space, 2)
    cand = space.suggest(FixedTrial(params))
    assert cand.plan["conv0"].w_bits == 2 and cand.plan["fc"].w_bits == 8
    with pytest.raises(BitnasError, match=r"unknown group\(s\) \['conv9'\]"):
        SPACES.create("cnn", input_shape=(1, 8, 8), num_classes=10, depth=[1], group_w_bits={"conv9": [8]})


def test_studies_made_before_an_optional_option_still_resume(tmp_path):
    from bitnas.search.study import open_study
    from bitnas.spec import load_spec
    from tests.conftest import write_spec

    spec = load_spec(write_spec(tmp_path / "s.toml", trials=1, epochs=1))
    url = f"sqlite:///{tmp_path / 's.db'}"
    study = open_study(spec, url)
    old = spec.identity()
    old["space"].pop("group_w_bits")  # as stored by a bitnas without the option
    study.set_user_attr("bitnas_identity", old)

    # a finished trial: a study with results is never recreated, a mismatch would be refused
    study.add_trial(optuna.trial.create_trial(values=[0.5, 1e-9], params={}, distributions={}))
    assert len(open_study(spec, url).trials) == 1


def test_uniform_sampler_ignores_pinned_groups():

    from bitnas.search.strategies import UniformPrecisionSampler

    load_all()
    space = SPACES.create("cnn", input_shape=(1, 8, 8), num_classes=10, depth=[2], widths=[8],
                          w_bits=[2, 4], group_w_bits={"conv0": [8]})
    study = optuna.create_study(sampler=UniformPrecisionSampler(0))
    seen = set()
    for _ in range(12):
        trial = study.ask()
        plan = space.suggest(trial).plan
        assert plan["conv0"].w_bits == 8 and plan["conv1"].w_bits == plan["fc"].w_bits
        seen.add(plan["fc"].w_bits)
        study.tell(trial, 0.0)
    assert seen == {2, 4}  # the pinned first group does not decide the others' bits


def test_workers_joining_together_get_different_sampler_seeds():
    from bitnas.search.study import _sampler_seed

    assert _sampler_seed(0, 0) == _sampler_seed(0, 0)  # one process: reproducible
    assert _sampler_seed(0, 0, salt=101) != _sampler_seed(0, 0, salt=102)  # two workers: apart
    assert _sampler_seed(0, 0) != _sampler_seed(0, 5)  # a resumed run: a fresh stream


def test_sensitivity_guided_is_ilp_then_pool_ehvi():
    from bitnas.search.ehvi import PoolEHVISampler

    load_all()
    record = STRATEGIES.get("sensitivity-guided")
    assert record.warm_start is not None
    assert isinstance(STRATEGIES.create("sensitivity-guided", seed=0, n_trials=300), PoolEHVISampler)
