"""Atomic file writes: a file, or several together, replaced whole or not at all.

Every writer of a user's files goes through here (the Pareto files, the report, the
exports), so that a crash or a kill never leaves a half-written file in place of a good one.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from bitnas.errors import BitnasError

STALE_TMP_S = 60.0


def _tmp_prefix(path: Path) -> str:
    return f".{path.name}."


def _remove_stale_tmps(path: Path) -> None:
    """Remove ``path``'s temporary files that a killed writer left behind; a fresh one
    may be another process's write in progress, so it is left alone."""
    for tmp in path.parent.glob(f"{_tmp_prefix(path)}*.tmp"):
        try:
            if tmp.is_file() and time.time() - tmp.stat().st_mtime > STALE_TMP_S:
                tmp.unlink()
        except OSError:  # gone meanwhile, or not ours to remove: it does no harm
            pass


def _why_not_replaceable(path: Path) -> str | None:
    if path.is_dir():
        return "it is a directory"
    if not path.parent.is_dir():
        return f"directory {path.parent} does not exist"
    if not os.access(path.parent, os.W_OK | os.X_OK):
        return f"directory {path.parent} is not writable"
    return None


def _check_replaceable(paths: Iterable[Path]) -> None:
    for path in paths:
        why = _why_not_replaceable(path)
        if why is not None:
            raise BitnasError(f"cannot write {path}: {why}")


def atomic_write_all(writes: Mapping[Path, Callable[[Path], None]]) -> None:
    """Write several files so that either all are replaced or none is.

    Each ``write`` renders its file into a temporary file beside it; only when all are
    rendered and every target can be replaced (no directory in the way, a writable
    directory) are they renamed over their targets. A failure is one BitnasError
    naming the real file, never a temporary one. Temporary files a killed writer left
    behind are removed first.
    """
    for path in writes:
        _remove_stale_tmps(path)
    _check_replaceable(writes)
    tmps: dict[Path, Path] = {}
    try:
        for path, write in writes.items():
            try:
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_tmp_prefix(path), suffix=".tmp")
                os.close(fd)
                tmps[path] = Path(tmp)
                write(tmps[path])
            except OSError as e:
                raise BitnasError(f"cannot write {path}: {e.strerror or e}") from None
        _check_replaceable(writes)  # again: the rendering took a while
        for path, tmp in tmps.items():
            try:
                os.replace(tmp, path)
            except OSError as e:
                raise BitnasError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        for tmp in tmps.values():
            if tmp.exists():
                tmp.unlink()


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write ``path`` through a temporary file in the same directory, then rename it over."""
    atomic_write_all({path: write})


