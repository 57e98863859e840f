"""Storage failures told plainly: a full disk, a read-only or misplaced data folder, a damaged
database, an unreachable server. Each is a BackdropError (the command line prints ``error:``
and exits 2; the app shows the message) that says what happened and what to do. Errors that
are not about the environment (a bug, a constraint) are left as they are.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

from core.errors import BackdropError

DOCTOR = "`backdrop doctor` checks the data folder and the database and says what to do"
LOW_SPACE = 256 * 1024  # bytes: below this much free space an I/O error is taken for a full disk


class StorageError(BackdropError):
    """The data folder or the database cannot be used as asked."""


class DiskFull(StorageError):
    """No space left where the database or the images are written."""


class ReadOnly(StorageError):
    """The data folder (or the database file) cannot be written."""


class DatabaseDamaged(StorageError):
    """The database file is not a database, is malformed, or is empty."""


def disk_full(where: Path, what: str) -> DiskFull:
    return DiskFull(f"no space left on the disk of {where} while {what}. Free some space (`backdrop delete ID` "
                    "removes a generation and the images only it used) and try again")


def read_only(where: Path, what: str, detail: str) -> ReadOnly:
    return ReadOnly(f"cannot write to {where} while {what} ({detail}): the data folder is read-only or not "
                    "yours; make it writable, or point BACKDROP_DATA_DIR at a folder you can write")


def damaged(path: str, detail: str) -> DatabaseDamaged:
    return DatabaseDamaged(f"the database {path} is damaged ({detail}): Backdrop will not write into it. Keep a copy "
                           "of the file, then restore a backup, or salvage its readable rows into a new file with "
                           f"`backdrop doctor --salvage NEW.db`, which says how to put it in place; {DOCTOR}")


def low_space(where: Path) -> bool:
    try:
        return shutil.disk_usage(_existing(where)).free < LOW_SPACE
    except OSError:
        return False


def _existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def from_oserror(exc: OSError, where: Path, what: str) -> StorageError | None:
    """The StorageError an OSError on the data folder means, or None when it is not about the
    environment (the caller re-raises the original)."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT) or (exc.errno == errno.EIO and low_space(where)):
        return disk_full(where, what)
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return read_only(where, what, exc.strerror or str(exc))
    if exc.errno in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
        return StorageError(f"{where} is not usable as Backdrop's data folder while {what} ({exc.strerror}): "
                            "BACKDROP_DATA_DIR must name a folder (or a path where one can be made)")
    return None


def from_database(exc: BaseException, database: str, data_dir: Path) -> StorageError | None:
    """The StorageError a DB-API error means (SQLite or PostgreSQL), or None to leave it as it is."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc)
    if name:
        what = "using the database"
        if name == "SQLITE_NOTADB" or name.startswith("SQLITE_CORRUPT"):
            return damaged(database, text)
        if name == "SQLITE_FULL" or (name.startswith("SQLITE_IOERR") and low_space(data_dir)):
            return disk_full(data_dir, what)
        if name.startswith("SQLITE_READONLY"):
            return read_only(data_dir, what, text)
        if name.startswith("SQLITE_CANTOPEN"):
            return StorageError(f"cannot open the database {database} ({text}): check that the data folder "
                                f"{data_dir} exists and is yours; {DOCTOR}")
        if name.startswith("SQLITE_IOERR"):
            return StorageError(f"the disk under {data_dir} failed while using the database ({text}); {DOCTOR}")
        return None
    state = getattr(exc, "sqlstate", None)
    if state == "53100":  # PostgreSQL: disk_full
        return DiskFull(f"the PostgreSQL server's disk is full ({text.strip()}): nothing was recorded; free space "
                        "there and try again")
    if state and state.startswith(("08", "57P", "53")) or (state is None and _connection_failure(exc)):
        return StorageError(f"cannot use the database server at {database}: {text.strip()}")
    return None


def _connection_failure(exc: BaseException) -> bool:
    return type(exc).__name__ in ("OperationalError", "InterfaceError") and type(exc).__module__.startswith("psycopg")
