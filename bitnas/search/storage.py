"""Opening Optuna storages from URLs or run directories, never printing a password."""

from __future__ import annotations

import importlib.util
import re
import time
import warnings
from pathlib import Path

import optuna

from bitnas.errors import BitnasError

DB_NAME = "study.db"
#: how long a SQLite writer waits for another process's lock before failing
SQLITE_BUSY_TIMEOUT_S = 120


_SECRET_KEYS = re.compile(r"(pass(word|wd)?|pwd|secret|token)", re.IGNORECASE)


def _split_url(url: str) -> tuple[str, str, str, str]:
    """(scheme://, userinfo, host-and-path, query) of a storage URL; userinfo may be ''.

    The userinfo runs to the last '@' of the authority part, so passwords holding
    '@' or '/' are covered; sqlite and journal URLs carry no credentials.
    """
    head, sep, rest = url.partition("://")
    if not sep or head.startswith(("sqlite", "journal")):
        return url, "", "", ""
    rest, qsep, query = rest.partition("?")
    at = rest.rfind("@")
    if at < 0:
        return head + sep, "", rest, qsep + query
    return head + sep, rest[:at], rest[at:], qsep + query


def _secrets(url: str) -> list[str]:
    _, userinfo, _, query = _split_url(url)
    found = [userinfo.partition(":")[2]] if ":" in userinfo else []
    for pair in query.lstrip("?").split("&"):
        key, _, value = pair.partition("=")
        if _SECRET_KEYS.search(key):
            found.append(value)
    return [s for s in found if s]


def mask_url(url: str) -> str:
    """``url`` with its password, and any password-like query value, replaced by ***."""
    scheme, userinfo, rest, query = _split_url(url)
    if not userinfo and not query:
        return url
    if ":" in userinfo:
        userinfo = userinfo.partition(":")[0] + ":***"
    masked_query = "&".join(
        f"{k}=***" if _SECRET_KEYS.search(k) and v else f"{k}{'=' if sep else ''}{v}"
        for k, sep, v in (pair.partition("=") for pair in query.lstrip("?").split("&") if pair)
    )
    return scheme + userinfo + rest + (f"?{masked_query}" if query else "")


def _scrub(message: str, url: str) -> str:
    """The first line of a driver's message, with the URL's secrets removed."""
    first = (message.strip().splitlines() or ["unknown error"])[0]
    for secret in sorted(_secrets(url), key=len, reverse=True):
        first = first.replace(secret, "***")
    return first


#: RDB workers beat every HEARTBEAT_S; a RUNNING trial silent for GRACE_S is failed and
#: retried (up to MAX_RETRY times) by Optuna's RetryHeartbeatStaleTrialCallback
HEARTBEAT_S, GRACE_S, MAX_RETRY = 30, 120, 3


def _local_file(url: str) -> Path | None:
    """The file of a sqlite or journal URL. As in SQLAlchemy's SQLite URLs, the path
    follows the third slash: ``journal:///runs/x.log`` is relative, ``journal:////abs.log``
    absolute."""
    for prefix in ("sqlite:///", "journal:///"):
        if url.startswith(prefix):
            return Path(url[len(prefix) :])
    return None


