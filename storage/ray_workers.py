"""Serving the job queue with Ray: actors that each hold the models on one GPU (or CPU), and
many photos with one recipe as Ray tasks.

The database stays the system of record. An actor runs the queue's own ``Worker``
(storage.jobs) in its process: it claims queued generations, runs them through
``service.execute`` and records status, progress and results exactly as the in-process worker
does, with the same database URL and data folder as the process that started it. A
``RayExecutor`` in the serving process (the API, the app) starts the actors, wakes them when
a job is submitted, and watches them: when an actor's process dies, the job it held is marked
failed (``JobQueue.release``) and a new actor takes its place, so no job stays running.

Every node must reach the same database (PostgreSQL when there is more than one machine) and
the same data folder, the image store (a shared folder mounted at the same path on every
node): an actor checks both when it starts and refuses to serve, saying which is missing.
Backdrop itself must be installed on every node (same version), as Ray runs this module there.

``BACKDROP_RAY_ADDRESS`` names the cluster: ``local`` starts one on this machine for this
process (listening on the loopback address only), ``auto`` uses the cluster this machine is a
node of (``ray start --head`` here, or ``ray start --address=HEAD:6379`` to join one), anything
else is the head node's ``HOST:PORT`` (this machine must be a node of that cluster too).
``BACKDROP_RAY_WORKERS`` sets how many actors serve the queue (default: one per GPU in the
cluster, or one on a cluster without GPUs).
"""

from __future__ import annotations

import functools
import logging
import os
import secrets
import socket
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select, text

from core.config import config
from core.errors import InputError
from core.files import write_atomic
from core.request import GenerationRequest
from storage import history, lifecycle, service
from storage.db import Database, get_database
from storage.jobs import JobQueue, Worker
from storage.lifecycle import Status
from storage.models import Generation

log = logging.getLogger(__name__)

LOCAL = "local"
PROBES = ".ray-probes"  # a file per serving process, read by its workers: they see the same data folder
START_TIMEOUT_S = 180  # a worker process starting and opening the database; models load after
DIED = "interrupted: the Ray worker running it died mid-job ({reason}); run it again"


def configured_address(address: str | None = None) -> str | None:
    """The Ray cluster to use: ``address``, else BACKDROP_RAY_ADDRESS; None when neither names one."""
    return (address or "").strip() or config().ray_address or None


def connect(address: str, num_cpus: int | None = None):
    """Connect this process to the cluster at ``address`` (once; later calls reuse it) and
    return the ``ray`` module. ``local`` starts a cluster on this machine with ``num_cpus``
    (default: all), in Ray's single-machine mode so that it listens on the loopback address only."""
    if address == LOCAL:  # read by Ray when it is imported, and by the processes it starts
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray

    if ray.is_initialized():
        return ray
    options = dict(include_dashboard=False, logging_level=logging.WARNING)
    try:
        if address == LOCAL:
            ray.init(num_cpus=num_cpus, **options)
        else:
            ray.init(address=address, **options)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise InputError(f"cannot connect to the Ray cluster at {address!r}: {exc}") from None
    return ray


def _placement(ray) -> dict:
    """What one worker takes: a GPU where the cluster has any, else a CPU."""
    return {"num_gpus": 1, "num_cpus": 1} if ray.cluster_resources().get("GPU", 0) >= 1 else {"num_cpus": 1}


def default_workers(ray) -> int:
    return config().ray_workers or max(1, int(ray.cluster_resources().get("GPU", 0)))


def _url_text(db: Database) -> str:
    return db.url.render_as_string(hide_password=False)


def _problem(db: Database, probe: str) -> str | None:
    """Why this node cannot serve: the database or the shared data folder out of reach."""
    host = socket.gethostname()
    try:
        with db.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any driver error: say it
        return f"the Ray worker on {host} cannot reach the database {db.url!r}: {exc}"
    try:
        seen = (db.data_dir / PROBES / probe).read_text(encoding="utf-8")
    except OSError:
        seen = None
    if seen != probe:
        return (f"the Ray worker on {host} does not see the data folder {db.data_dir} that the serving process "
                f"uses (its file {PROBES}/{probe} is not there): mount the same shared folder at the same path on "
                "every node")
    return None


def write_probe(data_dir: Path) -> str:
    """A new file in the data folder that this process's Ray workers must see; returns its name."""
    probe = secrets.token_hex(16)
    write_atomic(data_dir / PROBES / probe, lambda stream: stream.write(probe.encode()), make_folder=True)
    return probe


