"""Storage errors of the job store: what they are (a full disk, a read-only folder, a
damaged database) and the sentence the user gets about each."""

from __future__ import annotations

import errno
import shutil
import sqlite3
from pathlib import Path

#: What a full disk, a read-only folder or a damaged database raises from the store.
STORAGE_ERRORS = (sqlite3.Error, OSError)


def _disk_full(error: BaseException, data_dir: Path | None = None) -> bool:
    """A full disk; SQLite may say only "disk I/O error" (its shared-memory file cannot grow)."""
    return getattr(error, "errno", None) == errno.ENOSPC or "disk is full" in str(error) or (
        data_dir is not None and "disk I/O error" in str(error) and _no_space(data_dir))


def _no_space(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < 2**20
    except OSError:
        return False


def _read_only(error: BaseException) -> bool:
    return (getattr(error, "errno", None) in (errno.EACCES, errno.EROFS, errno.EPERM)
            or "readonly" in str(error))


def _damaged(error: BaseException) -> bool:
    return isinstance(error, sqlite3.DatabaseError) and (
        not isinstance(error, sqlite3.OperationalError) or _damage(error))


def disk_trouble(error: BaseException) -> bool:
    """Whether `error` is a full disk, a read-only folder or a damaged database."""
    return isinstance(error, STORAGE_ERRORS) and (
        _disk_full(error) or _read_only(error) or _damaged(error))


def storage_problem(error: BaseException, data_dir: Path) -> str:
    """One sentence for the user about a storage error met in `data_dir`."""
    if _disk_full(error, data_dir):
        return (f"the disk holding the data folder {data_dir} is full; free some space "
                "(finished jobs can be purged) and try again.")
    if _read_only(error):
        return (f"the data folder {data_dir} cannot be written ({error}); fix its permissions "
                "or start the backend with another --data-dir.")
    if _damaged(error):
        return damaged_database(data_dir / "jobs.sqlite3", str(error))
    return f"the backend could not use its data folder {data_dir} ({error})."


def damaged_database(path: Path, reason: str) -> str:
    return (f"the job database {path} is damaged or not CLIPascene's ({reason}). Stop the "
            f"backend, move it aside (mv {path} {path}.damaged) and start again: a new one is "
            "made, and the files of earlier jobs stay in the jobs folder.")


def _damage(error: sqlite3.OperationalError) -> bool:
    """Whether an OperationalError means the file is not a usable database."""
    return any(text in str(error) for text in ("malformed", "not a database", "no such column",
                                               "has no column"))
