"""The bundled quickstart, end to end (what `make demo` runs). Slow: `make test-slow`."""

import json

import pytest

from tests.conftest import run_bitnas


@pytest.mark.slow
def test_quickstart_runs_and_beats_int8_energy(tmp_path):
    proc = run_bitnas("search", "quickstart", "--out", str(tmp_path / "qs"), timeout=600)
    assert proc.returncode == 0, proc.stderr
    records = json.loads((tmp_path / "qs" / "pareto.json").read_text())
    assert len(records) >= 2
    for r in records:
        assert r["cost"]["weight_bytes"] <= 8192  # the spec's budget
        fp = r["fp_metrics"]["accuracy"]
        assert r["values"]["accuracy"] > 0.9 and fp > 0.9
        # every member uses at most 8 bits, so it never costs more than its own int8 version
        assert r["cost"]["energy_j"] <= r["reference_int8"]["energy_j"] * (1 + 1e-9)
    # the low-energy end of the front is well below int8 of the same arch
    assert min(r["cost"]["energy_j"] / r["reference_int8"]["energy_j"] for r in records) < 0.7