class QueueActor:
    """One Ray actor: the queue's Worker in this process, with its own model cache (on the GPU
    Ray gave it). Threaded (``max_concurrency``), so ``wake`` and ``stop`` reach it while
    ``serve`` waits on the worker."""

    def __init__(self, url: str, data_dir: str, probe: str, warm_up: dict | None, poll_interval: float):
        from core.models.registry import get_registry

        self.db = Database(url, data_dir, migrate=False)
        self.problem = _problem(self.db, probe)
        request = GenerationRequest.from_dict(warm_up) if warm_up else None
        self.worker = Worker(JobQueue(self.db), registry=get_registry(), poll_interval=poll_interval,
                             warm_up=request, kind="ray")  # it also recovers runs whose process is gone, as every worker does

    def identity(self) -> tuple[str, str | None]:
        """(worker identity as recorded on the jobs it claims, why it cannot serve or None)."""
        return self.worker.identity, self.problem

    def serve(self) -> None:
        """Serve the queue until stopped; returns only then (or raises when the worker fails)."""
        self.worker.start()
        self.worker.join()

    def wake(self) -> None:
        self.worker.wake()

    def stop(self, timeout: float) -> None:
        self.worker.stop(timeout)


@functools.cache
def _actor_class(ray):
    return ray.remote(max_concurrency=4)(QueueActor)


@dataclass
class _Serving:
    identity: str
    actor: object  # the actor's handle


