"""Many workers on one study: `bitnas worker` on a shared journal file and on PostgreSQL."""

import os
import signal
import subprocess
import sys
import time
import uuid

import optuna
import pytest
from optuna.trial import TrialState

from bitnas.search.storage import mask_url
from tests.conftest import TINY_SPEC, run_bitnas

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def _spec(path, trials, slow=False):
    text = TINY_SPEC.format(trials=trials, epochs=3, sampler="random", weight_bytes=100000)
    if slow:  # every trial fine-tunes for a while, so a kill lands inside one
        text = text.replace("epochs = 3", 'epochs = 3\nqat = "always"\nqat_epochs = 6')
    path.write_text(text)
    return path


def _worker(spec, url, out, *extra):
    return subprocess.Popen([sys.executable, "-m", "bitnas", "worker", str(spec), "--storage", url,
                             "--out", str(out), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _study(url):
    from bitnas.search.storage import open_storage

    return optuna.load_study(study_name="tiny", storage=open_storage(url, must_exist=True))


def _two_workers_share_the_budget(url, out):
    spec = _spec(out / "s.toml", trials=8, slow=True)  # slow enough that both take part
    # one torch thread each: two workers of two threads on two cores would oversubscribe them
    procs = [_worker(spec, url, out / "run", "--threads", "1") for _ in range(2)]
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (stdout, stderr) in zip(procs, outs, strict=True):
        assert p.returncode == 0, stderr
        assert "worker done" in stdout
    study = _study(url)
    finished = study.get_trials(states=FINISHED)
    assert 8 <= len(finished) <= 9  # at most one trial of overshoot per extra worker
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING, TrialState.FAIL))
    assert all("worker" in t.user_attrs for t in finished)  # each ran in exactly one worker
    # workers seed their samplers apart: they do not replay each other's proposals. Two
    # workers on one seed would propose the same sequence, so their i-th trials would all
    # agree. Independent streams agree on a trial by chance with p ~ 0.016 here (this
    # space has ~126 candidates), so a prefix of n agrees with p ~ 0.016^n. (Counting
    # shared candidates instead fails by chance.)
    by_worker: dict[str, list] = {}
    for t in sorted(finished, key=lambda t: t.number):
        by_worker.setdefault(t.user_attrs["worker"], []).append(sorted(t.params.items()))
    assert len(by_worker) == 2
    a, b = by_worker.values()
    n = min(len(a), len(b))
    assert a[:n] != b[:n], (a, b)
    assert len(study.user_attrs["bitnas_identity"]) > 0  # one study, created once
    return outs


def test_two_workers_share_the_budget(tmp_path):
    _two_workers_share_the_budget(f"journal:///{tmp_path / 'study.log'}", tmp_path)


#: the server scripts/postgres-up.sh starts (`make test` runs it); the role may create databases
PG_URL = os.environ.get("BITNAS_TEST_POSTGRES", "postgresql://bitnas:bitnas@127.0.0.1:"
                        f"{os.environ.get('BITNAS_PG_PORT', '5432')}/bitnas_test")


@pytest.fixture
def postgres_url():
    """A fresh database on the test server, dropped afterwards; skips when there is none."""
    psycopg = pytest.importorskip("psycopg", reason="no psycopg: pip install 'bitnas[postgres]'")
    head, _, db = PG_URL.rpartition("/")
    conninfo = PG_URL.replace("postgresql+psycopg://", "postgresql://")
    try:
        admin = psycopg.connect(conninfo, autocommit=True, connect_timeout=5)
    except psycopg.Error as e:
        pytest.skip(f"no PostgreSQL server at {mask_url(PG_URL)} ({str(e).strip().splitlines()[0]}); "
                    "`make test` starts one with scripts/postgres-up.sh (needs root), or set "
                    "BITNAS_TEST_POSTGRES to a server whose role may create databases")
    name = f"bitnas_w_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f"CREATE DATABASE {name}")
        try:
            yield f"{head}/{name}"
        finally:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_two_workers_share_the_budget_on_postgresql(tmp_path, postgres_url):
    outs = _two_workers_share_the_budget(postgres_url, tmp_path)
    password = postgres_url.partition("://")[2].partition("@")[0].partition(":")[2]
    for stdout, stderr in outs:  # the URL is echoed, its password never
        assert "***@" in stdout
        assert f":{password}@" not in stdout + stderr


def test_a_killed_worker_s_trial_is_retried(tmp_path):
    spec = _spec(tmp_path / "s.toml", trials=40, slow=True)
    url = f"journal:///{tmp_path / 'study.log'}"
    proc = _worker(spec, url, tmp_path / "run")
    running = None
    try:
        deadline = time.time() + 180
        while time.time() < deadline and proc.poll() is None and running is None:
            time.sleep(0.3)
            if (tmp_path / "study.log").is_file():
                study = _study(url)
                if len(study.get_trials(states=FINISHED)) >= 2:
                    running = next((t for t in study.get_trials(states=(TrialState.RUNNING,))
                                    if "worker" in t.user_attrs), None)
        assert running is not None, "no trial was running: " + (proc.stderr.read() if proc.poll() else "")
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
        proc.stdout.close()
        proc.stderr.close()
    done = len(_study(url).get_trials(states=FINISHED))
    rerun = run_bitnas("worker", str(spec), "--storage", url, "--out", str(tmp_path / "run"),
                       "--trials", str(done + 2), timeout=240)
    assert rerun.returncode == 0, rerun.stderr
    study = _study(url)
    assert len(study.get_trials(states=FINISHED)) == done + 2
    assert study.trials[running.number].state == TrialState.FAIL
    retries = [t for t in study.trials if t.user_attrs.get("retry_of") == running.number]
    assert len(retries) == 1 and retries[0].state in FINISHED
    assert retries[0].params == running.params


def test_sqlite_workers_get_a_warning(tmp_path):
    spec = _spec(tmp_path / "s.toml", trials=2)
    p = run_bitnas("worker", str(spec), "--storage", f"sqlite:///{tmp_path / 's.db'}",
                   "--out", str(tmp_path / "run"), "--threads", "1", "--strategy", "tpe")
    assert p.returncode == 0, p.stderr
    assert "SQLite is for one process" in p.stderr
    assert "sampler tpe" in p.stderr + p.stdout
