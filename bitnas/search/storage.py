"""Opening Optuna storages from URLs or run directories, never printing a password."""

from __future__ import annotations

import datetime
import importlib.util
import json
import os
import re
import shutil
import sqlite3
import sys
import time
import warnings
from pathlib import Path

import optuna

from bitnas.errors import BitnasError

#: a run directory's storage: an Optuna journal file (a trial's writes cost ~15 ms, against
#: ~100 ms in SQLite, where each write is a transaction); an older run's SQLite file is kept
JOURNAL_NAME = "study.log"
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


def _refuse_ambiguous_userinfo(url: str) -> None:
    """A user name or password holding a raw '@' is split at its first '@' by the
    driver, which then puts the rest of the password into its error messages (as a
    host name): such a URL cannot work as meant, so it is refused before any driver sees it."""
    _, userinfo, _, _ = _split_url(url)
    if "@" in userinfo:
        raise BitnasError(
            f"the user name or password in storage URL {mask_url(url)} holds a raw '@', which "
            "the driver would read as the end of the password; percent-encode it (@ -> %40; "
            "likewise : -> %3A, / -> %2F)")


#: the SQLite tables that mark an Optuna storage (a bare `studies` table could be anyone's)
_OPTUNA_TABLES = {"studies", "version_info"}


def _check_sqlite_read_only(path: Path, url: str) -> None:
    """Refuse, without writing a byte, a SQLite file that is not an Optuna storage or holds
    no study: opening it through Optuna would create Optuna's tables in it."""
    try:
        uri = path.resolve().as_uri() + "?mode=ro"
        conn = sqlite3.connect(uri, uri=True, timeout=SQLITE_BUSY_TIMEOUT_S)
        try:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            n_studies = (conn.execute("SELECT count(*) FROM studies").fetchone()[0]
                         if _OPTUNA_TABLES <= tables else 0)
        finally:
            conn.close()
    except sqlite3.Error as e:
        raise BitnasError(f"cannot open storage {url}: {str(e).splitlines()[0]}; check that the file "
                          "is an Optuna storage (the study.db of a bitnas run)") from None
    if not _OPTUNA_TABLES <= tables:
        raise BitnasError(f"cannot open storage {url}: it is not an Optuna storage (a SQLite file "
                          "without Optuna's tables); point at the study.db of a bitnas run")
    if n_studies == 0:
        raise BitnasError(_no_study(url))


def _no_study(url: str) -> str:
    return f"{mask_url(url)} holds no study; `bitnas search SPEC --storage URL` creates one"


def _last_line(path: Path) -> tuple[int, bytes]:
    """(offset, bytes) of the last line of ``path``, its newline included if it has one;
    read backwards from the end, as a journal can be large."""
    with path.open("rb") as f:
        pos = f.seek(0, os.SEEK_END)
        tail = b""
        while pos > 0:
            step = min(1 << 16, pos)
            pos -= step
            f.seek(pos)
            tail = f.read(step) + tail
            newline = tail.rfind(b"\n", 0, len(tail) - 1)  # the one before the last line
            if newline >= 0:
                return pos + newline + 1, tail[newline + 1 :]
        return 0, tail


def _is_record(line: bytes) -> bool:
    """Whether ``line`` is one whole journal record (a JSON object)."""
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError alike
        return False


#: how long a reader waits for a journal's unfinished last record to be completed
JOURNAL_SETTLE_S = 2.0
#: a journal's first line longer than this is no Optuna record (a create-study op is short)
_FIRST_LINE_MAX_BYTES = 1 << 20


def _journal_problem(path: Path) -> tuple[str | None, int, bytes]:
    """What is wrong with a journal file, if anything, with its last line and that line's
    offset. ``unterminated``: a whole last record without its newline; ``cut-off``: a
    last line with no newline that is no record (a writer killed mid-write, or one
    still writing); ``no-record``: the same as the only line; ``corrupt``: a last line
    with its newline that is no record; ``foreign``: a first line that is no record."""
    offset, line = _last_line(path)
    with path.open("rb") as f:
        first = f.readline(_FIRST_LINE_MAX_BYTES)
    if first.endswith(b"\n") and not _is_record(first):
        return "foreign", offset, line
    if line.endswith(b"\n"):
        return (None if _is_record(line) else "corrupt"), offset, line
    if _is_record(line):
        return "unterminated", offset, line
    return ("cut-off" if offset > 0 else "no-record"), offset, line


def _journal_refusal(path: Path, problem: str) -> BitnasError:
    return BitnasError({
        "foreign": f"{path} is not an Optuna journal (its first line is not a JSON record); "
                   "point at a study.log written by bitnas",
        "no-record": f"{path} holds no whole journal record (not an Optuna journal, or its first "
                     "record was cut off by a crash); point at a study.log written by bitnas, or "
                     "remove this file to start afresh",
        "corrupt": f"journal {path} is corrupt: its last line is not a JSON record (a crashed "
                   "writer's records glued together?); restore the file from a backup",
        "cut-off": f"journal {path} ends in a cut-off record (a writer was killed mid-write); "
                   "`bitnas search` or `bitnas worker` on it repairs it, keeping a backup",
    }[problem])


