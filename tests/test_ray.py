"""Ray workers on a local Ray cluster these tests start (the machine's 2 CPUs, listening on
loopback only): queued generations run by Ray actors are recorded exactly as the in-process
worker records them, with the colour background and the tiny AI models; an actor killed
mid-job leaves its job failed and is replaced; `backdrop serve --ray` runs the API's requests
on Ray workers (PostgreSQL as the shared database); `backdrop batch --ray` runs a folder as
Ray tasks."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from api_server import BACKDROP, serve, wait_finished
from core.request import GenerationRequest
from storage import history
from storage.db import Database
from storage.jobs import JobQueue
from storage.models import Generation
from test_storage import _new_pg_database, postgres_server  # noqa: F401 - the fixture, shared

ROOT = Path(__file__).resolve().parents[1]
LOOPBACK_ONLY = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # what storage.ray_workers.connect("local") sets
pytestmark = pytest.mark.slow  # a Ray cluster / 10,000 generations


@pytest.fixture(scope="module")
def ray_cluster():
    """A local cluster for this module; yields its address for other processes to join."""
    from storage.ray_workers import LOCAL, connect

    patch = pytest.MonkeyPatch()
    for name, value in LOOPBACK_ONLY.items():
        patch.setenv(name, value)
    ray = connect(LOCAL, num_cpus=2)
    address = ray.get_runtime_context().gcs_address
    assert address.startswith("127.0.0.1:"), f"the test cluster must listen on loopback only, not {address}"
    yield address
    ray.shutdown()
    patch.undo()


def _worker_of(db: Database, generation_id: int) -> str:
    with db.Session() as session:
        return session.scalar(select(Generation.worker).where(Generation.id == generation_id))


def _pid(worker: str) -> int:
    return int(worker.split(":")[1])


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _finished(db: Database, ids: list[int], timeout: float = 180) -> list[history.GenerationView]:
    def views():
        found = [history.get(i, db=db) for i in ids]
        return found if all(v.status not in ("queued", "running") for v in found) else None

    return _wait(views, timeout, f"generations {ids}")


def _pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def _ai_request(tiny_models, **changes) -> GenerationRequest:
    return GenerationRequest(background="ai", prompt="a beach at dusk", seed=3, steps=2, device="cpu",
                             inpaint_model=tiny_models["inpaint"], controlnet_model=tiny_models["controlnet"],
                             depth_model=tiny_models["depth"]).replace(**changes)


IN_PROCESS_WORKER = """
import sys
sys.path.insert(0, sys.argv[2])
from storage.db import Database
from storage.jobs import JobQueue, Worker
worker = Worker(JobQueue(Database(None, sys.argv[1])))
while worker.run_once():
    pass
