"""Reliability of what bitnas reads and writes: cut-off journals, foreign SQLite files,
binary data files, exports that fail half-way, leftover temporary files, unknown spec
names and passwords that drivers would leak. Each is one line and exit 2, never a
traceback, and nothing stored is lost or half-written."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from bitnas.cli import main
from tests.conftest import write_spec
from tests.e2e.test_cli_errors import _one_line_error


@pytest.fixture(scope="module")
def journal_run(tmp_path_factory):
    """A finished two-trial study in a journal file, with its exported front."""
    root = tmp_path_factory.mktemp("journal_run")
    spec = write_spec(root / "tiny.toml", trials=2, epochs=1)
    run = root / "run"
    assert main(["search", str(spec), "--storage", f"journal:///{run / 'study.log'}",
                 "--out", str(run), "--quiet"]) == 0
    return spec, run


@pytest.fixture
def run_copy(journal_run, tmp_path):
    spec, run = journal_run
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    return spec, copy


def _journal_url(run: Path) -> str:
    return f"journal:///{run / 'study.log'}"


def _cut_off_record(log: Path) -> bytes:
    """Append half of a record without its newline, as a writer killed mid-write leaves it;
    return the journal's bytes from before."""
    whole = log.read_bytes()
    last = whole.rstrip(b"\n").rsplit(b"\n", 1)[-1]
    log.write_bytes(whole + last[: len(last) // 2])
    return whole


# 1: a journal whose last record was cut off


def test_pareto_refuses_a_cut_off_journal_and_writes_nothing(run_copy, capsys):
    _, run = run_copy
    log = run / "study.log"
    _cut_off_record(log)
    before = log.read_bytes()
    _one_line_error(capsys, ["pareto", _journal_url(run)], "ends in a cut-off record",
                    "bitnas search")
    assert log.read_bytes() == before
    assert sorted(p.name for p in run.iterdir() if p.name.startswith("study.log")) == ["study.log"]


def test_search_repairs_a_cut_off_journal_and_keeps_a_backup(run_copy, capsys):
    spec, run = run_copy
    log = run / "study.log"
    whole = _cut_off_record(log)
    cut = log.read_bytes()
    assert main(["search", str(spec), "--storage", _journal_url(run), "--out", str(run),
                 "--quiet"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "cut-off record" in line]
    assert len(warnings) == 1 and warnings[0].startswith("bitnas: warning:"), warnings
    backups = list(run.glob("study.log.bak-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == cut and backups[0].name in warnings[0]
    repaired = log.read_bytes()
    assert repaired.startswith(whole)  # the partial record is gone, new records follow on lines of their own
    assert all(json.loads(line) for line in repaired.splitlines())
    assert main(["pareto", _journal_url(run), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) >= 1


def test_reader_waits_for_a_live_writer_to_finish_its_record(run_copy):
    from bitnas.search.storage import open_storage

    _, run = run_copy
    log = run / "study.log"
    whole = log.read_bytes()
    last = whole.rstrip(b"\n").rsplit(b"\n", 1)[-1]
    log.write_bytes(whole + last[:10])  # a writer mid-append, as a reader may see it
    finisher = threading.Timer(0.3, lambda: log.write_bytes(whole + last + b"\n"))
    finisher.start()
    try:
        open_storage(_journal_url(run), must_exist=True)  # no error: the record was completed
    finally:
        finisher.join()
    assert log.read_bytes() == whole + last + b"\n"


def test_writer_waits_for_the_journal_lock_rather_than_cutting_a_live_record(run_copy):
    import optuna

    from bitnas.search.storage import open_storage

    _, run = run_copy
    log = run / "study.log"
    whole = log.read_bytes()
    last = whole.rstrip(b"\n").rsplit(b"\n", 1)[-1]
    lock = optuna.storages.journal.JournalFileSymlinkLock(str(log))
    lock.acquire()  # another worker appending: it holds the lock mid-write
    log.write_bytes(whole + last[:10])

    def finish() -> None:
        log.write_bytes(whole + last + b"\n")
        lock.release()

    finisher = threading.Timer(0.5, finish)
    finisher.start()
    try:
        open_storage(_journal_url(run))
    finally:
        finisher.join()
    assert log.read_bytes() == whole + last + b"\n"
    assert not list(run.glob("study.log.bak-*"))


def test_glued_or_foreign_journals_are_refused(tmp_path, capsys):
    glued = tmp_path / "glued.log"
    glued.write_bytes(b'{"op_code": 0}\n{"op_code": 1, "x":{"op_code": 2}\n')
    foreign = tmp_path / "notes.log"
    foreign.write_text("some text\nmore text\n")
    for path, fragment in ((glued, "is corrupt"), (foreign, "is not an Optuna journal")):
        before = path.read_bytes()
        _one_line_error(capsys, ["pareto", str(path)], fragment)
        spec = write_spec(tmp_path / "s.toml")
        _one_line_error(capsys, ["search", str(spec), "--storage", f"journal:///{path}",
                                 "--out", str(tmp_path / "run")], fragment)
        assert path.read_bytes() == before


# 2: a SQLite file that is not an Optuna storage, or holds no study


def _unchanged(path: Path):
    before = (path.read_bytes(), path.stat().st_mtime_ns)
    return lambda: (path.read_bytes(), path.stat().st_mtime_ns) == before


def test_pareto_never_writes_into_a_foreign_sqlite_file(tmp_path, capsys):
    db = tmp_path / "other.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE things (x INTEGER)")
    conn.close()
    unchanged = _unchanged(db)
    line = _one_line_error(capsys, ["pareto", str(db)], "not an Optuna storage")
    assert "--study" not in line
    _one_line_error(capsys, ["rebuild", str(db), "--trial", "0"], "not an Optuna storage")
    assert unchanged()


def test_pareto_on_an_optuna_storage_without_a_study(tmp_path, capsys):
    import optuna

    db = tmp_path / "empty.db"
    optuna.storages.RDBStorage(f"sqlite:///{db}").engine.dispose()
    unchanged = _unchanged(db)
    line = _one_line_error(capsys, ["pareto", str(db)], "holds no study")
    assert "--study" not in line
    assert unchanged()


# 5: a binary optdigits file


@pytest.mark.parametrize("content", [b"\x00\x01\x02" * 200, b"\xff\xfe\x80abc\n" * 50],
                         ids=["nul-bytes", "not-utf8"])
def test_binary_optdigits_file_is_named(tmp_path, capsys, content):
    data = tmp_path / "optdigits"
    data.mkdir()
    (data / "optdigits.tra").write_bytes(content)
    (data / "optdigits.tes").write_text("0," * 64 + "0\n")
    spec = write_spec(tmp_path / "s.toml")
    spec.write_text(spec.read_text().replace('name = "digits"', f'name = "digits"\npath = "{data}"', 1))
    line = _one_line_error(capsys, ["search", str(spec), "--out", str(tmp_path / "run")],
                           f"{data / 'optdigits.tra'} is not an optdigits text file")
    assert "split" not in line


# 7 and 15: exporting the front


def _export(run: Path) -> None:
    import optuna

    from bitnas.search.storage import open_storage
    from bitnas.search.study import export_front, spec_of

    study = optuna.load_study(study_name="tiny", storage=open_storage(_journal_url(run)))
    export_front(study, spec_of(study), None, run)


@pytest.mark.parametrize("blocked", ["pareto.json", "pareto.csv", "pareto.png"])
def test_an_export_that_cannot_write_one_file_replaces_none(run_copy, blocked):
    from bitnas.errors import BitnasError

    _, run = run_copy
    names = ["pareto.json", "pareto.csv", "pareto.png"]
    for name in names:
        (run / name).unlink()
        (run / name).write_text(f"old {name}\n")  # an export would replace it: it must not
    (run / blocked).unlink()
    (run / blocked).mkdir()
    with pytest.raises(BitnasError) as e:
        _export(run)
    assert str(e.value) == f"cannot write {run / blocked}: it is a directory"
    for name in names:
        assert (run / name).is_dir() if name == blocked else (run / name).read_text() == f"old {name}\n"
    assert not list(run.glob(".pareto.*.tmp"))


def test_export_removes_stale_temporary_files(run_copy):
    _, run = run_copy
    stale = [run / ".pareto.json.k1ll3d.tmp", run / ".pareto.csv.k1ll3d.tmp", run / ".pareto.png.k1ll3d.tmp"]
    fresh = run / ".pareto.csv.inflight.tmp"  # another export writing right now: not ours to remove
    other = run / ".notes.old.tmp"
    old_s = time.time() - 3600
    for p in [*stale, fresh, other]:
        p.write_text("partial")
    for p in [*stale, other]:
        os.utime(p, (old_s, old_s))
    _export(run)
    assert not any(p.exists() for p in stale)
    assert fresh.exists() and other.exists()
    assert json.loads((run / "pareto.json").read_text())


# 8: an unknown bundled spec name


def test_unknown_spec_name_lists_the_bundled_specs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    _one_line_error(capsys, ["search", "nosuchname"], "nosuchname is neither a spec file nor a bundled spec",
                    "quickstart", "cnn_digits")
    (tmp_path / "adir").mkdir()
    _one_line_error(capsys, ["search", "adir"], "is a directory")  # the first half still holds


# 9: a password with a raw '@'


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_password_with_a_raw_at_never_reaches_the_output(tmp_path, capfd):
    password = "pw1@secretpart@x9z:tail"
    url = f"postgresql://alice:{password}@127.0.0.1:{_closed_port()}/bitnas"
    fragments = [f for part in password.split("@") for f in part.split(":") if len(f) >= 3]
    spec = write_spec(tmp_path / "s.toml")
    for args in (["pareto", url], ["search", str(spec), "--storage", url, "--out", str(tmp_path / "run")]):
        assert main(args) == 2
        out, err = capfd.readouterr()  # file descriptors: a driver's or logger's output too
        assert "%40" in err and len(err.strip().splitlines()) == 1, err
        assert not [f for f in fragments if f in out + err], out + err