def _check_journal(path: Path, *, repair: bool) -> None:
    """Refuse or repair a journal whose last record was cut off by a crash mid-write.

    Optuna's JournalFileBackend skips a last line without a newline, and the next
    append would be glued onto it, leaving a line no reader can parse. Read-only
    commands (``repair=False``) wait ``JOURNAL_SETTLE_S`` for a live writer to finish
    the line, then refuse a cut-off record, writing nothing. Writers (``repair=True``)
    take the journal's lock, so no other worker is mid-append; a last line that is
    still cut off then is a crash's: the file is copied to ``<file>.bak-<time>``, the
    partial line dropped, and stderr says so (a whole last record missing only its
    newline gets the newline). A file that is no Optuna journal, or whose last line
    has its newline but is no record (an earlier crash's glued records), is refused
    either way: it cannot be repaired without losing what it holds.
    """
    if not path.is_file() or path.stat().st_size == 0:
        return
    problem, offset, line = _journal_problem(path)
    if problem is None:
        return
    if not repair:
        deadline = time.monotonic() + JOURNAL_SETTLE_S
        while problem in ("cut-off", "no-record") and time.monotonic() < deadline:
            time.sleep(0.1)
            problem, offset, line = _journal_problem(path)
        if problem not in (None, "unterminated"):  # Optuna reads all but an unterminated record
            raise _journal_refusal(path, problem)
        return
    if problem in ("foreign", "corrupt"):
        raise _journal_refusal(path, problem)
    lock = optuna.storages.journal.JournalFileSymlinkLock(str(path))  # the lock appends take
    lock.acquire()
    try:
        problem, offset, line = _journal_problem(path)
        if problem == "unterminated":
            with path.open("ab") as f:
                f.write(b"\n")
        elif problem == "cut-off":
            stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S%f")
            backup = path.with_name(f"{path.name}.bak-{stamp}")
            with path.open("rb") as src, backup.open("xb") as dst:
                shutil.copyfileobj(src, dst)
                dst.flush()
                os.fsync(dst.fileno())
            os.truncate(path, offset)
            print(f"bitnas: warning: journal {path} ended in a cut-off record ({len(line)} bytes, "
                  f"left by a writer killed mid-write); dropped it, the file as it was is kept in "
                  f"{backup}", file=sys.stderr, flush=True)
        elif problem is not None:
            raise _journal_refusal(path, problem)
    finally:
        lock.release()


def open_storage(url: str, *, must_exist: bool = False) -> optuna.storages.BaseStorage:
    """An Optuna storage for ``url``: any SQLAlchemy URL, or journal:///path/to/file.log.

    With ``must_exist`` (read-only commands) nothing is written: a local file that is
    missing or empty, a SQLite file that is no Optuna storage or holds no study, and a
    journal whose last record was cut off by a crash are refused. Without it (search,
    worker) a cut-off journal record is dropped, a backup of the file kept (see
    ``_check_journal``). A user name or password with a raw '@' is refused either way.
    """
    _refuse_ambiguous_userinfo(url)
    local = _local_file(url)
    if must_exist and local is not None and (not local.is_file() or local.stat().st_size == 0):
        state = "is empty" if local.is_file() else "does not exist"
        raise BitnasError(f"storage file {local} {state}; point at a run directory that holds a study")
    if must_exist and local is not None and url.startswith("sqlite:///"):
        _check_sqlite_read_only(local, url)
    try:
        if url.startswith("journal:"):
            if local is None or not str(local) or str(local) == ".":
                raise ValueError("a journal URL names a file: journal:///relative/study.log or "
                                 "journal:////absolute/study.log")
            _check_journal(local, repair=not must_exist)
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


def file_url(path: Path) -> str:
    """The storage URL of a journal (.log) or SQLite file (anything else)."""
    return f"journal:///{path}" if path.suffix == ".log" else f"sqlite:///{path}"


def run_dir_url(out_dir: Path) -> str:
    """The storage of run directory ``out_dir``: its journal ``study.log``, or the
    ``study.db`` of a run made by an older bitnas (which resumes there)."""
    db = out_dir / DB_NAME
    return file_url(db if db.is_file() and not (out_dir / JOURNAL_NAME).exists()
                    else out_dir / JOURNAL_NAME)


def resolve_storage(target: str) -> str:
    """A storage URL from a run directory, a .log (journal) or .db (SQLite) file, or a URL."""
    if "://" in target:
        return target
    p = Path(target)
    if p.is_dir():
        if not (p / JOURNAL_NAME).is_file() and not (p / DB_NAME).is_file():
            raise BitnasError(f"{p} has no {JOURNAL_NAME} (nor an older run's {DB_NAME}); point at "
                              "a run directory or a storage URL")
        return run_dir_url(p)
    if p.is_file():
        return file_url(p)
    raise BitnasError(f"{target} is neither a run directory, a .log or .db file nor a storage URL")


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
    if not names:
        raise BitnasError(_no_study(url))
    if len(names) != 1:
        raise BitnasError(
            f"{mask_url(url)} holds {len(names)} studies; choose one with --study "
            f"({', '.join(names) or 'none'})"
        )
    return names[0]
