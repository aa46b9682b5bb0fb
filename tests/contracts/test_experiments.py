"""The experiment contract, for every registered experiment: --quick runs and writes its report."""

from __future__ import annotations

import json

import pytest

from bitnas.experiments.base import Experiment
from bitnas.registry import EXPERIMENTS

NAMES = EXPERIMENTS.names()


@pytest.mark.timeout(900)  # a quick run is about a minute on 2 idle cores
@pytest.mark.parametrize("name", NAMES)
def test_quick_run_writes_its_report(name, tmp_path):
    exp = EXPERIMENTS.get(name)
    assert isinstance(exp, Experiment) and exp.name == name and exp.description
    if not exp.has_quick:
        pytest.skip(f"{name} offers no --quick run")
    report = exp.run(tmp_path, quick=True, log=lambda m: None)
    text = exp.format_report(report)
    assert text.strip()
    assert (tmp_path / "report.md").read_text().strip() == text.strip()
    assert json.loads((tmp_path / "report.json").read_text())
