from pathlib import Path

import pytest

from bitnas.errors import BitnasError
from bitnas.search.storage import _scrub, mask_url, open_storage


@pytest.mark.parametrize("url,masked,secret", [
    ("postgresql://user:s3cret@host:5432/db", "postgresql://user:***@host:5432/db", "s3cret"),
    ("postgresql://user:pa/ss@localhost:1/db", "postgresql://user:***@localhost:1/db", "pa/ss"),
    ("postgresql://user:p@ssw@host/db", "postgresql://user:***@host/db", "p@ssw"),
    ("postgresql://host/db?password=topsecret&x=1", "postgresql://host/db?password=***&x=1",
     "topsecret"),
    ("mysql+pymysql://u:pw1234@h:3306/d", "mysql+pymysql://u:***@h:3306/d", "pw1234"),
])
def test_passwords_are_masked(url, masked, secret):
    assert mask_url(url) == masked
    assert secret not in _scrub(f"could not connect to {url} with {secret}", url)


@pytest.mark.parametrize("url", ["sqlite:////tmp/a@b:c.db", "postgresql://alice@h/db",
                                 "journal:///x/y.log"])
def test_urls_without_passwords_are_unchanged(url):
    assert mask_url(url) == url


def test_read_only_open_never_creates_a_file(tmp_path):
    for url in (f"sqlite:///{tmp_path / 'nope.db'}", f"journal:///{tmp_path / 'nope.log'}"):
        with pytest.raises(BitnasError, match="does not exist"):
            open_storage(url, must_exist=True)
    assert not list(tmp_path.iterdir())
    (tmp_path / "zero.db").touch()
    with pytest.raises(BitnasError, match="is empty"):
        open_storage(f"sqlite:///{tmp_path / 'zero.db'}", must_exist=True)
    assert (tmp_path / "zero.db").stat().st_size == 0


def test_server_databases_get_heartbeats_and_retries(tmp_path):
    from bitnas.search.storage import GRACE_S, HEARTBEAT_S, _rdb_with_heartbeat

    storage = _rdb_with_heartbeat(f"sqlite:///{tmp_path / 'hb.db'}")  # the path PostgreSQL takes
    assert storage.get_heartbeat_interval() == HEARTBEAT_S and storage.grace_period == GRACE_S
    assert type(storage.get_heartbeat_stale_trial_callback()).__name__ == "RetryHeartbeatStaleTrialCallback"


def test_journal_urls_follow_sqlalchemy_s_slashes(tmp_path, monkeypatch):
    from bitnas.search.storage import _local_file

    monkeypatch.chdir(tmp_path)
    assert _local_file("journal:///runs/x.log") == Path("runs/x.log")
    assert _local_file(f"journal:///{tmp_path}/x.log") == tmp_path / "x.log"
    open_storage("journal:///rel/study.log")
    assert (tmp_path / "rel").is_dir()
    with pytest.raises(BitnasError, match="names a file"):
        open_storage("journal:///")


def test_postgresql_urls_without_a_driver_use_psycopg_3(monkeypatch):
    import importlib.util

    from bitnas.search import storage

    have = {"psycopg"}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object() if name in have else None)
    assert storage._with_driver("postgresql://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert storage._with_driver("postgresql+psycopg2://u:p@h/db") == "postgresql+psycopg2://u:p@h/db"
    have.add("psycopg2")  # SQLAlchemy's default driver is there: leave the URL alone
    assert storage._with_driver("postgresql://u:p@h/db") == "postgresql://u:p@h/db"
    assert storage._with_driver("postgres://u:p@h/db") == "postgresql://u:p@h/db"
    have.clear()
    with pytest.raises(BitnasError, match=r"pip install 'bitnas\[postgres\]'"):
        open_storage("postgresql://u:secret@h/db")


def test_a_run_directory_keeps_its_study_in_a_journal_and_an_older_run_in_sqlite(tmp_path):
    from bitnas.search.storage import resolve_storage, run_dir_url

    new, old, both = tmp_path / "new", tmp_path / "old", tmp_path / "both"
    for d in (new, old, both):
        d.mkdir()
    assert run_dir_url(new) == f"journal:///{new / 'study.log'}"
    (old / "study.db").touch()  # made by a bitnas that stored studies in SQLite: resumes there
    assert run_dir_url(old) == f"sqlite:///{old / 'study.db'}"
    (both / "study.db").touch()
    (both / "study.log").touch()
    assert run_dir_url(both) == f"journal:///{both / 'study.log'}"
    assert resolve_storage(str(old)) == run_dir_url(old)
    with pytest.raises(BitnasError, match="has no study.log"):
        resolve_storage(str(new))
