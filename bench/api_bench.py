"""HTTP API benchmark: colour-background generations through `backdrop serve`.

(1) Throughput: JOBS distinct 1024x768 JPEGs (the lemur enlarged with mild noise, a new photo
    each so no cache serves a mask) submitted as fast as one client can, with a colour
    background; generations per minute from the first submission until the client sees the
    last one done. Three ways to run the queue: the in-process worker (one thread, the
    default), and Ray workers on a local cluster (`--ray local`) with 1 and with 2 actors.
(2) Latency: one generation at a time on the idle in-process server (upload, poll every 100 ms
    until done, download the result) against a direct `storage.service.generate_and_record`
    call in this process on the same kind of photo, alternating, median of REPEATS each; the
    difference is what the API adds.

Usage: ``.venv/bin/python bench/api_bench.py`` (``--jobs``, ``--repeats``). Writes
bench/results/api-<date>.json and prints a table. Everything runs on this machine and talks to
127.0.0.1 only (the Ray cluster too).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import httpx  # noqa: E402

from api_server import serve  # noqa: E402  (tests/api_server.py: `backdrop serve` on a free loopback port)
from bench.cpu_bench import load_average, make_photo  # noqa: E402

SIZE = (1024, 768)
POLL_S = 0.1  # the latency client polls this often: about half of it is added on average. Much faster
# polling (25 ms) slowed the in-process worker itself by ~20%: the server's threads share one interpreter.
FIELDS = json.dumps({"background": "color:#f2efe9"})
MODES = {"in-process": (), "ray-1": ("--ray", "local", "--ray-workers", "1"),
         "ray-2": ("--ray", "local", "--ray-workers", "2")}


def photos(count: int, first_seed: int) -> list[bytes]:
    out = []
    for seed in range(first_seed, first_seed + count):
        buffer = io.BytesIO()
        make_photo(SIZE, seed).save(buffer, format="JPEG", quality=92)
        out.append(buffer.getvalue())
    return out


def submit(client: httpx.Client, photo: bytes) -> int:
    answer = client.post("/v1/generations", files={"photo": ("photo.jpg", photo, "image/jpeg")},
                         data={"request": FIELDS})
    answer.raise_for_status()
    return answer.json()["id"]


def wait_one(client: httpx.Client, generation_id: int, interval: float, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(f"/v1/generations/{generation_id}").json()
        if body["status"] == "done":
            return
        if body["status"] not in ("queued", "running"):
            raise RuntimeError(f"generation {generation_id} {body['status']}: {body['error']}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"generation {generation_id} still {body['status']} after {timeout} s")
        time.sleep(interval)


def wait_all(client: httpx.Client, ids: list[int], interval: float = 0.1, timeout: float = 600) -> None:
    """Until the server has nothing queued or running (one light request per poll, so polling
    takes next to nothing from the workers), then check that every job is done."""
    deadline = time.monotonic() + timeout
    while client.get("/v1/health").json()["pending"]:
        if time.monotonic() > deadline:
            raise RuntimeError(f"jobs still pending after {timeout} s")
        time.sleep(interval)
    for generation_id in ids:
        wait_one(client, generation_id, interval, timeout=0)


def throughput(mode: str, jobs: int, work: Path) -> dict:
    data = work / mode / "data"
    data.mkdir(parents=True)
    env = {"BACKDROP_CACHE_MB": "0"}
    with serve(data, *MODES[mode], env=env, timeout=300, one_thread=False) as (url, _process):
        with httpx.Client(base_url=url, timeout=120) as client:
            workers = client.get("/v1/health").json()["workers"]
            warm = [submit(client, photo) for photo in photos(2 * workers, 1000)]  # every worker loads u2netp
            wait_all(client, warm)
            batch = photos(jobs, 2000)
            start = time.perf_counter()
            ids = [submit(client, photo) for photo in batch]
            submitted = time.perf_counter() - start
            wait_all(client, ids)
            elapsed = time.perf_counter() - start
    return {"workers": workers, "jobs": jobs, "elapsed_s": round(elapsed, 3), "submit_s": round(submitted, 3),
            "per_minute": round(jobs / elapsed * 60, 1)}


def latency(repeats: int, work: Path) -> dict:
    """Alternating direct calls and API round trips; each API run is split, by the times the
    server recorded on the generation, into: upload and submit (until it is recorded), hand-over
    (recorded until a worker starts it), run (started until finished: the same work as the
    direct call's run) and back (finished until the client has the result PNG)."""
    from core.request import GenerationRequest
    from storage import history
    from storage.db import Database
    from storage.service import generate_and_record

    data = work / "latency" / "data"
    data.mkdir(parents=True)
    db = Database(None, work / "latency" / "direct")
    request = GenerationRequest(**json.loads(FIELDS))
    runs: dict[str, list[float]] = {"direct": [], "api": []}
    parts: dict[str, list[float]] = {"submit": [], "handoff": [], "run": [], "back": [], "direct_run": []}
    with serve(data, env={"BACKDROP_CACHE_MB": "0"}, one_thread=False) as (url, _process):
        with httpx.Client(base_url=url, timeout=120) as client:
            sample = photos(2 * repeats + 2, 3000)

            def direct(photo: bytes) -> None:
                generation_id, _ = generate_and_record(photo, request, db=db)
                view = history.get(generation_id, db=db)
                parts["direct_run"].append((view.finished_at - view.started_at).total_seconds())

            def api(photo: bytes) -> None:
                sent = time.time()
                generation_id = submit(client, photo)
                wait_one(client, generation_id, POLL_S)
                client.get(f"/v1/generations/{generation_id}/images/result").raise_for_status()
                back = time.time()
                body = client.get(f"/v1/generations/{generation_id}").json()
                created, started, finished = (datetime.fromisoformat(body[k]).timestamp()
                                              for k in ("created_at", "started_at", "finished_at"))
                for name, value in (("submit", created - sent), ("handoff", started - created),
                                    ("run", finished - started), ("back", back - finished)):
                    parts[name].append(value)

            direct(sample.pop())  # warm-up: u2netp loaded on both sides
            api(sample.pop())
            for values in parts.values():
                values.clear()
            for _ in range(repeats):
                for name, call in (("direct", direct), ("api", api)):
                    start = time.perf_counter()
                    call(sample.pop())
                    runs[name].append(time.perf_counter() - start)
    db.dispose()
    medians = {name: statistics.median(values) for name, values in runs.items()}
    return {"direct_median_s": round(medians["direct"], 4), "api_median_s": round(medians["api"], 4),
            "added_s": round(medians["api"] - medians["direct"], 4),
            "ratio": round(medians["api"] / medians["direct"], 3),
            "parts_median_s": {name: round(statistics.median(values), 4) for name, values in parts.items()},
            "runs_s": {name: [round(v, 4) for v in values] for name, values in runs.items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=16, help="generations per throughput run (default 16)")
    parser.add_argument("--repeats", type=int, default=9, help="latency runs each side (default 9)")
    parser.add_argument("--modes", nargs="*", default=list(MODES), choices=list(MODES))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    os.environ["BACKDROP_CACHE_MB"] = "0"  # the direct side too: every run cuts its photo out
    result = {"machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
              "photo": f"{SIZE[0]}x{SIZE[1]} JPEG", "background": json.loads(FIELDS)["background"],
              "load_average_start": load_average(), "throughput": {}}
    with tempfile.TemporaryDirectory(prefix="backdrop-api-bench-") as folder:
        work = Path(folder)
        for mode in args.modes:
            result["throughput"][mode] = throughput(mode, args.jobs, work)
            print(f"{mode:11} {result['throughput'][mode]['workers']} worker(s): "
                  f"{result['throughput'][mode]['per_minute']:6.1f} generations/min "
                  f"({args.jobs} in {result['throughput'][mode]['elapsed_s']:.1f} s)", flush=True)
        result["latency"] = latency(args.repeats, work)
    result["load_average_end"] = load_average()
    lat = result["latency"]
    print(f"latency, median of {args.repeats}: direct call {lat['direct_median_s']:.3f} s, through the API "
          f"{lat['api_median_s']:.3f} s: +{lat['added_s'] * 1000:.0f} ms ({lat['ratio']:.2f}x)")
    print("  API run split (medians): " + ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in lat["parts_median_s"].items()))
    print(f"load average {result['load_average_start']} -> {result['load_average_end']}")
    out = args.out or ROOT / "bench" / "results" / f"api-{datetime.now(timezone.utc):%Y%m%d-%H%M}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
