"""Persisted job queue in the generations table, and the worker thread that serves it.

``JobQueue.submit`` records a queued generation and returns its id at once. A ``Worker`` (one per
device: a diffusers pipeline is not thread-safe) claims the oldest queued job with a conditional
``UPDATE ... WHERE status = 'queued'`` whose row count says whether this worker won it; the same
statement is atomic on SQLite (one writer at a time) and PostgreSQL (the losing UPDATE re-checks
the row after the winner commits and matches nothing). The job then runs through
``storage.service.execute``: progress and the cancel flag go through its row.

A process killed mid-job leaves its row ``running``; ``recover_stale`` (run by every worker when
it starts and every RECOVER_EVERY while it waits, and by every ``backdrop`` command that opens
the database) marks such rows failed, or queues them again, so no job stays stuck. Jobs belong
to the user who submitted them (storage.users); storage.limits bounds their size and number. Finished results
are written in one transaction, so a crash never loses or half-records them.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from datetime import timedelta

from PIL import Image as PILImage
from sqlalchemy import func, select, update

from core.request import GenerationRequest
from storage import history, limits, service
from storage.db import Database, get_database, utcnow
from storage.models import Generation

log = logging.getLogger(__name__)

INTERRUPTED = "interrupted: the process running it stopped mid-job (killed or crashed)"
STALE_AFTER = timedelta(minutes=5)  # a run on another host silent this long is taken for dead (beats: 30 s)
RECOVER_EVERY = 60.0  # seconds between an idle worker's looks for runs whose process is gone


class JobQueue:
    def __init__(self, db: Database | None = None):
        self.db = db or get_database()

    def submit(self, request: GenerationRequest, image: PILImage.Image | bytes | str | os.PathLike,
               mask: PILImage.Image | bytes | str | os.PathLike | None = None, parent_id: int | None = None,
               picture: bytes | str | os.PathLike | None = None, user=None) -> int:
        """Queue a generation for ``user`` (``picture``: an image background's); returns its id at
        once. Unreadable images, a photo over the server's size limit and an account with too many
        jobs waiting raise InputError here."""
        from core.imaging import load_image

        photo = image if isinstance(image, PILImage.Image) else load_image(image)  # fail now, not in the worker
        limits.check_pixels(*photo.size)
        if picture is not None:
            limits.check_pixels(*load_image(picture, what="background picture").size, what="the background picture")
        if user is not None:  # accounts share the server; without them one local user has it all
            with self.db.Session() as session:
                limits.check_queue(session.scalar(select(func.count(Generation.id)).where(
                    Generation.owner_id == user.id, Generation.status.in_(["queued", "running"]))))
        return history.create(request, image, mask, parent_id, status="queued", db=self.db, picture=picture, user=user)

    def get(self, generation_id: int, user=None) -> history.GenerationView:
        return history.get(generation_id, db=self.db, user=user)

    def cancel(self, generation_id: int, user=None) -> str:
        """Cancel a queued job at once, or ask a running one to stop at its next step. Returns the
        status the job now has (or will reach: 'cancelled' for a running one asked to stop)."""
        history.get(generation_id, db=self.db, user=user)  # NotFound unless it is the user's
        with self.db.session() as session:
            queued = session.execute(
                update(Generation).where(Generation.id == generation_id, Generation.status == "queued")
                .values(status="cancelled", finished_at=utcnow(), error="cancelled before it started")
            ).rowcount
            if queued:
                return "cancelled"
            running = session.execute(
                update(Generation).where(Generation.id == generation_id, Generation.status == "running")
                .values(cancel_requested=True)
            ).rowcount
            if running:
                return "cancelled"
            status = session.scalar(select(Generation.status).where(Generation.id == generation_id))
        if status is None:
            raise history.NotFound(f"no generation {generation_id}")
        return status

    def claim(self, worker: str) -> int | None:
        """Take the oldest queued job for ``worker``; None when the queue is empty."""
        while True:
            with self.db.session() as session:
                candidate = session.scalar(
                    select(Generation.id).where(Generation.status == "queued").order_by(Generation.id).limit(1))
                if candidate is None:
                    return None
                now = utcnow()
                won = session.execute(
                    update(Generation).where(Generation.id == candidate, Generation.status == "queued")
                    .values(status="running", worker=worker, started_at=now, heartbeat_at=now)
                ).rowcount
            if won == 1:
                return candidate

    def pending(self) -> int:
        return history.count_generations(db=self.db, status=["queued", "running"])

    def recover_stale(self, requeue: bool = False, stale_after: timedelta = STALE_AFTER) -> list[int]:
        """Jobs left ``running`` by a worker that is gone: failed with INTERRUPTED (or queued again
        with ``requeue``). Gone means: this host and its process is dead (or it is this process and
        no such worker is alive here), or another host and no heartbeat for ``stale_after``."""
        with self.db.Session() as session:
            rows = session.execute(
                select(Generation.id, Generation.worker, Generation.heartbeat_at).where(Generation.status == "running")
            ).all()
        recovered = [generation_id for generation_id, worker, heartbeat in rows
                     if _worker_gone(worker, heartbeat, stale_after) and self._recover(generation_id, worker, requeue)]
        if recovered:
            log.warning("recovered %d interrupted job(s): %s", len(recovered), recovered)
        return recovered

    def release(self, worker: str, requeue: bool = False, error: str = INTERRUPTED) -> list[int]:
        """The jobs of one worker known to be gone (a Ray actor whose process died): failed with
        ``error``, or queued again with ``requeue``."""
        with self.db.Session() as session:
            held = list(session.scalars(select(Generation.id).where(Generation.status == "running",
                                                                    Generation.worker == worker)))
        released = [generation_id for generation_id in held if self._recover(generation_id, worker, requeue, error)]
        if released:
            log.warning("released %d job(s) of worker %s: %s", len(released), worker, released)
        return released

    def _recover(self, generation_id: int, worker: str | None, requeue: bool, error: str = INTERRUPTED) -> bool:
        """Fail or requeue one running job, only if ``worker`` still holds it."""
        values = (dict(status="queued", worker=None, started_at=None, progress_step=0, progress_stage="")
                  if requeue else dict(status="failed", error=error, finished_at=utcnow()))
        with self.db.session() as session:
            return bool(session.execute(
                update(Generation).where(Generation.id == generation_id, Generation.status == "running",
                                         Generation.worker.is_(None) if worker is None else Generation.worker == worker)
                .values(cancel_requested=False, **values)
            ).rowcount)


def _worker_gone(worker: str | None, heartbeat, stale_after: timedelta) -> bool:
    host, _, rest = (worker or "").partition(":")
    pid_text = rest.partition(":")[0]
    if host == socket.gethostname() and pid_text.isdigit():
        pid = int(pid_text)
        if pid == os.getpid():
            with service._live_lock:
                return worker not in service.LIVE_WORKERS
        return not _pid_alive(pid)
    return heartbeat is None or utcnow() - heartbeat > stale_after


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Worker(threading.Thread):
    """Serves the queue in a daemon thread: claim, run, record, repeat; waits ``poll_interval``
    seconds (or until ``wake()``) when the queue is empty. ``run_fn`` defaults to
    core.pipeline.run; the registry is the shared model cache."""

    def __init__(self, queue: JobQueue | None = None, run_fn=None, registry=None, poll_interval: float = 0.5,
                 recover: bool = True, warm_up: GenerationRequest | None = None):
        super().__init__(name="backdrop-worker", daemon=True)
        self.queue = queue or JobQueue()
        self.run_fn = run_fn
        self.registry = registry
        self.poll_interval = poll_interval
        self.recover = recover
        self.warm_up = warm_up
        self.identity = service.worker_identity()
        self._stop_event = threading.Event()
        self._wake = threading.Event()
        self.current: int | None = None

    def run(self) -> None:
        service.set_live(self.identity, True)
        try:
            if self.recover:
                self.queue.recover_stale()
            last_recovery = time.monotonic()
            if self.warm_up is not None:  # in this thread: two threads loading models race in the libraries
                self._warm_up()
            while not self._stop_event.is_set():
                try:
                    busy = self.run_once()
                    if self.recover and not busy and time.monotonic() - last_recovery > RECOVER_EVERY:
                        last_recovery = time.monotonic()  # runs of other processes killed meanwhile
                        self.queue.recover_stale()
                except Exception:  # e.g. the database briefly unreachable: keep serving
                    log.exception("job worker: claiming, recording or recovering failed; retrying")
                    busy = False
                if not busy:
                    self._wake.wait(self.poll_interval)
                    self._wake.clear()
        finally:
            service.set_live(self.identity, False)

    def _warm_up(self) -> None:
        from core.generate import warm_up

        try:
            log.info("worker warm-up: %s", warm_up(self.warm_up, self.registry))
        except Exception:  # a failed warm-up only means the first AI job loads its models itself
            log.warning("worker warm-up failed", exc_info=True)

    def run_once(self) -> bool:
        """Claim and run one job; False when there was none."""
        service.set_live(self.identity, True)
        generation_id = self.queue.claim(self.identity)
        if generation_id is None:
            return False
        self.current = generation_id
        try:
            service.execute(generation_id, db=self.queue.db, run=self.run_fn, registry=self.registry)
        except Exception:  # recorded on the row by execute (a traceback logged when unexpected); go on
            log.info("generation %s did not finish", generation_id)
        finally:
            self.current = None
        return True

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float | None = None) -> None:
        """Stop after the current job (cancel it first to stop sooner)."""
        self._stop_event.set()
        self._wake.set()
        self.join(timeout)


def start_serving(queue: JobQueue | None = None, registry=None, warm_up: GenerationRequest | None = None,
                  ray_address: str | None = None, ray_workers: int | None = None):
    """Start what serves the queue and return it (``queue``, ``wake()``, ``current``,
    ``is_alive()``, ``stop()``): Ray workers when a Ray cluster is named (``ray_address``, else
    BACKDROP_RAY_ADDRESS; storage.ray_workers), else a Worker thread in this process."""
    from storage.ray_workers import RayExecutor, configured_address

    address = configured_address(ray_address)
    if address:
        executor = RayExecutor(queue, address=address, workers=ray_workers, warm_up=warm_up)
    else:
        executor = Worker(queue, registry=registry, warm_up=warm_up)
    executor.start()
    return executor
