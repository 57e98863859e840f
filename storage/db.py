"""Database and data directory: one ``Database`` per (URL, data directory), migrated on open.

Configuration (environment):
- ``BACKDROP_DATA_DIR``: where the SQLite file and the image store live. Default ``./data``,
  relative to the current working directory of the process that opens it.
- ``BACKDROP_DATABASE_URL``: any SQLAlchemy URL (e.g. ``postgresql+psycopg://user@host/db``).
  Default ``sqlite:///$BACKDROP_DATA_DIR/backdrop.db``.

SQLite runs in WAL mode with a busy timeout so the job worker and the app can write at once.
Timestamps are timezone-aware UTC in Python; SQLite stores them as naive UTC text, PostgreSQL
as ``timestamptz``, and both read back as aware UTC.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import DateTime, create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from core.config import config
from storage import errors, settings
from storage.images import ImageStore
from storage.space import space_reserve

MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
T = TypeVar("T")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes in and out, whatever the backend does with time zones."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database: use an aware UTC datetime")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def alembic_config(url: str | None = None) -> Config:
    """Alembic config built in code, so migrations run from any working directory."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


class Database:
    """Engine, session factory and image store for one database URL and data directory."""

    def __init__(self, url: str | None = None, data_dir: str | Path | None = None, migrate: bool = True):
        self.data_dir = Path(data_dir).absolute() if data_dir else settings.data_dir()
        url = url or config().database_url
        self.read_only = False
        if not url:
            self.read_only = _prepare_folder(self.data_dir)
            _check_sqlite_file(self.data_dir / "backdrop.db", self.data_dir / "images")
            if not self.read_only:
                _refuse_damaged(self.data_dir / "backdrop.db")
            url = f"sqlite:///{self.data_dir / 'backdrop.db'}"
        self.url = make_url(url)
        self.engine = _make_engine(self.url, self.data_dir, self.read_only)
        self.Session = sessionmaker(self.engine, expire_on_commit=False)
        self.images = ImageStore(self.data_dir / "images", self.data_dir / "thumbs")
        self.reserve = space_reserve(self.data_dir)
        if migrate:  # its first read is where a full disk shows (SQLite cannot open its WAL files)
            self.retry_when_full(self.upgrade)
        if not self.read_only:
            self.reserve.ensure()

    @property
    def is_sqlite(self) -> bool:
        return self.url.get_backend_name() == "sqlite"

    def current_revision(self) -> str | None:
        with self.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    def upgrade(self, revision: str = "head") -> None:
        """Bring the schema to ``revision``; a no-op when already there."""
        head = ScriptDirectory.from_config(alembic_config()).get_current_head()
        if revision == "head" and self.current_revision() == head:
            return
        if self.read_only:
            raise errors.read_only(self.data_dir, "bringing the database up to this version of Backdrop",
                                   "the folder is read-only")
        with self._migration_lock(), self.engine.connect() as conn:
            if self.is_sqlite:
                # SQLite alters a table by copying and dropping it: with foreign keys on, the drop
                # would cascade and delete every output row. The pragma only works outside a transaction.
                conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
                conn.commit()
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            with conn.begin():
                command.upgrade(cfg, revision)
            if self.is_sqlite:
                conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                conn.commit()

    @contextlib.contextmanager
    def _migration_lock(self) -> Iterator[None]:
        """Two processes opening a fresh database at once must not both create tables: PostgreSQL
        takes an advisory lock inside the migration (env.py), a SQLite file a lock file."""
        if not self.is_sqlite or not self.url.database or self.url.database == ":memory:":
            yield
            return
        lock_path = Path(self.url.database).with_suffix(".migrate.lock")
        with open(lock_path, "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def retry_when_full(self, operation: Callable[[], T]) -> T:
        """Run ``operation``; when it fails for lack of disk space, give up the data folder's space
        reserve (storage.space) and run it once more. What frees space must not fail for want of it."""
        try:
            return operation()
        except errors.DiskFull:
            if not self.reserve.release():
                raise
            self.engine.dispose()  # connections that failed to open their WAL files start over
            return operation()

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed on success and rolled back on error."""
        with self.Session() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


def _make_engine(url, data_dir: Path, read_only: bool = False) -> Engine:
    shown = url.database if url.get_backend_name() == "sqlite" else url.render_as_string(hide_password=True)
    if url.get_backend_name() != "sqlite":
        engine = create_engine(url, pool_pre_ping=True)
    else:
        if read_only:  # a read-only folder: nothing can change the file, so read it as it is (no -wal, -shm)
            url = make_url(f"sqlite:///file:{url.database}?mode=ro&immutable=1&uri=true")
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):
            cursor = dbapi_connection.cursor()
            if not read_only:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()


    @event.listens_for(engine, "handle_error")
    def _plain_storage_errors(context):
        translated = errors.from_database(context.original_exception, shown, data_dir)
        if translated is not None:
            raise translated from context.original_exception

    return engine


def _prepare_folder(data_dir: Path) -> bool:
    """Make the data folder if it is missing; True when it exists but cannot be written (the
    history can still be read)."""
    if data_dir.exists() and not data_dir.is_dir():
        raise errors.StorageError(f"the data folder {data_dir} is a file, not a folder: point BACKDROP_DATA_DIR at "
                                  "a folder (or a path where one can be made)")
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise errors.from_oserror(exc, data_dir, "making the data folder") or exc
    return not os.access(data_dir, os.W_OK)


def _check_sqlite_file(path: Path, images: Path) -> None:
    """A damaged, empty or missing database is never silently replaced by a new one: the old
    images would become orphans and the history would read empty."""
    if path.is_dir():
        raise errors.StorageError(f"{path} is a folder, not a database file: move it away; {errors.DOCTOR}")
    if path.exists() and path.stat().st_size == 0:
        raise errors.DatabaseDamaged(
            f"the database {path} is empty (0 bytes): it was truncated or replaced, and Backdrop will not start a "
            f"new history over it. Restore it from a backup; to start anew on purpose, move it away "
            f"(mv {path} {path}.empty). {errors.DOCTOR}")
    if not path.exists() and images.is_dir() and any(images.iterdir()):
        raise errors.StorageError(
            f"the data folder {path.parent} holds stored images but no database {path.name}: it was moved or "
            f"deleted. Restore it from a backup; to start anew on purpose, move {images} away first. {errors.DOCTOR}")


def _refuse_damaged(path: Path) -> None:
    """A damaged database is not written into: writes go on into an intact page as if nothing
    were wrong, and its history is salvaged instead (``backdrop doctor --salvage``). SQLite's
    quick_check reads every page (no index cross-check): 30 to 100 ms for 16,000 generations here.
    Other failures to read it (a full disk, permissions) are left to the engine to report."""
    if not path.is_file():
        return
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as connection:
            problems = [row[0] for row in connection.execute("PRAGMA quick_check(1)")]
    except sqlite3.DatabaseError as exc:
        if exc.sqlite_errorname != "SQLITE_NOTADB" and not exc.sqlite_errorname.startswith("SQLITE_CORRUPT"):
            return
        problems = [str(exc)]
    if problems != ["ok"]:
        detail = problems[0].replace("*** in database main ***", "").strip().splitlines()[0]
        known = ("file is not a database", "database disk image is malformed")
        raise errors.damaged(str(path), detail if detail.startswith(known) else f"{known[1]}: {detail}")


_databases: dict[tuple[str, str], Database] = {}
_lock = threading.Lock()


def get_database(url: str | None = None, data_dir: str | Path | None = None) -> Database:
    """The shared ``Database`` for this URL and data directory (defaults from the environment)."""
    data = Path(data_dir).absolute() if data_dir else settings.data_dir()
    key = (url or config().database_url, str(data))
    with _lock:
        if key not in _databases:
            _databases[key] = Database(key[0] or None, data)
        return _databases[key]
