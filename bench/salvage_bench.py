"""Damaged databases: what the check at open costs, and what ``backdrop doctor --salvage`` keeps.

(1) Opening a SQLite database runs ``PRAGMA quick_check`` first (storage.db._refuse_damaged): its
time on databases of 1,000 and 16,000 generations, against the whole ``Database()`` open it is
part of, medians of ``--repeats``. (2) 4 KB of random bytes written at a random place past the
first page of a 400-generation database, ``--trials`` times: how many generations
storage.doctor.salvage keeps each time (none where the damage hits the schema's own pages).

Usage: ``python bench/salvage_bench.py`` (``--repeats 5 --trials 40``). Writes
bench/results/salvage-<date>.json and prints the figures.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from cpu_bench import load_average  # noqa: E402


def _database(folder: Path, count: int) -> Path:
    """``count`` generations recorded through the storage layer (the first), then copied in SQL."""
    from core.request import GenerationRequest
    from storage import history
    from storage.db import Database

    db = Database(None, folder)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8))
    made = min(count, 400)
    for i in range(made):
        history.create(GenerationRequest(prompt=f"generation number {i} " + "on a marble table " * 8), image, db=db)
    db.dispose()
    path = folder / "backdrop.db"
    with sqlite3.connect(path) as connection:
        columns = ", ".join(row[1] for row in connection.execute("PRAGMA table_info(generations)") if row[1] != "id")
        while made < count:
            copied = min(made, count - made)
            connection.execute(f"INSERT INTO generations ({columns}) SELECT {columns} FROM generations LIMIT {copied}")
            made += copied
        connection.commit()
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    return path


def check_cost(root: Path, repeats: int) -> list[dict]:
    from storage.db import Database

    rows = []
    for count in (1000, 16000):
        folder = root / f"open-{count}"
        path = _database(folder, count)
        checks, opens = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
                assert connection.execute("PRAGMA quick_check(1)").fetchall() == [("ok",)]
            connection.close()
            checks.append(time.perf_counter() - start)
            start = time.perf_counter()
            Database(None, folder).dispose()
            opens.append(time.perf_counter() - start)
        rows.append({"generations": count, "megabytes": round(path.stat().st_size / 1e6, 1),
                     "quick_check_ms": round(statistics.median(checks) * 1000, 1),
                     "database_open_ms": round(statistics.median(opens) * 1000, 1)})
    return rows


def salvage_kept(root: Path, trials: int) -> dict:
    from storage.doctor import salvage
    from storage.errors import StorageError

    path = _database(root / "salvage", 400)
    pages = path.stat().st_size // 4096
    rng = np.random.default_rng(42)
    kept = []
    for trial in range(trials):
        folder = root / f"trial-{trial}"
        folder.mkdir()
        shutil.copy(path, folder / "backdrop.db")
        with open(folder / "backdrop.db", "r+b") as handle:
            handle.seek(int(rng.integers(1, pages)) * 4096 + int(rng.integers(0, 4096)))
            handle.write(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
        try:
            kept.append({t.table: t.rows for t in salvage(folder / "backdrop.db", folder / "out.db")}["generations"])
        except StorageError:
            kept.append(0)
    return {"generations": 400, "pages": pages, "trials": trials,
            "kept": dict(sorted(collections.Counter(kept).items()))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        result = {"when": datetime.now(timezone.utc).isoformat(timespec="seconds"), "machine": platform.machine(),
                  "cpus": os.cpu_count(), "load_before": load_average(), "check_at_open": check_cost(root, args.repeats),
                  "salvage": salvage_kept(root, args.trials), "load_after": load_average()}
    for row in result["check_at_open"]:
        print(f"{row['generations']:>6} generations ({row['megabytes']} MB): quick_check {row['quick_check_ms']} ms "
              f"of a {row['database_open_ms']} ms open")
    kept = result["salvage"]["kept"]
    print(f"salvage after 4 KB damage, {args.trials} trials of {result['salvage']['generations']} generations "
          f"({result['salvage']['pages']} pages): generations kept -> trials {kept}")
    print(f"load average before {result['load_before']}, after {result['load_after']}")
    out = args.out or ROOT / "bench" / "results" / f"salvage-{datetime.now():%Y%m%d-%H%M}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(out)


if __name__ == "__main__":
    main()
