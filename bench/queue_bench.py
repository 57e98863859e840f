"""Queue benchmark: how long a colour job waits when another user's AI job is running.

The scenario of issue 11: an AI job is submitted (the tiny test models, enough steps to run
for seconds, as a real one runs for minutes on a CPU), then a colour job (the lemur photo, the
real u2netp cut-out and composite). Measured for the colour job: its wait in the queue
(started_at - created_at) and its time to a result (finished_at - created_at), and the AI job's
run time, with

- ``one worker``: one worker claiming every job in order (the queue before the lanes), and
- ``lanes``: storage.jobs.LaneWorkers, a worker for AI jobs and one for the rest,

alternating, ``--repeats`` times each (medians reported). Writes ``results/queue-<date>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def scenario(workers_kind: str, paths: dict, photo: bytes, steps: int) -> dict:
    """One run in a fresh database: submit the AI job, then the colour job; wait for both."""
    from core.request import GenerationRequest
    from storage import history
    from storage.db import Database
    from storage.jobs import JobQueue, LaneWorkers, Worker

    data = Path(tempfile.mkdtemp(prefix="backdrop-queue-bench-"))
    db = Database(None, data)
    queue = JobQueue(db)
    ai = GenerationRequest(background="ai", prompt="a beach", steps=steps, device="cpu", control_scale=0.0,
                           inpaint_model=paths["inpaint"], controlnet_model=paths["controlnet"],
                           depth_model=paths["depth"])
    workers = LaneWorkers(queue, poll_interval=0.05) if workers_kind == "lanes" else Worker(queue, poll_interval=0.05)
    workers.start()
    try:
        ai_id = queue.submit(ai, photo)
        while history.get(ai_id, db=db).progress_stage != "generate":  # the AI job is running
            time.sleep(0.02)
        colour_id = queue.submit(GenerationRequest(background="color:#ffffff", device="cpu"), photo)
        while queue.pending():
            time.sleep(0.05)
        colour, ai_view = history.get(colour_id, db=db), history.get(ai_id, db=db)
        assert colour.status == ai_view.status == "done", (colour.error, ai_view.error)
        return {
            "colour_wait_s": (colour.started_at - colour.created_at).total_seconds(),
            "colour_result_s": (colour.finished_at - colour.created_at).total_seconds(),
            "ai_run_s": (ai_view.finished_at - ai_view.started_at).total_seconds(),
        }
    finally:
        workers.stop(60)
        db.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=60, help="the AI job's diffusion steps (tiny models)")
    parser.add_argument("--out", type=Path, help="JSON file to write (default: bench/results/queue-<date>.json)")
    args = parser.parse_args(argv)

    from tests.tiny_models import build_tiny_models

    paths = build_tiny_models(Path(tempfile.mkdtemp(prefix="backdrop-tiny-")))
    photo = (ROOT / "tests" / "data" / "lemur" / "lemur.png").read_bytes()
    scenario("lanes", paths, photo, 2)  # warm: imports, model loads, u2netp session
    runs: dict[str, list[dict]] = {"one worker": [], "lanes": []}
    start_load = os.getloadavg()
    for _ in range(args.repeats):
        for kind in runs:
            runs[kind].append(scenario(kind, paths, photo, args.steps))
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "steps": args.steps,
        "repeats": args.repeats, "load_average_start": [round(v, 2) for v in start_load],
        "load_average_end": [round(v, 2) for v in os.getloadavg()], "runs": runs,
        "median": {kind: {key: round(statistics.median(r[key] for r in rows), 3) for key in rows[0]}
                   for kind, rows in runs.items()},
    }
    out = args.out or ROOT / "bench" / "results" / f"queue-{datetime.now(timezone.utc):%Y%m%d-%H%M}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    for kind, median in report["median"].items():
        print(f"{kind:>10}: colour job waited {median['colour_wait_s']:.2f} s, result after "
              f"{median['colour_result_s']:.2f} s (the AI job ran {median['ai_run_s']:.1f} s)")
    print(f"load average {report['load_average_start']} -> {report['load_average_end']}; medians of "
          f"{args.repeats}; {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
