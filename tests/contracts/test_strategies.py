"""The strategy contract, for every registered strategy: seeded runs repeat."""

from __future__ import annotations

import pytest

from bitnas.registry import STRATEGIES
from bitnas.search.strategies import Strategy
from tests.conftest import write_spec

NAMES = STRATEGIES.names()


@pytest.mark.parametrize("name", NAMES)
def test_seeded_runs_repeat(name, tmp_path):
    from bitnas.search.study import run_search
    from bitnas.spec import load_spec

    record = STRATEGIES.get(name)
    assert isinstance(record, Strategy) and record.description
    spec = load_spec(write_spec(tmp_path / "s.toml", trials=5, epochs=1, sampler=name))
    runs = []
    for i in range(2):
        result = run_search(spec, tmp_path / f"run{i}", log=lambda m: None, export=False)
        runs.append([(t.params, t.values) for t in sorted(result.study.trials, key=lambda t: t.number)])
    assert runs[0] == runs[1]
    assert len(runs[0]) >= 5
