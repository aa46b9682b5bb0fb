"""End-to-end: a tiny study through the CLI, resume, extend, kill, rebuild."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time

import pytest
from optuna.trial import TrialState

from bitnas.search.rebuild import rebuild_trial
from bitnas.search.storage import run_dir_url
from bitnas.search.study import open_study, run_search
from bitnas.spec import load_spec
from tests.conftest import count_finished, run_bitnas, run_study, write_spec


def _finished(study):
    return study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """One CLI study of 6 trials, shared by the checks below."""
    tmp = tmp_path_factory.mktemp("e2e")
    spec = write_spec(tmp / "tiny.toml", trials=6)
    proc = run_bitnas("search", str(spec), "--out", str(tmp / "run"))
    assert proc.returncode == 0, proc.stderr
    return tmp, spec, proc


def test_study_writes_all_four_files(finished_run):
    tmp, _, proc = finished_run
    run = tmp / "run"
    for name in ("study.log", "pareto.json", "pareto.csv", "pareto.png"):
        assert (run / name).is_file(), name
    assert (run / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    records = json.loads((run / "pareto.json").read_text())
    assert records, "empty front"
    study = run_study(run)
    feasible = [t for t in study.trials if t.state == TrialState.COMPLETE]
    for r in records:
        assert set(r) >= {"trial", "values", "arch", "plan", "cost"}
        assert set(r["values"]) == {"accuracy", "energy_j"}
        assert set(r["cost"]) >= {"energy_j", "latency_s", "weight_bytes", "peak_act_bytes",
                                  "per_layer"}
        for lq in r["plan"].values():
            assert set(lq) == {"w_bits", "a_bits", "quantizer"}
        t = study.trials[r["trial"]]
        assert t.values == [r["values"]["accuracy"], r["values"]["energy_j"]]
        # nobody feasible dominates a front member
        for o in feasible:
            assert not (o.values[0] >= t.values[0] and o.values[1] <= t.values[1]
                        and o.values != t.values)

    rows = list(csv.DictReader((run / "pareto.csv").open()))
    assert len(rows) == len(records)
    assert {"trial", "accuracy", "energy_j", "arch.depth", "conv0.w_bits", "fc.w_bits"} <= set(rows[0])

    assert "[6/6]" in proc.stderr  # progress
    assert "Pareto front of 'tiny'" in proc.stdout and "energy vs int8" in proc.stdout


def test_rerun_resumes_and_trials_extends(finished_run):
    tmp, spec, _ = finished_run
    before = {t.number: (t.params, t.values) for t in _finished(run_study(tmp / "run"))}
    again = run_bitnas("search", str(spec), "--out", str(tmp / "run"))
    assert again.returncode == 0, again.stderr
    assert "6/6 trials finished, 0 to run" in again.stderr
    assert len(_finished(run_study(tmp / "run"))) == 6

    more = run_bitnas("search", str(spec), "--out", str(tmp / "run"), "--trials", "8")
    assert more.returncode == 0, more.stderr
    after = {t.number: (t.params, t.values) for t in _finished(run_study(tmp / "run"))}
    assert len(after) == 8
    assert all(after[n] == v for n, v in before.items())  # nothing lost, nothing rerun


def test_pareto_command_prints_the_front(finished_run):
    tmp, _, _ = finished_run
    proc = run_bitnas("pareto", str(tmp / "run"))
    assert proc.returncode == 0, proc.stderr
    records = json.loads((tmp / "run" / "pareto.json").read_text())
    for r in records:
        assert str(r["trial"]) in proc.stdout
    as_json = run_bitnas("pareto", str(tmp / "run" / "study.log"), "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert {r["trial"] for r in json.loads(as_json.stdout)} == {r["trial"] for r in records}


def test_rebuilding_a_front_member_gives_the_same_accuracy(finished_run):
    tmp, spec_path, _ = finished_run
    run = tmp / "run"
    member = json.loads((run / "pareto.json").read_text())[-1]
    study = run_study(run)
    out = rebuild_trial(study, load_spec(spec_path), member["trial"], run / "fp_cache")
    assert out["candidate"].to_dict()["plan"] == member["plan"]
    assert out["metrics"]["accuracy"] == member["values"]["accuracy"]
    assert out["cost"].energy_j == pytest.approx(member["values"]["energy_j"])
    proc = run_bitnas("rebuild", str(run), "--trial", str(member["trial"]))
    assert proc.returncode == 0, proc.stderr
    assert "accuracy" in proc.stdout and "(same as stored)" in proc.stdout


def test_infeasible_candidates_are_costed_but_never_evaluated(tmp_path):
    spec = load_spec(write_spec(tmp_path / "s.toml", trials=12, weight_bytes=1400, epochs=1))
    result = run_search(spec, tmp_path / "run", log=lambda m: None)
    trials = _finished(result.study)
    infeasible = [t for t in trials if t.state == TrialState.PRUNED]
    feasible = [t for t in trials if t.state == TrialState.COMPLETE]
    assert infeasible and feasible, "pick a bound that splits the space"
    for t in infeasible:
        assert t.constraints["weight_bytes"] > 0
        assert t.user_attrs["cost"]["weight_bytes"] > 1400
        assert "metrics" not in t.user_attrs
    for t in feasible:
        assert t.constraints["weight_bytes"] <= 0 and "metrics" in t.user_attrs
    front = {r["trial"] for r in result.records}
    assert front <= {t.number for t in feasible}


def test_orphaned_running_trial_is_failed_and_retried(tmp_path):
    spec = load_spec(write_spec(tmp_path / "s.toml", trials=2, epochs=1))
    run_search(spec, tmp_path / "run", log=lambda m: None)
    study = open_study(spec, run_dir_url(tmp_path / "run"))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    orphan = study.ask()
    orphan.suggest_categorical("depth", [1, 2])
    orphan.set_user_attr("worker", f"{__import__('socket').gethostname()}:{dead}:0")
    logs = []
    run_search(spec.replace(trials=3), tmp_path / "run", log=logs.append)
    study = run_study(tmp_path / "run")
    assert study.trials[orphan.number].state == TrialState.FAIL
    retried = [t for t in study.trials if t.user_attrs.get("retry_of") == orphan.number]
    assert len(retried) == 1 and retried[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert retried[0].params["depth"] == orphan.params["depth"]
    assert not study.get_trials(states=(TrialState.RUNNING,))
    assert any("recovered trial(s)" in m for m in logs)


def test_resume_after_the_process_is_killed(tmp_path):
    spec = write_spec(tmp_path / "s.toml", trials=40, epochs=15)
    log = (tmp_path / "search.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "bitnas", "search", str(spec), "--out",
                             str(tmp_path / "run")], stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.time() + 120
        done = 0
        while time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
            done = count_finished(tmp_path / "run")
            if done >= 3:
                break
        assert done >= 3, "the study did not get going: " + (tmp_path / "search.log").read_text()
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        log.close()
    before = {t.number: (t.params, t.values, t.state) for t in _finished(run_study(tmp_path / "run"))}
    target = len(before) + 2
    resumed = run_bitnas("search", str(spec), "--out", str(tmp_path / "run"), "--trials",
                         str(target))
    assert resumed.returncode == 0, resumed.stderr
    study = run_study(tmp_path / "run")
    after = {t.number: (t.params, t.values, t.state) for t in _finished(study)}
    assert len(after) == target
    assert all(after[n] == v for n, v in before.items())
    assert not study.get_trials(states=(TrialState.RUNNING,))


def test_sigterm_marks_the_running_trial_failed_and_exits_130(tmp_path):
    spec = write_spec(tmp_path / "s.toml", trials=40, epochs=15)
    proc = subprocess.Popen([sys.executable, "-m", "bitnas", "search", str(spec), "--out",
                             str(tmp_path / "run")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
        if count_finished(tmp_path / "run") >= 2:
            break
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "rerun the same command to resume" in err and "Traceback" not in err
    study = run_study(tmp_path / "run")
    assert not study.get_trials(states=(TrialState.RUNNING,))
    interrupted = [t.number for t in study.trials if t.user_attrs.get("interrupted")]
    target = len(_finished(study)) + 1
    resumed = run_bitnas("search", str(spec), "--out", str(tmp_path / "run"), "--trials", str(target))
    assert resumed.returncode == 0, resumed.stderr
    retried = {t.user_attrs.get("retry_of") for t in run_study(tmp_path / "run").trials}
    assert all(n in retried for n in interrupted)  # an interrupted candidate is run again


def test_unclaimed_running_trial_of_a_dead_run_is_recovered_at_once(tmp_path):
    spec = load_spec(write_spec(tmp_path / "s.toml", trials=1, epochs=1))
    run_search(spec, tmp_path / "run", log=lambda m: None)
    study = open_study(spec, run_dir_url(tmp_path / "run"))
    unclaimed = study.ask()  # killed before bitnas could record its worker
    run_search(spec.replace(trials=2), tmp_path / "run", log=lambda m: None)
    study = run_study(tmp_path / "run")
    assert study.trials[unclaimed.number].state == TrialState.FAIL
    assert not study.get_trials(states=(TrialState.RUNNING,))


def test_unclaimed_trial_is_left_alone_while_another_worker_lives(tmp_path):
    from bitnas.search.study import WORKER_KEY, recover_orphans

    spec = load_spec(write_spec(tmp_path / "s.toml", trials=1, epochs=1))
    run_search(spec, tmp_path / "run", log=lambda m: None)
    study = open_study(spec, run_dir_url(tmp_path / "run"))
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        from bitnas.search.objective import process_start_time

        host = __import__("socket").gethostname()
        study.set_user_attr(f"{WORKER_KEY}{host}:{sleeper.pid}:{process_start_time(sleeper.pid)}", "x")
        fresh = study.ask()  # perhaps that worker's, about to be claimed
        assert recover_orphans(study, me="someone-else") == []
        assert study.trials[fresh.number].state == TrialState.RUNNING
    finally:
        sleeper.kill()
        sleeper.wait()
