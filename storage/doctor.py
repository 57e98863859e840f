"""What is wrong with a data folder and its database, and what to do about it (``backdrop
doctor``). It only reads: a damaged database is opened read-only, never repaired or replaced
behind the user's back.

Checks: the data folder (a folder, writable, free space, the space reserve), the database file
(not empty, a SQLite file, ``PRAGMA integrity_check``), the schema's revision, the image store
against the database (images recorded but missing, files nothing records), and runs left
``running`` by a process that is gone.

``salvage`` copies the readable rows of a damaged SQLite database into a new file with Python's
sqlite3 (the sqlite3 tool's ``.recover`` fails on Debian's 3.40 even on an intact Backdrop
database); it reads the damaged file only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from core.config import config
from core.errors import InputError
from storage import settings
from storage.errors import StorageError
from storage.space import space_reserve

SQLITE_HEADER = b"SQLite format 3\x00"
LOW_SPACE = 100 * 1024 * 1024


@dataclass(frozen=True)
class Finding:
    ok: bool
    what: str
    fix: str = ""


def examine(data_dir: str | Path | None = None, url: str | None = None) -> list[Finding]:
    """Every finding, in order; ``url`` empty: the SQLite file in the data folder."""
    folder = Path(data_dir).absolute() if data_dir else settings.data_dir()
    url = url if url is not None else config().database_url
    findings = _folder(folder)
    if not folder.is_dir():
        return findings
    if url:
        findings += _server(url, folder)
    else:
        findings += _sqlite(folder / "backdrop.db", folder)
    return findings


def _folder(folder: Path) -> list[Finding]:
    if not folder.exists():
        return [Finding(True, f"data folder {folder} does not exist yet: it is made at the first start")]
    if not folder.is_dir():
        return [Finding(False, f"data folder {folder} is a file, not a folder",
                        "point BACKDROP_DATA_DIR at a folder, or move the file away")]
    found = [Finding(True, f"data folder {folder}")]
    if not os.access(folder, os.W_OK):
        found.append(Finding(False, "the data folder cannot be written: history can be read, nothing recorded",
                             f"make {folder} writable (a read-only mount, or another owner?)"))
    free = shutil.disk_usage(folder).free
    reserve = space_reserve(folder)
    fix = "free space: `backdrop delete ID` removes a generation and the images only it used"
    if free < reserve.size:
        found.append(Finding(False, f"the disk of the data folder is full ({free // 1024} KiB free)", fix))
    elif free < LOW_SPACE:
        found.append(Finding(True, f"only {free / 1e6:.1f} MB free on the disk of the data folder: {fix}"))
    else:
        found.append(Finding(True, f"{free / 1e9:.1f} GB free"))
    if not reserve.exists():
        found.append(Finding(True, "no space reserve yet (it is made at the next start with room for it; it lets "
                                   "`history` and `delete` run on a full disk)"))
    return found


def _sqlite(path: Path, folder: Path) -> list[Finding]:
    if not path.exists():
        images = folder / "images"
        if images.is_dir() and any(images.iterdir()):
            return [Finding(False, f"no database {path.name}, but the image store holds images: the history was "
                                   "moved or deleted", f"restore {path} from a backup; to start anew, move {images} "
                                                       "away first")]
        return [Finding(True, "no database yet: it is made at the first start")]
    if path.stat().st_size == 0:
        return [Finding(False, f"the database {path} is empty (0 bytes): truncated or replaced",
                        f"restore it from a backup; to start a new history on purpose: mv {path} {path}.empty")]
    with open(path, "rb") as handle:
        if handle.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
            return [Finding(False, f"{path} is not a SQLite database (its first bytes are not SQLite's)",
                            f"restore it from a backup; keep this file (mv {path} {path}.damaged) in case it can "
                            "be salvaged")]
    salvage = (f"keep a copy (cp {path} {path}.damaged), then restore a backup, or salvage its readable rows into "
               f"a new file: backdrop doctor --salvage {folder / 'salvaged.db'} (it says how to put it in place)")
    try:
        readonly = "&immutable=1" if not os.access(folder, os.W_OK) else ""
        connection = sqlite3.connect(f"file:{path}?mode=ro{readonly}", uri=True)
    except sqlite3.Error as exc:
        return [Finding(False, f"the database {path} cannot be opened: {exc}", salvage)]
    try:
        problems = [row[0] for row in connection.execute("PRAGMA integrity_check(20)")]
    except sqlite3.Error as exc:
        connection.close()
        return [Finding(False, f"the database {path} is damaged: {exc}", salvage)]
    connection.close()
    if problems != ["ok"]:
        return [Finding(False, f"the database {path} is damaged: " + "; ".join(problems[:5]), salvage)]
    readonly = "&immutable=1" if not os.access(folder, os.W_OK) else ""
    return ([Finding(True, f"database {path}: integrity check ok")]
            + _contents(f"sqlite:///file:{path}?mode=ro{readonly}&uri=true", folder))


def _server(url: str, folder: Path) -> list[Finding]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    shown = make_url(url).render_as_string(hide_password=True)
    try:
        with create_engine(url).connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # any driver's failure to connect is the finding
        return [Finding(False, f"cannot reach the database {shown}: {exc}".strip(),
                        "check BACKDROP_DATABASE_URL and that the server runs")]
    return [Finding(True, f"database {shown} answers")] + _contents(url, folder)


def _contents(url: str, folder: Path) -> list[Finding]:
    """Schema revision, image store against the database, runs whose process is gone."""
    from sqlalchemy import create_engine, select

    from storage.images import ImageStore
    from storage.lifecycle import Status, worker_gone
    from storage.models import Generation, Image

    engine = create_engine(url)
    found = []
    try:
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        from storage.db import alembic_config

        with engine.connect() as connection:
            revision = MigrationContext.configure(connection).get_current_revision()
            head = ScriptDirectory.from_config(alembic_config()).get_current_head()
            if revision != head:
                found.append(Finding(True, f"schema at revision {revision}, this Backdrop's is {head}: it is "
                                           "migrated at the next start"))
                return found
            found.append(Finding(True, f"schema at revision {revision} (current)"))
            recorded = set(connection.scalars(select(Image.sha256)))
            store = ImageStore(folder / "images", folder / "thumbs")
            missing = sorted(sha for sha in recorded if not store.path(sha).is_file())
            owners = sorted(set(connection.scalars(select(Generation.id).where(
                Generation.input_sha256.in_(missing) | Generation.mask_sha256.in_(missing))))) if missing else []
            running = list(connection.execute(select(Generation.id, Generation.worker, Generation.heartbeat_at)
                                              .where(Generation.status == Status.RUNNING)))
    finally:
        engine.dispose()
    if missing:
        found.append(Finding(False, f"{len(missing)} recorded image(s) are missing from {folder / 'images'}"
                                    + (f" (inputs of generations {owners[:20]})" if owners else ""),
                             "restore the images folder from a backup, or delete those generations"))
    else:
        found.append(Finding(True, f"all {len(recorded)} recorded images are in the store"))
    on_disk = {p.name for p in (folder / "images").glob("??/??/*") if p.is_file()} if (folder / "images").is_dir() else set()
    orphans = on_disk - recorded
    if orphans:
        found.append(Finding(True, f"{len(orphans)} file(s) in the image store that no generation records (left by "
                                   "an interrupted write; harmless, they only take space)"))
    gone = [gid for gid, worker, beat in running if worker_gone(worker, beat)]
    if gone:
        found.append(Finding(False, f"generation(s) {gone} are marked running but their process is gone",
                             "any `backdrop` command (e.g. `backdrop history`) or the app's next start marks them "
                             "failed; `backdrop cancel ID` does too"))
    return found



MAX_PROBES = 1_000_000  # rows looked up one by one between two damaged pages of a table


@dataclass(frozen=True)
class Salvaged:
    """What ``salvage`` copied of one table: ``rows``, and whether it could read the table to its
    end (``complete``); ``dropped`` rows referred to rows that were lost (outputs of a lost
    generation)."""

    table: str
    rows: int
    complete: bool
    dropped: int = 0


def salvage(path: Path, target: Path) -> list[Salvaged]:
    """Copy every row that can still be read from the SQLite database ``path`` into a new
    database ``target``, with the same schema (the same tables, indexes and schema revision).

    Like the sqlite3 tool's ``.dump``, each table is read forwards until a damaged page stops
    it, then backwards from its end; the rows between two damaged pages are looked up one id at
    a time. Outputs whose generation was lost are dropped. ``target`` is written beside itself
    and renamed into place when it is complete and passes ``PRAGMA integrity_check``."""
    target = Path(target)
    if target.exists():
        raise InputError(f"{target} already exists: name a new file for the salvaged database")
    if not target.parent.is_dir():
        raise InputError(f"the folder of {target} does not exist")
    readonly = "&immutable=1" if not os.access(path.parent, os.W_OK) else ""
    try:
        source = sqlite3.connect(f"file:{path}?mode=ro{readonly}", uri=True)
        schema = source.execute("SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL "
                                "AND name NOT LIKE 'sqlite_%'").fetchall()
    except sqlite3.Error as exc:
        raise StorageError(f"the schema of {path} cannot be read ({exc}): nothing can be salvaged from it; restore "
                           "a backup") from None
    partial = target.with_name(f".{target.name}.salvaging")
    partial.unlink(missing_ok=True)
    found: list[Salvaged] = []
    try:
        with contextlib.closing(sqlite3.connect(partial)) as copy:
            for kind, _name, sql in schema:
                if kind == "table":
                    copy.execute(sql)
            for kind, name, _sql in schema:
                if kind == "table":
                    rows, complete = _readable_rows(source, name)
                    if rows:
                        copy.executemany(f'INSERT OR IGNORE INTO "{name}" VALUES ({", ".join("?" * len(rows[0]))})',
                                         rows)
                    found.append(Salvaged(name, len(rows), complete))
            for kind, _name, sql in schema:
                if kind in ("index", "trigger", "view"):
                    copy.execute(sql)
            found = _drop_orphans(copy, found)
            copy.commit()
            if copy.execute("PRAGMA integrity_check").fetchall() != [("ok",)]:
                raise StorageError(f"the salvaged copy of {path} does not pass its integrity check: restore a backup")
        partial.rename(target)
    finally:
        source.close()
        partial.unlink(missing_ok=True)
    return found


def _readable_rows(source: sqlite3.Connection, table: str) -> tuple[list[tuple], bool]:
    """Every row of ``table`` that can be read (rowid first, then the columns), and whether the
    whole table could be read."""
    rows: dict[int, tuple] = {}
    for order in ("ASC", "DESC"):
        try:
            for row in source.execute(f'SELECT rowid, * FROM "{table}" ORDER BY rowid {order}'):
                if row[0] in rows:  # the backwards read reached the rows read forwards: nothing is missing
                    return [rows[key] for key in sorted(rows)], True
                rows[row[0]] = row[1:]
            return [rows[key] for key in sorted(rows)], True
        except sqlite3.DatabaseError:
            continue
    if rows:  # the rows between the damaged pages, one by one
        ascending = sorted(rows)
        gaps = [(low, high) for low, high in zip(ascending, ascending[1:]) if high - low > 1]
        probes = 0
        for low, high in gaps:
            for rowid in range(low + 1, high):
                probes += 1
                if probes > MAX_PROBES:
                    break
                try:
                    row = source.execute(f'SELECT rowid, * FROM "{table}" WHERE rowid = ?', (rowid,)).fetchone()
                except sqlite3.DatabaseError:
                    continue
                if row is not None:
                    rows[row[0]] = row[1:]
    return [rows[key] for key in sorted(rows)], False


def _drop_orphans(copy: sqlite3.Connection, found: list[Salvaged]) -> list[Salvaged]:
    """Outputs whose generation was lost mean nothing: drop them (other references to lost rows
    stay, as a generation whose parent is gone does in any history)."""
    names = {item.table for item in found}
    if not {"outputs", "generations"} <= names:
        return found
    dropped = copy.execute("DELETE FROM outputs WHERE generation_id NOT IN (SELECT id FROM generations)").rowcount
    return [dataclasses.replace(item, dropped=dropped) if item.table == "outputs" else item for item in found]