class RayExecutor:
    """Serves the queue with Ray actors (a storage.serving.Executor); each actor's worker serves
    every lane."""

    kind = "ray"

    def __init__(self, queue: JobQueue | None = None, address: str | None = None, workers: int | None = None,
                 warm_up: GenerationRequest | None = None, poll_interval: float = 0.5, restart_delay: float = 1.0):
        self.queue = queue or JobQueue()
        self.address = configured_address(address) or LOCAL
        self.workers = workers
        self.warm_up = warm_up
        self.poll_interval = poll_interval
        self.restart_delay = restart_delay
        self._serving: dict[object, _Serving] = {}  # the ref of each actor's serve() call -> the actor
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._probe = ""

    # -- the Executor's face
    def start(self) -> None:
        """Connect, start the actors (raising, with the reason, when the first cannot serve)
        and watch them from a daemon thread."""
        ray = connect(self.address)
        self.queue.recover_stale()
        self._probe = write_probe(self.queue.db.data_dir)
        try:
            for _ in range(self.workers or default_workers(ray)):
                self._start_actor()
        except BaseException:
            self.stop(5)
            raise
        self._thread = threading.Thread(target=self._supervise, name="backdrop-ray-executor", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        for serving in self._snapshot():
            serving.actor.wake.remote()

    @property
    def identities(self) -> list[str]:
        return [serving.identity for serving in self._snapshot()]

    def running(self) -> dict[str | None, int | None]:
        """The oldest job one of these actors is running (None: idle), under the key None: every
        actor serves every lane."""
        identities = self.identities
        if not identities:
            return {None: None}
        with self.queue.db.Session() as session:
            return {None: session.scalar(select(func.min(Generation.id)).where(
                Generation.status == Status.RUNNING, Generation.worker.in_(identities)))}

    def worker_count(self) -> int:
        return len(self.identities)

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float | None = None) -> None:
        """Let each actor finish its current job (cancel it first to stop sooner), then end them."""
        import ray

        self._stopping.set()
        wait = 30.0 if timeout is None else timeout
        servings = self._snapshot()
        try:
            ray.get([s.actor.stop.remote(wait) for s in servings], timeout=wait + 5)
        except Exception:  # noqa: BLE001 - an actor already gone or stuck: it is killed below
            log.warning("stopping the Ray workers", exc_info=True)
        for serving in servings:
            ray.kill(serving.actor)
        if self._thread is not None:
            self._thread.join(wait)

    # -- the actors
    def _snapshot(self) -> list[_Serving]:
        with self._lock:
            return list(self._serving.values())

    def _start_actor(self) -> None:
        import ray

        actor_class = _actor_class(ray).options(**_placement(ray))
        warm_up = self.warm_up.to_dict() if self.warm_up is not None else None
        actor = actor_class.remote(_url_text(self.queue.db), str(self.queue.db.data_dir), self._probe, warm_up,
                                   self.poll_interval)
        try:
            identity, problem = ray.get(actor.identity.remote(), timeout=START_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            ray.kill(actor)
            raise InputError(f"no Ray worker started within {START_TIMEOUT_S} s: the cluster has no free "
                             f"{'GPU' if 'num_gpus' in _placement(ray) else 'CPU'} for one (each takes one); "
                             f"ask for fewer workers (BACKDROP_RAY_WORKERS) or add nodes") from None
        if problem:
            ray.kill(actor)
            raise InputError(problem)
        ref = actor.serve.remote()
        with self._lock:
            self._serving[ref] = _Serving(identity, actor)
        log.info("Ray worker %s serves the queue", identity)

    def _supervise(self) -> None:
        import ray

        missing = 0
        while not self._stopping.is_set():
            with self._lock:
                refs = list(self._serving)
            if refs:
                ready, _ = ray.wait(refs, num_returns=1, timeout=1.0)
                for ref in ready:
                    missing += self._ended(ray, ref)
            else:
                self._stopping.wait(self.restart_delay)
            while missing and not self._stopping.is_set():
                try:
                    self._start_actor()
                    missing -= 1
                except Exception:  # noqa: BLE001 - e.g. no resources yet: try again shortly
                    log.warning("starting a Ray worker failed; trying again", exc_info=True)
                    self._stopping.wait(self.restart_delay)
                    break

    def _ended(self, ray, ref) -> int:
        """An actor's serve() returned: it was stopped, or it died. Its job, if it held one, is
        failed; returns 1 when a new actor must take its place."""
        with self._lock:
            serving = self._serving.pop(ref)
        try:
            ray.get(ref)
            reason = "its worker stopped"
        except ray.exceptions.RayActorError:
            reason = "its process ended"
        except Exception as exc:  # noqa: BLE001 - the worker loop itself failed
            reason = f"{type(exc).__name__}: {exc}"
        released = self.queue.release(serving.identity, error=DIED.format(reason=reason))
        if not self._stopping.is_set():
            log.warning("Ray worker %s ended (%s); released job(s) %s; starting another", serving.identity,
                        reason, released)
            return 1
        return 0


# ---- many photos, one recipe: Ray tasks ------------------------------------------------------

def _run_task(url: str, data_dir: str, probe: str, generation_id: int) -> str | None:
    """One recorded photo on a Ray node: this process takes the job over (lifecycle.take_over)
    and runs it with ``service.execute``. Returns None, or why it failed (the failure is recorded
    on the row too)."""
    db = get_database(url, data_dir)
    problem = _problem(db, probe)
    if problem:
        lifecycle.fail(db, generation_id, problem)
        return problem
    with lifecycle.Holder("batch") as holder:
        if not lifecycle.take_over(db, generation_id, holder.identity):  # cancelled, or recovered, while it waited
            return f"generation {generation_id} was {history.get(generation_id, db=db).status} before it started"
        try:
            service.execute(generation_id, db=db)
        except Exception as exc:  # noqa: BLE001 - reported per photo; the batch goes on
            return service.error_text(exc)
    return None


def map_generations(photos: Iterable[tuple[str, bytes]], request: GenerationRequest, picture: bytes | None = None,
                    db: Database | None = None, address: str | None = None,
                    in_flight: int | None = None) -> Iterator[tuple[str, int, str | None]]:
    """Generate every photo with ``request`` as Ray tasks spread over the cluster; yields
    (name, generation id, error or None) as each finishes, in the order they finish.

    Each photo is recorded here (running, held by this process) just before its task is sent,
    and the task takes it over on its node. A task whose process dies, and every photo not
    finished when the batch stops (Ctrl-C), is marked failed: none stays running. At most
    ``in_flight`` photos (default: twice the workers the cluster holds) are out at once, so ten
    thousand photos are never all recorded as running, nor all in memory."""
    ray = connect(configured_address(address) or LOCAL)
    db = db or get_database()
    placement = _placement(ray)
    resources = ray.cluster_resources()
    slots = int(resources.get("GPU", 0)) if "num_gpus" in placement else int(resources.get("CPU", 1))
    limit = in_flight or max(2, 2 * slots)
    task = ray.remote(max_retries=0, **placement)(_run_task)
    probe = write_probe(db.data_dir)
    pending: dict[object, tuple[str, int]] = {}
    photos = iter(photos)
    with lifecycle.Holder("batch") as holder:
        try:
            while True:
                while len(pending) < limit and (item := next(photos, None)) is not None:
                    name, data = item
                    generation_id = history.create(request, data, status=Status.RUNNING, worker=holder.identity,
                                                   db=db, picture=picture)
                    pending[task.remote(_url_text(db), str(db.data_dir), probe, generation_id)] = (name, generation_id)
                if not pending:
                    return
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=lifecycle.HEARTBEAT_S)
                lifecycle.beat_held(db, holder.identity)  # the photos still waiting for a task are alive too
                for ref in ready:
                    name, generation_id = pending.pop(ref)
                    try:
                        error = ray.get(ref)
                    except ray.exceptions.RayError as exc:  # the task's process died
                        error = f"interrupted: the Ray task running it died ({str(exc).splitlines()[0]})"
                        lifecycle.fail(db, generation_id, error, only_if_running=True)
                    yield name, generation_id, error
        finally:
            for ref, (_name, generation_id) in pending.items():
                ray.cancel(ref, force=True)
                lifecycle.fail(db, generation_id, "interrupted: the batch stopped before it finished",
                               only_if_running=True)
