"""Opening Optuna storages from URLs or run directories, never printing a password."""

from __future__ import annotations

import re
from pathlib import Path

import optuna

from bitnas.errors import BitnasError

DB_NAME = "study.db"


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ***."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def _scrub(message: str, url: str) -> str:
    m = re.search(r"://[^:/@]*:([^@/]*)@", url)
    first = (message.strip().splitlines() or ["unknown error"])[0]
    if m and m.group(1):
        first = first.replace(m.group(1), "***")
    return mask_url(first)


def open_storage(url: str) -> optuna.storages.BaseStorage:
    """An Optuna storage for ``url``: any SQLAlchemy URL, or journal:///path/to/file.log."""
    try:
        if url.startswith("journal://"):
            path = url[len("journal://") :]
            if not path:
                raise ValueError("journal:// needs a file path, e.g. journal:///runs/x/study.log")
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            backend = optuna.storages.journal.JournalFileBackend(path)
            return optuna.storages.JournalStorage(backend)
        if url.startswith("sqlite:///"):
            parent = Path(url[len("sqlite:///") :]).parent
            if not parent.is_dir():
                raise ValueError(f"directory {parent} does not exist")
        return optuna.storages.RDBStorage(url)
    except Exception as e:  # driver, schema and file errors all reach the user as one line
        raise BitnasError(
            f"cannot open storage {mask_url(url)}: {_scrub(str(e), url)}; "
            "check the URL, or pass a fresh --out directory"
        ) from None


def resolve_storage(target: str) -> str:
    """A storage URL from a run directory, a .db file, or a URL given as is."""
    if "://" in target:
        return target
    p = Path(target)
    if p.is_dir():
        db = p / DB_NAME
        if not db.is_file():
            raise BitnasError(f"{p} has no {DB_NAME}; point at a run directory or a storage URL")
        return f"sqlite:///{db}"
    if p.is_file():
        return f"sqlite:///{p}"
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
