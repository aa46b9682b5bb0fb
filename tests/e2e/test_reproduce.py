"""`bitnas reproduce spiking_vit_hq --quick`: the whole experiment pipeline, small."""

import json
import subprocess
import sys

import pytest

from bitnas.cli import main
from bitnas.experiments import spiking_vit_hq as exp
from bitnas.search.context import SearchContext
from bitnas.search.strategies import uniform_params
from tests.conftest import run_study


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("repro")
    rc = main(["reproduce", "spiking_vit_hq", "--quick", "--quiet", "--out", str(out)])
    assert rc == 0
    return out, json.loads((out / "report.json").read_text())


def test_report_figures_are_consistent(quick_run):
    out, r = quick_run
    spec = exp.load(quick=True)
    assert r["trials"] == spec.trials
    assert 0 <= r["qat_trials"] <= r["trials"] and r["trials_span_s"] > 0
    fp = r["fp"]
    # the FP reference: every weight at 32 bits. Uniform 8 and 4 bit differ by half a byte
    # a weight (their per-channel scales and 32-bit biases are the same), which gives the
    # weight count n; FP is then 4n bytes plus its biases, which uniform 8 bit holds too
    uniform = {x["w_bits"]: x["weight_bytes"] for x in r["uniform"] if x["quantizer"] == "uniform"}
    w8, w4 = uniform[8], uniform[4]
    n = 2 * (w8 - w4)
    assert n > 0 and 0 <= fp["weight_bytes"] - 4 * n <= w8 - n + 16  # (bytes rounded up per layer)
    assert fp["loihi_energy_j"] > 0 and fp["snn45nm_energy_j"] > 0
    rows = [x for x in (r["chosen"], r["best_uniform_same_memory"], r["smallest_uniform_within_1pt"])
            if x is not None]
    for row in rows:
        assert row["rebuilt_exactly"] is True  # rebuilt from its params, same accuracy
        assert row["compression"] == pytest.approx(fp["weight_bytes"] / row["weight_bytes"])
        assert row["drop_points"] == pytest.approx(100 * (fp["accuracy"] - row["accuracy"]))
        assert row["test_drop_points"] == pytest.approx(100 * (fp["test_accuracy"] - row["test_accuracy"]))
        assert row["snn45nm_energy_reduction"] == pytest.approx(
            fp["snn45nm_energy_j"] / row["snn45nm_energy_j"])
        bits = {lq["w_bits"] for lq in row["plan"].values()}
        assert min(bits) <= row["avg_w_bits"] <= max(bits)
    c, u, s = r["chosen"], r["best_uniform_same_memory"], r["smallest_uniform_within_1pt"]
    assert c is not None  # (seeded: the quick run has a member within 1 point)
    assert c["drop_points"] <= r["max_drop_points"] + 1e-9
    # the chosen member: the least memory on the front among those within 1 point of FP
    front = json.loads((out / "pareto.json").read_text())
    bar = r["max_drop_points"] + 1e-9
    ok = [m for m in front if 100 * (fp["accuracy"] - m["metrics"]["accuracy"]) <= bar]
    assert c["weight_bytes"] == min(m["cost"]["weight_bytes"] for m in ok)
    # the uniform rows: the most accurate that fits in c's memory; the smallest within 1 point
    fits = [x for x in r["uniform"] if x["weight_bytes"] <= c["weight_bytes"]]
    if fits:
        assert u["accuracy"] == max(x["accuracy"] for x in fits) and u["weight_bytes"] <= c["weight_bytes"]
    else:
        assert u is None
    within = [x for x in r["uniform"] if 100 * (fp["accuracy"] - x["accuracy"]) <= bar]
    if within:
        assert s["weight_bytes"] == min(x["weight_bytes"] for x in within)
    # every uniform baseline was queued and measured: each bit-width under each scheme
    got = {(x["w_bits"], x["quantizer"]) for x in r["uniform"]}
    assert got >= {(b, q) for b in (2, 4, 8) for q in ("uniform", "pot")}
    text = (out / "report.md").read_text()
    assert "8.71-10.19x" in text and "97.57 %" in text and f"{100 * fp['accuracy']:.2f} %" in text


def test_rerun_resumes_without_queueing_baselines_again(quick_run):
    out, r = quick_run
    report = exp.run(out, quick=True, log=lambda m: None)
    assert report["trials"] == r["trials"]  # nothing new ran: the budget was already met
    assert report["fp"] == r["fp"]

    study = run_study(out, exp.load(quick=True).name)
    assert [t for t in study.trials if t.state.name == "WAITING"] == []  # baselines not queued again


def test_uniform_params_rebuild_a_uniform_candidate():
    spec = exp.load(quick=True)
    ctx = SearchContext(spec)
    params = uniform_params(ctx.space, 4, "pot")
    from optuna.trial import FixedTrial

    cand = ctx.space.suggest(FixedTrial(params))
    assert {(lq.w_bits, lq.quantizer) for lq in cand.plan.layers.values()} == {(4, "pot")}
    assert cand.arch_dict()["embed_dims"] == 16


def test_unknown_experiment_is_one_line_exit_2():
    p = subprocess.run([sys.executable, "-m", "bitnas", "reproduce", "no_such_paper"],
                       capture_output=True, text=True)
    assert p.returncode == 2
    assert len(p.stderr.strip().splitlines()) == 1 and "spiking_vit_hq" in p.stderr