def _rdb_with_heartbeat(url: str) -> optuna.storages.RDBStorage:
    """A server database (PostgreSQL, MySQL) for many workers: heartbeats, so a killed
    worker's trial is failed and retried. Two workers creating the schema at once may
    collide ('already exists'); the loser tries again once the winner is done."""
    with warnings.catch_warnings():  # heartbeats are marked experimental in Optuna
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=MAX_RETRY)
        kwargs = {"heartbeat_interval": HEARTBEAT_S, "grace_period": GRACE_S,
                  "heartbeat_stale_trial_callback": retry}
        for attempt in range(5):
            try:
                return optuna.storages.RDBStorage(url, **kwargs)
            except Exception as e:
                if "already exists" not in str(e) or attempt == 4:
                    raise
                time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def _with_driver(url: str) -> str:
    """``postgresql://`` names no driver, and SQLAlchemy then wants psycopg2; bitnas's
    ``postgres`` extra installs psycopg 3, so use that when psycopg2 is absent."""
    if not url.startswith(("postgresql://", "postgres://")):
        return url
    url = "postgresql://" + url.partition("://")[2]  # SQLAlchemy 2 knows no postgres://
    if importlib.util.find_spec("psycopg2") is not None:
        return url
    if importlib.util.find_spec("psycopg") is None:
        raise BitnasError("PostgreSQL storage needs a driver: pip install 'bitnas[postgres]' "
                          "(psycopg 3), or psycopg2")
    return "postgresql+psycopg://" + url.partition("://")[2]


def open_storage(url: str, *, must_exist: bool = False) -> optuna.storages.BaseStorage:
    """An Optuna storage for ``url``: any SQLAlchemy URL, or journal:///path/to/file.log.

    With ``must_exist`` (read-only commands) a local file that is missing or empty
    is an error, rather than a new empty storage.
    """
    local = _local_file(url)
    if must_exist and local is not None and (not local.is_file() or local.stat().st_size == 0):
        state = "is empty" if local.is_file() else "does not exist"
        raise BitnasError(f"storage file {local} {state}; point at a run directory that holds a study")
    try:
        if url.startswith("journal:"):
            if local is None or not str(local) or str(local) == ".":
                raise ValueError("a journal URL names a file: journal:///relative/study.log or "
                                 "journal:////absolute/study.log")
            local.parent.mkdir(parents=True, exist_ok=True)
            backend = optuna.storages.journal.JournalFileBackend(str(local))
            return optuna.storages.JournalStorage(backend)
        if url.startswith("sqlite:///"):
            parent = Path(url[len("sqlite:///") :]).parent
            if not parent.is_dir():
                raise ValueError(f"directory {parent} does not exist")
            # a reader (bitnas pareto, the dashboard) must make a running search wait, not fail
            return optuna.storages.RDBStorage(
                url, engine_kwargs={"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}})
        return _rdb_with_heartbeat(_with_driver(url))
    except BitnasError:
        raise
    except Exception as e:  # driver, schema and file errors all reach the user as one line
        raise BitnasError(
            f"cannot open storage {mask_url(url)}: {_scrub(str(e), url)}; "
            "check the URL, and that the file is an Optuna storage"
        ) from None


def resolve_storage(target: str) -> str:
    """A storage URL from a run directory, a .db (SQLite) or .log (journal) file, or a URL."""
    if "://" in target:
        return target
    p = Path(target)
    if p.is_dir():
        db = p / DB_NAME
        if not db.is_file():
            raise BitnasError(f"{p} has no {DB_NAME}; point at a run directory or a storage URL")
        return f"sqlite:///{db}"
    if p.is_file():
        return f"journal:///{p}" if p.suffix == ".log" else f"sqlite:///{p}"
    raise BitnasError(f"{target} is neither a run directory, a .db file nor a storage URL")


def pick_study(storage: optuna.storages.BaseStorage, url: str, name: str | None) -> str:
    """The study to open: ``name`` if given and present, else the only study there."""
    try:
        names = [s.study_name for s in storage.get_all_studies()]
    except Exception as e:
        raise BitnasError(f"cannot read studies from {mask_url(url)}: {_scrub(str(e), url)}") from None
    if name is not None:
        if name not in names:
            raise BitnasError(
                f"no study {name!r} in {mask_url(url)}; studies there: {', '.join(names) or '(none)'}"
            )
        return name
    if len(names) != 1:
        raise BitnasError(
            f"{mask_url(url)} holds {len(names)} studies; choose one with --study "
            f"({', '.join(names) or 'none'})"
        )
    return names[0]
