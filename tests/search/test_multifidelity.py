"""Multi-fidelity (task.qat = "promote"): PTQ for every candidate, QAT only near the front."""

from __future__ import annotations

import pytest
from optuna.trial import TrialState

from bitnas.search.pareto import dominates, is_feasible
from bitnas.search.rebuild import rebuild_trial
from bitnas.search.study import run_search
from bitnas.spec import load_spec
from tests.conftest import write_spec


@pytest.mark.parametrize("a,b,directions,expected", [
    ([0.9, 1.0], [0.8, 2.0], ["maximize", "minimize"], True),
    ([0.9, 1.0], [0.9, 1.0], ["maximize", "minimize"], False),  # equal: no one dominates
    ([0.9, 3.0], [0.8, 2.0], ["maximize", "minimize"], False),  # a trade-off
    ([0.9, 2.0], [0.8, 2.0], ["maximize", "minimize"], True),
    ([1.0, 1.0], [2.0, 1.0], ["minimize", "minimize"], True),
])
def test_dominates(a, b, directions, expected):
    assert dominates(a, b, directions) is expected


MARGIN = 0.01


def _run(tmp_path, qat="promote", trials=14):
    extra = f'qat = "{qat}"\nqat_epochs = 2\npromote_margin = {MARGIN}\n'
    path = write_spec(tmp_path / "s.toml", trials=trials, epochs=4)
    text = path.read_text().replace("w_bits = [2, 4, 8]", "w_bits = [1, 2, 3, 4, 8]")
    path.write_text(text.replace("epochs = 4\n", "epochs = 4\n" + extra))
    spec = load_spec(path)
    return spec, run_search(spec, tmp_path / "run", log=lambda *_: None)


def test_only_candidates_near_the_front_are_fine_tuned(tmp_path):
    spec, result = _run(tmp_path)
    directions = spec.directions
    complete = [t for t in result.study.trials if t.state == TrialState.COMPLETE]
    evaluated = [t for t in complete if "duplicate_of" not in t.user_attrs]
    assert len(evaluated) >= 8
    promoted = 0
    for t in evaluated:
        fid = t.user_attrs["fidelity"]
        low, metrics = fid["low_values"], t.user_attrs["metrics"]
        # the decision, replayed against the trials that were complete when it was taken
        before = [u.values for u in complete if u.number < t.number and is_feasible(u)]
        optimistic = [low[0] + MARGIN, low[1]]
        assert fid["promoted"] == (not any(dominates(v, optimistic, directions) for v in before))
        assert fid["compared_with"] == len(before)
        assert metrics["qat"] == float(fid["promoted"])
        if fid["promoted"]:  # both fidelities stored: PTQ's as low_values, QAT's as the values
            promoted += 1
            assert metrics["ptq_accuracy"] == low[0]
        else:
            assert t.values == low
    assert evaluated[0].user_attrs["fidelity"]["promoted"]  # nothing to compare with yet
    assert 0 < promoted < len(evaluated)  # some saved, some fine-tuned
    # a rebuild repeats the decision taken in the search, whatever the front is now
    for want in (True, False):
        t = next(t for t in evaluated if t.user_attrs["fidelity"]["promoted"] is want)
        out = rebuild_trial(result.study, spec, t.number, tmp_path / "run")
        assert out["metrics"] == out["stored_metrics"]


def test_promote_margin_is_checked(tmp_path):
    from bitnas.errors import BitnasError

    path = write_spec(tmp_path / "s.toml", extra="")
    path.write_text(path.read_text().replace("epochs = 3\n", 'epochs = 3\nqat = "promote"\n'
                                             "promote_margin = 1.5\n"))
    with pytest.raises(BitnasError, match="task.promote_margin must be an accuracy difference"):
        load_spec(path)
