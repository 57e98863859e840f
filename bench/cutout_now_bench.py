"""The Studio's cut-out before Generate (app_pages.cutout_now): what pressing *Cut-out PNG* costs
on a 12 MP photo, against what getting the same cut-out cost before it existed (a colour
generation recorded with the same mask: storage.service.generate_and_record, whose stored
cut-out is the same bytes), in turn, median of REPEATS each after one warm-up each; spill
removal on (the default) and off. The page itself pays nothing per rerun: the PNG is made only
when the button is pressed.

Usage: ``.venv/bin/python bench/cutout_now_bench.py`` (``--repeats``). Writes
bench/results/cutout-now-<date>.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.cpu_bench import load_average, make_photo, timed_together  # noqa: E402

SIZE = (4000, 3000)


def main(argv: list[str] | None = None) -> int:
    from app_pages.cutout_now import cutout_png
    from core.masks.segment import automatic_mask
    from core.request import GenerationRequest
    from storage.db import Database
    from storage.service import generate_and_record

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    photo = make_photo(SIZE)
    mask = automatic_mask(photo)
    figures: dict = {"size": list(SIZE), "repeats": args.repeats, "load_before": load_average()}
    with tempfile.TemporaryDirectory() as folder:
        db = Database(None, Path(folder))
        try:
            for spill in (True, False):
                request = GenerationRequest(background="color:#ffffff", spill_removal=spill)
                now, generated = timed_together(
                    (lambda: cutout_png(photo, mask, spill), lambda: generate_and_record(photo, request, mask, db=db)),
                    args.repeats)
                figures[f"spill_{'on' if spill else 'off'}"] = {"cutout_now": now, "generation_baseline": generated,
                                                                "ratio": now["median_s"] / generated["median_s"]}
        finally:
            db.dispose()
    figures["load_after"] = load_average()
    print(f"cut-out PNG of a {SIZE[0]}x{SIZE[1]} photo, median of {args.repeats} (load {figures['load_before']})")
    for key in ("spill_on", "spill_off"):
        row = figures[key]
        print(f"  {key:9}  cut-out now {row['cutout_now']['median_s']:.2f} s   colour generation "
              f"{row['generation_baseline']['median_s']:.2f} s   ratio {row['ratio']:.2f}")
    out = ROOT / "bench" / "results" / f"cutout-now-{datetime.now(timezone.utc):%Y%m%d-%H%M}.json"
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
