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
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import DateTime, create_engine, event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.types import TypeDecorator

from storage.images import ImageStore
from storage import settings

MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000


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
        url = url or os.environ.get("BACKDROP_DATABASE_URL") or ""
        if not url:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            url = f"sqlite:///{self.data_dir / 'backdrop.db'}"
        self.url = make_url(url)
        self.engine = _make_engine(self.url)
        self.Session = sessionmaker(self.engine, expire_on_commit=False)
        self.images = ImageStore(self.data_dir / "images", self.data_dir / "thumbs")
        if migrate:
            self.upgrade()

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

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed on success and rolled back on error."""
        with self.Session() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


def _make_engine(url) -> Engine:
    if url.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection, _record):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine


_databases: dict[tuple[str, str], Database] = {}
_lock = threading.Lock()


def get_database(url: str | None = None, data_dir: str | Path | None = None) -> Database:
    """The shared ``Database`` for this URL and data directory (defaults from the environment)."""
    data = Path(data_dir).absolute() if data_dir else settings.data_dir()
    key = (url or os.environ.get("BACKDROP_DATABASE_URL") or "", str(data))
    with _lock:
        if key not in _databases:
            _databases[key] = Database(key[0] or None, data)
        return _databases[key]
