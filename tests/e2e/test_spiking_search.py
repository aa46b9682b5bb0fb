"""A spiking-transformer study on event digits, through the same path as every study."""

import pytest
from optuna.trial import TrialState

from bitnas.search.study import run_search
from bitnas.spec import StudySpec

SPEC = {
    "study": {"name": "snn", "trials": 3, "seed": 0, "sampler": "random"},
    "space": {"time_steps": [2], "embed_dims": [16], "depth": [1], "heads": [1],
              "mlp_ratio": [2], "w_bits": [2, 4, 8], "quantizers": ["uniform", "pot"],
              "v_bits": [4, 32]},
    "task": {"name": "event_digits", "bins": 4, "epochs": 1},
    "hardware": {"name": "generic45nm"},
    "objectives": [{"name": "accuracy"}, {"name": "energy_j"}],
}


@pytest.mark.parametrize("space", ["spikformer", "spike_driven_transformer"])
def test_spiking_study_runs_and_exports(tmp_path, space):
    raw = {**SPEC, "space": {"name": space, **SPEC["space"]}}
    result = run_search(StudySpec.from_dict(raw), tmp_path / "run", log=lambda m: None)
    trials = result.study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 3
    for t in trials:
        plan = t.user_attrs["candidate"]["plan"]
        assert {"stem0", "stem", "block0.q", "block0.k", "block0.v", "head"} <= set(plan)
        assert 0.0 <= t.user_attrs["metrics"]["accuracy"] <= 1.0
    assert (tmp_path / "run" / "pareto.json").is_file() and result.records