"""


def test_generations_on_ray_are_recorded_as_by_the_in_process_worker(ray_cluster, tiny_models, lemur_path, astronaut,
                                                                      tmp_path):
    """The same jobs through the in-process Worker and through a Ray actor. Both run in fresh
    processes with one thread: on a CPU, a process that ran the models with two threads first
    gives results 1/255 apart in a few pixels (oneDNN keeps what it set up), which says nothing
    about Ray."""
    from storage.ray_workers import RayExecutor

    photo = io.BytesIO()
    astronaut.resize((160, 120)).save(photo, format="PNG")
    jobs = [(GenerationRequest(background="color:#2080ff", contact_shadow=0.5), lemur_path.read_bytes()),
            (_ai_request(tiny_models), photo.getvalue())]
    here = Database(None, tmp_path / "here")
    local_ids = [JobQueue(here).submit(request, data) for request, data in jobs]
    local = subprocess.Popen([sys.executable, "-c", IN_PROCESS_WORKER, str(here.data_dir), str(ROOT)],
                             env={**os.environ, "OMP_NUM_THREADS": "1"}, stderr=subprocess.PIPE, text=True)

    there = Database(None, tmp_path / "ray")
    executor = RayExecutor(JobQueue(there), workers=1, poll_interval=0.1)
    executor.start()
    try:
        assert executor.is_alive() and len(executor.identities) == 1
        ray_ids = [executor.queue.submit(request, data) for request, data in jobs]
        executor.wake()
        ray_views = _finished(there, ray_ids)
        actor = executor.identities[0]
    finally:
        executor.stop(30)
    _, errors = local.communicate(timeout=180)
    assert local.returncode == 0, errors
    for mine, theirs in zip(_finished(here, local_ids), ray_views):
        assert mine.status == theirs.status == "done", (mine.error, theirs.error)
        for field in ("request", "record", "models", "device", "warnings", "versions", "progress_total"):
            assert getattr(mine, field) == getattr(theirs, field), field
        assert [(o.kind, o.index) for o in mine.outputs] == [(o.kind, o.index) for o in theirs.outputs]
        assert (mine.output("cutout").sha256, mine.mask_sha256) == (theirs.output("cutout").sha256, theirs.mask_sha256)
        difference = np.abs(_pixels(mine.results[0].path).astype(int) - _pixels(theirs.results[0].path))
        assert difference.max() == 0, f"{(difference.max(axis=-1) > 0).sum()} pixels differ, by up to {difference.max()}"
        assert set(mine.timings) == set(theirs.timings)
        assert ":worker-" in _worker_of(here, mine.id) and _pid(_worker_of(here, mine.id)) == local.pid
        assert _worker_of(there, theirs.id) == actor and _pid(actor) != os.getpid(), "run by the Ray actor"
    assert ray_views[1].background_kind == "ai" and ray_views[1].record["bucket"] == "512x384"


def test_a_killed_ray_worker_fails_its_job_and_is_replaced(ray_cluster, tiny_models, lemur_path, tmp_path):
    from storage.ray_workers import DIED, RayExecutor

    db = Database(None, tmp_path / "data")
    executor = RayExecutor(JobQueue(db), workers=1, poll_interval=0.1, restart_delay=0.5)
    executor.start()
    try:
        slow = executor.queue.submit(_ai_request(tiny_models, steps=150), lemur_path.read_bytes())
        executor.wake()
        _wait(lambda: history.get(slow, db=db).progress_step >= 1, 120, "the AI job to be generating")
        worker = _worker_of(db, slow)
        assert executor.identities == [worker] and history.get(slow, db=db).status == "running"
        os.kill(_pid(worker), signal.SIGKILL)

        view = _wait(lambda: (v := history.get(slow, db=db)).status != "running" and v, 60, "the job to be released")
        assert view.status == "failed" and view.error == DIED.format(reason="its process ended")
        assert view.finished_at is not None and view.outputs == []
        replacement = _wait(lambda: [i for i in executor.identities if i != worker], 60, "a new Ray worker")
        after = executor.queue.submit(GenerationRequest(background="color:#00aa00"), lemur_path.read_bytes())
        executor.wake()
        assert _finished(db, [after])[0].status == "done"
        assert _worker_of(db, after) == replacement[0]
        assert executor.queue.recover_stale() == [] and executor.queue.pending() == 0, "nothing left running"
    finally:
        executor.stop(30)


def test_api_requests_run_on_ray_workers(ray_cluster, postgres_server, lemur_path, tmp_path):  # noqa: F811
    database_url = _new_pg_database(postgres_server)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    environment = {"BACKDROP_DATABASE_URL": database_url, **LOOPBACK_ONLY}
    with serve(data_dir, "--ray", ray_cluster, "--ray-workers", "1", env=environment) as (url, process):
        with httpx.Client(base_url=url, timeout=60) as client:
            assert client.get("/v1/health").json() == {"status": "ok", "executor": "ray", "workers": 1, "pending": 0}
            ids = [client.post("/v1/generations", files={"photo": ("lemur.png", lemur_path.read_bytes(), "image/png")},
                               data={"request": f'{{"background": "color:#{c}"}}'}).json()["id"] for c in ("ff0000", "0000ff")]
            bodies = [wait_finished(client, i) for i in ids]
            assert [b["status"] for b in bodies] == ["done", "done"], [b["error"] for b in bodies]
            result = client.get(bodies[0]["images"]["result"][0])
            assert result.status_code == 200 and result.headers["content-type"] == "image/png"
    db = Database(database_url, data_dir)
    try:
        workers = {_worker_of(db, i) for i in ids}
        assert len(workers) == 1 and ":ray-" in next(iter(workers))
        assert _pid(next(iter(workers))) not in (process.pid, os.getpid()), "run by a Ray worker, not the server"
        assert hashlib.sha256(result.content).hexdigest() == history.get(ids[0], db=db).results[0].sha256
    finally:
        db.dispose()


def test_batch_runs_a_folder_as_ray_tasks(ray_cluster, lemur_path, astronaut, tmp_path):
    folder, out, data_dir = tmp_path / "photos", tmp_path / "out", tmp_path / "data"
    folder.mkdir()
    (folder / "lemur.png").write_bytes(lemur_path.read_bytes())
    astronaut.resize((200, 200)).save(folder / "astronaut.jpg", quality=90)
    astronaut.crop((100, 0, 400, 300)).save(folder / "face.webp")
    (folder / "notes.jpg").write_bytes(b"not a photo")
    (folder / "readme.txt").write_text("not a photo either")
    environment = {**os.environ, "BACKDROP_DATA_DIR": str(data_dir), "OMP_NUM_THREADS": "1", **LOOPBACK_ONLY}
    proc = subprocess.Popen([str(BACKDROP), "batch", str(folder), "-o", str(out), "--background", "color:#00ff00",
                             "--ray", ray_cluster], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=environment)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 2, stderr
    assert stdout.strip() == f"3 of 4 photo(s) done in {out}; failed: notes.jpg"
    assert "error: notes.jpg is not an image Pillow can read" in stderr and "4/4" in stderr
    assert sorted(p.name for p in out.iterdir()) == ["astronaut.png", "face.png", "lemur.png"]
    db = Database(None, data_dir)
    try:
        views = history.list_generations(db=db)
        assert len(views) == 3 and {v.status for v in views} == {"done"}, "the refused photo left no record"
        written = {hashlib.sha256(p.read_bytes()).hexdigest() for p in out.iterdir()}
        assert written == {v.results[0].sha256 for v in views}, "each output is its recorded result"
        pids = {_pid(_worker_of(db, v.id)) for v in views}
        assert not pids & {os.getpid(), proc.pid} and all(":batch-" in _worker_of(db, v.id) for v in views), \
            "each photo was taken over and run by a Ray task's process"
    finally:
        db.dispose()


def test_the_app_sends_its_jobs_to_ray_when_a_cluster_is_configured(ray_cluster, lemur_path, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from app_pages import job_view, ui
    from storage.ray_workers import RayExecutor
    from test_app import APP

    monkeypatch.setenv("BACKDROP_RAY_ADDRESS", ray_cluster)
    monkeypatch.setenv("BACKDROP_DATA_DIR", str(tmp_path / "data"))
    job_view.workers.clear()
    try:
        at = AppTest.from_file(APP, default_timeout=60).run()
        assert not at.exception, at.exception
        executor = job_view.workers()
        assert isinstance(executor, RayExecutor) and executor.is_alive()
        generation_id = job_view.submit(ui.base_request(), lemur_path.read_bytes(), user=None)
        db = executor.queue.db
        assert _finished(db, [generation_id])[0].status == "done"
        assert _worker_of(db, generation_id) in executor.identities
    finally:
        job_view.workers().stop(30)
        job_view.workers.clear()


def test_a_worker_that_cannot_reach_the_database_or_the_shared_folder_says_so(tmp_path):
    """What a Ray worker checks before it serves (storage.ray_workers._problem), without Ray."""
    from storage.ray_workers import PROBES, _problem, write_probe

    db = Database(None, tmp_path / "data")
    probe = write_probe(db.data_dir)
    assert _problem(db, probe) is None and _problem(db, write_probe(db.data_dir)) is None, "one per serving process"
    missing = _problem(db, "0" * 32)
    assert missing.startswith("the Ray worker on ") and "does not see the data folder" in missing
    assert "mount the same shared folder at the same path on every node" in missing
    (db.data_dir / PROBES / probe).write_text("changed")
    assert "does not see the data folder" in _problem(db, probe)
    unreachable = Database("postgresql+psycopg://nobody@/backdrop?host=/nonexistent&port=1", tmp_path / "data",
                           migrate=False)
    assert "cannot reach the database" in _problem(unreachable, "token-of-this-server")


def test_a_batch_task_that_dies_or_a_stopped_batch_leaves_no_job_running(ray_cluster, tiny_models, lemur_path,
                                                                           tmp_path):
    """Two slow AI photos out at once: one task's process is killed, so that photo ends failed;
    then the batch is stopped (its generator closed, as Ctrl-C does), so the other does too."""
    from storage.ray_workers import map_generations

    db = Database(None, tmp_path / "data")
    photos = [("a.png", lemur_path.read_bytes()), ("b.png", lemur_path.read_bytes())]
    batch = map_generations(photos, _ai_request(tiny_models, steps=150), db=db, address=ray_cluster, in_flight=2)
    first: list = []
    reader = threading.Thread(target=lambda: first.append(next(batch)), daemon=True)  # blocks until one finishes
    reader.start()
    generating = _wait(lambda: [v.id for v in history.list_generations(db=db) if v.progress_step >= 1], 120,
                       "a task generating")
    worker = _worker_of(db, generating[0])
    assert ":batch-" in worker and _pid(worker) != os.getpid()
    os.kill(_pid(worker), signal.SIGKILL)
    reader.join(60)
    name, generation_id, error = first[0]
    assert generation_id == generating[0] and error.startswith("interrupted: the Ray task running it died"), error
    batch.close()
    views = history.list_generations(db=db)
    assert len(views) == 2 and [v.status for v in views] == ["failed", "failed"], "none stays running"
    stopped = next(v for v in views if v.id != generation_id)
    assert stopped.error == "interrupted: the batch stopped before it finished"


def test_a_batch_photo_cancelled_while_it_waited_for_a_task_is_not_run(tmp_path, lemur_path):
    """A Ray task that finds its photo no longer running (cancelled, or failed by a recovery,
    while it waited for a free worker) leaves it as it is (storage.ray_workers._run_task, without Ray)."""
    from storage.ray_workers import _run_task, write_probe

    db = Database(None, tmp_path / "data")
    generation_id = history.create(GenerationRequest(), lemur_path.read_bytes(), status="running", worker="elsewhere:1:x",
                                   db=db)
    JobQueue(db).release("elsewhere:1:x", error="cancelled before it started")
    error = _run_task(db.url.render_as_string(hide_password=False), str(db.data_dir), write_probe(db.data_dir),
                      generation_id)
    assert error == f"generation {generation_id} was failed before it started"
    view = history.get(generation_id, db=db)
    assert view.status == "failed" and view.outputs == [] and view.error == "cancelled before it started"
