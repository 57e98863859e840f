"""Runs the load test (tests/test_load.py: 8 browser users at once) several times in a row and
keeps each run's figures: whether it passed, press to result (median, slowest), the app's memory.

    python bench/load_bench.py --runs 10

Writes bench/results/load-<date>.json and prints one line per run and the medians over the runs.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIGURES = ROOT / "test-artifacts" / "load" / "figures.json"


def one_run() -> dict:
    FIGURES.unlink(missing_ok=True)
    started = time.monotonic()
    test = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_load.py"],
                          cwd=ROOT, capture_output=True, text=True)
    run = {"passed": test.returncode == 0, "seconds": round(time.monotonic() - started, 1)}
    if FIGURES.exists():
        run |= json.loads(FIGURES.read_text())
    if test.returncode != 0:
        run["failure"] = test.stdout[-2000:]
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    runs = []
    for i in range(args.runs):
        run = one_run()
        runs.append(run)
        print(f"run {i + 1}: {'passed' if run['passed'] else 'FAILED'} in {run['seconds']} s; press to result "
              f"median {run.get('press_to_result_median_s')} s, slowest {run.get('press_to_result_slowest_s')} s; "
              f"app memory idle {run.get('rss_idle_mb')} MB, after the run {run.get('rss_after_run_mb')} MB, "
              f"sessions ended {run.get('rss_after_sessions_ended_mb')} MB", flush=True)
    done = [r for r in runs if "press_to_result_median_s" in r]
    summary = {"runs": len(runs), "passed": sum(r["passed"] for r in runs),
               "passed_in_a_row": max((len(s) for s in "".join("p" if r["passed"] else " " for r in runs).split()),
                                      default=0)}
    for key in ("press_to_result_median_s", "press_to_result_slowest_s", "rss_idle_mb", "rss_after_run_mb",
                "rss_after_sessions_ended_mb"):
        if done:
            summary[f"median_of_{key}"] = statistics.median(r[key] for r in done)
    summary["slowest_press_to_result_s"] = max((r["press_to_result_slowest_s"] for r in done), default=None)
    print(json.dumps(summary))
    out = ROOT / "bench" / "results" / f"load-{datetime.now():%Y%m%d-%H%M}.json"
    out.write_text(json.dumps({"machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
                               "summary": summary, "runs": runs}, indent=2))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
