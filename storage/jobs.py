"""Persisted job queue in the generations table, and the worker threads that serve it.

``JobQueue.submit`` records a queued generation and returns its id at once. Jobs run in two
lanes: ``ai`` (an AI background: minutes on a CPU) and ``quick`` (every other background:
seconds), each served by its own ``Worker`` (``LaneWorkers``), so a colour job never waits
behind an AI job. Only the ``ai`` lane runs diffusers, whose pipeline is not thread-safe: one AI
worker per device. A ``Worker`` claims the oldest queued job of its lane with a conditional
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
import statistics
import time
from dataclasses import dataclass
from datetime import timedelta

from PIL import Image as PILImage
from sqlalchemy import func, select, update

from core.engine.recipes import step_rows
from core.look.backgrounds import KINDS
from core.request import GenerationRequest
from storage import history, limits, service
from storage.db import Database, get_database, utcnow
from storage.models import Generation, Image

log = logging.getLogger(__name__)

INTERRUPTED = "interrupted: the process running it stopped mid-job (killed or crashed)"
STALE_AFTER = timedelta(minutes=5)  # a run on another host silent this long is taken for dead (beats: 30 s)
RECOVER_EVERY = 60.0  # seconds between an idle worker's looks for runs whose process is gone
LANES = tuple(dict.fromkeys(kind.lane for kind in KINDS.values()))  # each served by its own worker
SIMILAR_JOBS = 20  # how many recent finished jobs of the same kind an estimate is made from


def lane_of(background_kind: str) -> str:
    """The lane a job runs in, as its background kind declares it (core.look.backgrounds.KINDS):
    AI backgrounds (minutes) apart from the rest (seconds)."""
    return KINDS[background_kind].lane


def _in_lane(lane: str | None):
    if lane is None:
        return True
    if lane not in LANES:
        raise ValueError(f"unknown lane {lane!r}: one of {', '.join(LANES)}")
    return Generation.background_kind.in_([name for name, kind in KINDS.items() if kind.lane == lane])


@dataclass(frozen=True)
class Place:
    """Where a queued or running job stands: ``ahead`` jobs of its lane run or wait before it
    (0 once it runs), ``wait_s`` seconds until it is expected to start and ``run_s`` seconds it
    is expected to run, from the recorded times of the last ``similar`` finished jobs of the same
    background kind (None when there are none yet)."""

    lane: str
    status: str
    ahead: int
    wait_s: float | None
    run_s: float | None
    similar: int


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

    def claim(self, worker: str, lane: str | None = None) -> int | None:
        """Take the oldest queued job (of ``lane``, or any) for ``worker``; None when there is none."""
        while True:
            with self.db.session() as session:
                candidate = session.scalar(
                    select(Generation.id).where(Generation.status == "queued", _in_lane(lane))
                    .order_by(Generation.id).limit(1))
                if candidate is None:
                    return None
                now = utcnow()
                won = session.execute(
                    update(Generation).where(Generation.id == candidate, Generation.status == "queued")
                    .values(status="running", worker=worker, started_at=now, heartbeat_at=now)
                ).rowcount
            if won == 1:
                return candidate

    def pending(self, lane: str | None = None) -> int:
        """Jobs queued or running (in ``lane``, or in all)."""
        with self.db.Session() as session:
            return session.scalar(select(func.count(Generation.id)).where(
                Generation.status.in_(("queued", "running")), _in_lane(lane))) or 0

    def place(self, generation_id: int, user=None) -> Place:
        """Where a job (``user``'s, when given) stands in its lane, with its expected wait and run
        time. The jobs ahead are everyone's: they share the lane's worker."""
        history.get(generation_id, db=self.db, user=user)  # NotFound unless it is the user's
        with self.db.Session() as session:
            row = session.get(Generation, generation_id)
            lane = lane_of(row.background_kind)
            unfinished = _with_megapixels(session, select(Generation).where(
                Generation.status.in_(("queued", "running")), _in_lane(lane), Generation.id != row.id))
            ahead = [] if row.status == "running" else [
                (job, mp) for job, mp in unfinished if job.status == "running" or job.id < row.id]
            rates = {kind: _rate(session, kind) for kind in {row.background_kind} | {j.background_kind for j, _ in ahead}}
            rate, similar = rates[row.background_kind]
            own_mp = _with_megapixels(session, select(Generation).where(Generation.id == row.id))[0][1]
            wait_s: float | None = 0.0
            now = utcnow()
            for job, mp in ahead:
                job_rate = rates[job.background_kind][0]
                if job_rate is None:
                    wait_s = None
                    break
                seconds = job_rate * _work(job, mp)
                if job.status == "running" and job.started_at is not None:
                    seconds = max(seconds - (now - job.started_at).total_seconds(), 0.0)
                wait_s += seconds
            run_s = None if rate is None else rate * _work(row, own_mp)
            return Place(lane, row.status, len(ahead), wait_s, run_s, similar)

    def expected_run_s(self, request: GenerationRequest, megapixels: float = 1.0) -> tuple[float | None, int]:
        """(seconds a job of ``request`` on a photo of ``megapixels`` is expected to run, how many
        finished jobs that is from), from the recorded times of the last similar ones (None
        when there are none yet): what the Fast switch says before anything is queued."""
        with self.db.Session() as session:
            rate, similar = _rate(session, request.background_spec.kind)
        if rate is None:
            return None, 0
        job = Generation(background_kind=request.background_spec.kind, request=request.to_dict())
        return rate * _work(job, megapixels), similar

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


def _with_megapixels(session, query) -> list[tuple[Generation, float]]:
    """The generations ``query`` selects, each with its photo's size in megapixels. Rows already
    loaded in ``session`` are refreshed: a job that finished since an earlier query of the same
    session must not keep that query's ``finished_at`` (None)."""
    rows = session.execute(query.add_columns(Image.width, Image.height)
                           .join(Image, Image.sha256 == Generation.input_sha256).order_by(Generation.id)
                           .execution_options(populate_existing=True)).all()
    return [(job, width * height / 1e6) for job, width, height in rows]


def _rate(session, kind: str) -> tuple[float | None, int]:
    """(median seconds per unit of work, how many jobs that is from) over the last finished
    jobs of background ``kind``: what an estimate of a similar job is made from."""
    rows = _with_megapixels(session, select(Generation).where(
        Generation.status == "done", Generation.background_kind == kind, Generation.started_at.is_not(None),
        Generation.finished_at.is_not(None), Generation.id.in_(
            select(Generation.id).where(Generation.status == "done", Generation.background_kind == kind)
            .order_by(Generation.id.desc()).limit(SIMILAR_JOBS))))
    rates = [(job.finished_at - job.started_at).total_seconds() / _work(job, mp) for job, mp in rows]
    return (statistics.median(rates) if rates else None), len(rates)


def _work(job: Generation, megapixels: float) -> float:
    """A job's amount of work, the unit its expected time scales with: the network rows its
    diffusion steps compute for an AI background (steps x variants, twice when guided; fast
    mode's recipe, core.engine.recipes; its cost hardly depends on the photo's size, which is
    bucketed), megapixels for the others (decoding, cutting out, compositing and encoding grow
    with the photo)."""
    if lane_of(job.background_kind) == "ai":
        return step_rows(job.request or {})
    return max(megapixels, 0.05)


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
    """Serves the queue (one ``lane`` of it, or every job) in a daemon thread: claim, run,
    record, repeat; waits ``poll_interval`` seconds (or until ``wake()``) when there is nothing to
    claim. ``run_fn`` defaults to core.pipeline.run; the registry is the shared model cache."""

    def __init__(self, queue: JobQueue | None = None, run_fn=None, registry=None, poll_interval: float = 0.5,
                 recover: bool = True, warm_up: GenerationRequest | None = None, lane: str | None = None):
        super().__init__(name=f"backdrop-worker-{lane or 'any'}", daemon=True)
        _in_lane(lane)  # an unknown lane is an error now, not a worker that never claims
        self.lane = lane
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
        from core.engine.generate import warm_up

        try:
            log.info("worker warm-up: %s", warm_up(self.warm_up, self.registry))
        except Exception:  # a failed warm-up only means the first AI job loads its models itself
            log.warning("worker warm-up failed", exc_info=True)

    def run_once(self) -> bool:
        """Claim and run one job; False when there was none."""
        service.set_live(self.identity, True)
        generation_id = self.queue.claim(self.identity, self.lane)
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

    def request_stop(self) -> None:
        """Stop after the current job (cancel it first to stop sooner), without waiting."""
        self._stop_event.set()
        self._wake.set()

    def stop(self, timeout: float | None = None) -> None:
        self.request_stop()
        self.join(timeout)


class LaneWorkers:
    """One worker thread per lane over one queue: what serves the queue in this process, with the
    same face as a Worker (``queue``, ``start``, ``wake``, ``current``, ``is_alive``, ``stop``).
    ``warm_up`` (a request) loads the AI models in the AI worker's own thread when it starts."""

    def __init__(self, queue: JobQueue | None = None, run_fn=None, registry=None, poll_interval: float = 0.5,
                 warm_up: GenerationRequest | None = None):
        self.queue = queue or JobQueue()
        self.workers = {lane: Worker(self.queue, run_fn=run_fn, registry=registry, poll_interval=poll_interval,
                                     warm_up=warm_up if lane == "ai" else None, lane=lane) for lane in LANES}

    def start(self) -> None:
        for worker in self.workers.values():
            worker.start()

    def is_alive(self) -> bool:
        return all(worker.is_alive() for worker in self.workers.values())

    def wake(self) -> None:
        for worker in self.workers.values():
            worker.wake()

    def running(self) -> dict[str, int | None]:
        """The job each lane is running now (None: idle)."""
        return {lane: worker.current for lane, worker in self.workers.items()}

    @property
    def current(self) -> int | None:
        """The oldest job running in a lane, or None."""
        return min((job for job in self.running().values() if job is not None), default=None)

    def stop(self, timeout: float | None = None) -> None:
        for worker in self.workers.values():
            worker.request_stop()
        for worker in self.workers.values():
            worker.join(timeout)


def start_serving(queue: JobQueue | None = None, registry=None, warm_up: GenerationRequest | None = None,
                  ray_address: str | None = None, ray_workers: int | None = None):
    """Start what serves the queue and return it (``queue``, ``wake()``, ``current``,
    ``is_alive()``, ``stop()``): Ray workers when a Ray cluster is named (``ray_address``, else
    BACKDROP_RAY_ADDRESS; storage.ray_workers), else a worker thread per lane in this process."""
    from storage.ray_workers import RayExecutor, configured_address

    address = configured_address(ray_address)
    if address:
        executor = RayExecutor(queue, address=address, workers=ray_workers, warm_up=warm_up)
    else:
        executor = LaneWorkers(queue, registry=registry, warm_up=warm_up)
    executor.start()
    return executor
