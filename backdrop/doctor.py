"""`backdrop doctor`: check the data folder and the database, and say what to do (storage.doctor).
Exits 2 when something needs doing; it changes nothing. ``--salvage NEW.db`` copies the readable
rows of a damaged SQLite database into a new file."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("doctor", help="check the data folder and the database; say what to do",
                              description="Checks the data folder (BACKDROP_DATA_DIR), the database (its integrity, "
                              "its schema), the image store against it, and runs whose process is gone. It only "
                              "reads. Exit status 2 when a problem is found.")
    p.add_argument("--salvage", metavar="NEW.db", type=Path,
                   help="copy every readable row of the data folder's damaged SQLite database into NEW.db (a new "
                   "file; the damaged one is only read), then say how to put it in place")
    p.set_defaults(func=_doctor)


def _doctor(args: argparse.Namespace) -> int:
    from storage.doctor import examine

    if args.salvage is not None:
        return _salvage(args.salvage)
    findings = examine()
    for finding in findings:
        print(f"{'ok' if finding.ok else 'PROBLEM'}: {finding.what}")
        if finding.fix:
            print(f"    what to do: {finding.fix}")
    problems = sum(not f.ok for f in findings)
    print(f"{problems} problem(s) found" if problems else "no problems found")
    return 2 if problems else 0


def _salvage(target: Path) -> int:
    from core.config import config
    from core.errors import InputError
    from storage import settings
    from storage.doctor import salvage

    if config().database_url:
        raise InputError("--salvage copies a SQLite database in the data folder; BACKDROP_DATABASE_URL names a "
                         "database server, whose own tools (pg_dump) back it up and restore it")
    source = settings.data_dir() / "backdrop.db"
    if not source.is_file():
        raise InputError(f"there is no database {source} to salvage")
    target = target.absolute()
    for table in salvage(source, target):
        read = "all read" if table.complete else "damaged pages skipped: rows on them are lost"
        dropped = f", {table.dropped} dropped (their generation was lost)" if table.dropped else ""
        print(f"{table.table}: {table.rows} rows ({read}{dropped})")
    print(f"\nsalvaged into {target}. To use it: stop the app and `backdrop serve`, move the damaged database and its "
          f"-wal and -shm files away (mv {source}* SOMEWHERE), then `mv {target} {source}`; `backdrop doctor` "
          "checks the result (images only the lost rows used show as files nothing records)")
    return 0
