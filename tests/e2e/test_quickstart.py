"""The bundled studies, end to end: quickstart is what `make demo` runs. Slow: `make test-slow`."""

import json

import pytest

from tests.conftest import run_bitnas


def _front(tmp_path, spec: str, timeout: float) -> list[dict]:
    """Run a bundled study to the end; its front, which must have two members or more."""
    proc = run_bitnas("search", spec, "--out", str(tmp_path / spec), timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    records = json.loads((tmp_path / spec / "pareto.json").read_text())
    assert len(records) >= 2
    return records


@pytest.mark.slow
@pytest.mark.timeout(1000)
def test_quickstart_spiking_front(tmp_path):
    records = _front(tmp_path, "quickstart", timeout=900)
    for r in records:
        assert r["cost"]["weight_bytes"] <= 16384  # the spec's budget
        assert r["fp_metrics"]["accuracy"] > 0.8  # one time step: 0.84 at seed 0
        assert r["values"]["accuracy"] >= r["fp_metrics"]["accuracy"] - 0.05  # the spec's floor
        assert all(lq["w_bits"] <= 8 for lq in r["plan"].values())
        # spikes were measured: some layer runs on synaptic ops, not dense MACs
        assert any(p["dense"] == 0.0 for p in r["cost"]["per_layer"].values())
    best = max(records, key=lambda r: r["values"]["accuracy"])
    assert best["values"]["accuracy"] > best["fp_metrics"]["accuracy"] - 0.03
    assert best["fp_metrics"]["accuracy"] > 0.9
    # the energy axis is driven by what the demo searches (time steps, bits): its most
    # accurate member needs at least twice the energy of its cheapest (the target)
    cheapest = min(records, key=lambda r: r["values"]["energy_j"])
    assert best["values"]["energy_j"] >= 2 * cheapest["values"]["energy_j"]
    # the low-energy end of the front is below uniform 8 bit of the same arch (32-bit membranes)
    assert min(r["cost"]["energy_j"] / r["reference_int8"]["energy_j"] for r in records) < 0.8


@pytest.mark.slow
@pytest.mark.timeout(700)
def test_cnn_digits_beats_int8_energy(tmp_path):
    records = _front(tmp_path, "cnn_digits", timeout=600)
    for r in records:
        assert r["cost"]["weight_bytes"] <= 8192  # the spec's budget
        fp = r["fp_metrics"]["accuracy"]
        assert r["values"]["accuracy"] > 0.9 and fp > 0.9
        # every member uses at most 8 bits, so it never costs more than its own int8 version
        assert r["cost"]["energy_j"] <= r["reference_int8"]["energy_j"] * (1 + 1e-9)
    assert min(r["cost"]["energy_j"] / r["reference_int8"]["energy_j"] for r in records) < 0.7


@pytest.mark.slow
@pytest.mark.timeout(1600)
def test_reproduce_spiking_vit_hq_full(tmp_path):
    """The full experiment (about 20 minutes on 2 cores): its chosen member keeps accuracy."""
    proc = run_bitnas("reproduce", "spiking_vit_hq", "--out", str(tmp_path / "hq"), timeout=1500)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "hq" / "report.json").read_text())
    chosen = report["chosen"]
    assert chosen is not None and chosen["rebuilt_exactly"] and chosen["drop_points"] <= 1.0
    assert chosen["compression"] > 8.0  # 8.84x at seed 0
