"""optuna-dashboard on a bitnas run: it reads the run's journal (study.log), and shows
the study with its trials, its objectives' names, and bitnas's per-trial user attrs."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from bitnas.search import study as study_mod
from bitnas.search.storage import JOURNAL_NAME, run_dir_url
from bitnas.search.study import open_study, run_search
from bitnas.spec import load_spec
from tests.conftest import write_spec

#: the dashboard, through its public API, on a journal file path and a port
SERVE = ("import sys, optuna_dashboard; "
         "optuna_dashboard.run_server(sys.argv[1], host='127.0.0.1', port=int(sys.argv[2]))")
STARTUP_S = 20.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(port: int, path: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
        assert r.status == 200
        return json.loads(r.read())


def _serve(journal: Path, log: Path) -> tuple[subprocess.Popen, int]:
    """The dashboard, serving once it answers; a port taken between choosing it and the
    server binding it makes the server exit at once, and another port is tried."""
    for _ in range(3):
        port = _free_port()
        with log.open("w") as err:
            proc = subprocess.Popen([sys.executable, "-c", SERVE, str(journal), str(port)],
                                    stdout=err, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + STARTUP_S
        try:
            while proc.poll() is None and time.monotonic() < deadline:
                try:
                    _get(port, "/api/meta")
                    return proc, port
                except (urllib.error.URLError, ConnectionError, TimeoutError):
                    time.sleep(0.1)
        except BaseException:  # anything unforeseen (or Ctrl-C) must not leave it running
            _stop(proc)
            raise
        _stop(proc)
    pytest.fail(f"optuna-dashboard did not come up within {STARTUP_S:.0f} s:\n{log.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_metric_names_set_on_creation_and_added_on_resume(tmp_path, monkeypatch):
    spec = load_spec(write_spec(tmp_path / "tiny.toml"))
    url = run_dir_url(tmp_path / "run")
    assert open_study(spec, url).metric_names == ["accuracy", "energy_j"]
    assert open_study(spec, url).metric_names == ["accuracy", "energy_j"]  # resumed: kept

    # a study made by a bitnas that named no metrics gets them when it is resumed
    old = spec.replace(name="old")
    with monkeypatch.context() as m:
        m.setattr(study_mod, "_name_metrics", lambda study, spec: None)
        assert open_study(old, url).metric_names is None
    assert open_study(old, url).metric_names == ["accuracy", "energy_j"]


def test_dashboard_shows_a_bitnas_run(tmp_path):
    pytest.importorskip("optuna_dashboard", reason="optuna-dashboard is not installed (pip install "
                        "optuna-dashboard); only this test needs it")
    spec = load_spec(write_spec(tmp_path / "tiny.toml", trials=4, epochs=1))
    # export=False: the dashboard reads only the journal, not the front's files
    result = run_search(spec, tmp_path / "run", log=lambda m: None, export=False)
    trials = result.study.trials
    assert len(trials) == 4

    proc, port = _serve(tmp_path / "run" / JOURNAL_NAME, tmp_path / "dashboard.log")
    try:
        studies = _get(port, "/api/studies")["study_summaries"]
        assert [s["study_name"] for s in studies] == ["tiny"]
        assert studies[0]["directions"] == ["maximize", "minimize"]
        detail = _get(port, f"/api/studies/{studies[0]['study_id']}")
    finally:
        _stop(proc)

    assert detail["name"] == "tiny"
    assert detail["objective_names"] == ["accuracy", "energy_j"]  # the axes' labels
    assert len(detail["trials"]) == len(trials)
    assert {"candidate", "cost", "metrics"} <= {a["key"] for a in detail["union_user_attrs"]}
    for served, t in zip(detail["trials"], trials, strict=True):
        assert served["number"] == t.number and served["state"] == t.state.name.capitalize()
        attrs = {a["key"]: a["value"] for a in served["user_attrs"]}
        assert {"candidate", "cost", "metrics"} <= set(attrs), t.number
        # the dashboard shows a JSON value cut to its first 1024 characters
        for key in ("candidate", "cost", "metrics"):
            assert attrs[key] == json.dumps(t.user_attrs[key])[:1024], (t.number, key)
        if t.values is not None:
            assert served["values"] == pytest.approx(t.values)
    assert any(t.values is not None for t in trials)
