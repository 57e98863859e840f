"""Persisted job queue in the generations table, and the worker threads that serve it.

``JobQueue.submit`` records a queued generation and returns its id at once. Jobs run in two
lanes: ``ai`` (an AI background: minutes on a CPU) and ``quick`` (every other background:
seconds), each served by its own ``Worker`` (``LaneWorkers``), so a colour job never waits
behind an AI job. Only the ``ai`` lane runs diffusers, whose pipeline is not thread-safe: one AI
worker per device. A ``Worker`` claims the oldest queued job of its lane (storage.lifecycle.claim:
one conditional UPDATE, atomic on SQLite and PostgreSQL), then runs it through
``storage.service.execute``: progress and the cancel flag go through its row.

A process killed mid-job leaves its row running; ``recover_stale`` (run by every worker when
it starts and every RECOVER_EVERY while it waits, and by every ``backdrop`` command that opens
the database) marks such rows failed, or queues them again, so no job stays stuck. Jobs belong
to the user who submitted them (storage.users); storage.limits bounds their size and number. Finished results
are written in one transaction, so a crash never loses or half-records them.
"""

from __future__ import annotations

import logging
import os
import threading
import statistics
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from PIL import Image as PILImage
from sqlalchemy import func, select

from core.engine.recipes import step_rows
from core.look.backgrounds import KINDS
from core.request import GenerationRequest
from storage import admission, history, lifecycle, limits, service
from storage.db import Database, get_database, utcnow
from storage.lifecycle import STALE_AFTER, UNFINISHED, Status
from storage.models import Generation, Image

log = logging.getLogger(__name__)

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
    background kind (None when there is nothing to estimate from: see ``Speed``)."""

    lane: str
    status: str
    ahead: int
    wait_s: float | None
    run_s: float | None
    similar: int


@dataclass(frozen=True)
class Speed:
    """How long jobs of one background kind take: ``fixed`` seconds (starting, loading, cutting
    out at the segmenter's own size) plus ``per_unit`` seconds per unit of work (``_work``),
    fitted on the durations of the last ``similar`` finished ones (Theil-Sen: the median of the
    slopes between pairs, robust to an odd slow run). A fit through the origin made a 12 MP
    colour job from smaller ones 2-3x too long (issue 21: 21 s estimated, 8-10 s taken), as
    most of a small job's time does not grow with the photo. With all of them of one size the
    two cannot be told apart: that size's median time, scaled for a job within a factor of two
    of it, and no estimate beyond (``seconds`` None)."""

    fixed: float
    per_unit: float
    similar: int
    sizes: tuple[float, float]  # the least and the most work it was fitted on

    @classmethod
    def fit(cls, samples: list[tuple[float, float]]) -> Speed | None:
        """From (work, seconds) pairs; None without any."""
        if not samples:
            return None
        works = [work for work, _ in samples]
        slopes = [(b_s - a_s) / (b_w - a_w) for i, (a_w, a_s) in enumerate(samples) for b_w, b_s in samples[i + 1:]
                  if b_w != a_w]
        if not slopes:
            return cls(0.0, statistics.median(s / w for w, s in samples), len(samples), (min(works), max(works)))
        per_unit = max(statistics.median(slopes), 0.0)
        fixed = max(statistics.median(s - per_unit * w for w, s in samples), 0.0)
        return cls(fixed, per_unit, len(samples), (min(works), max(works)))

    def seconds(self, work: float) -> float | None:
        low, high = self.sizes
        if low == high and not low / 2 <= work <= high * 2:
            return None
        return self.fixed + self.per_unit * work


class JobQueue:
    def __init__(self, db: Database | None = None):
        self.db = db or get_database()

    def submit(self, request: GenerationRequest, image: PILImage.Image | bytes | str | os.PathLike,
               mask: PILImage.Image | bytes | str | os.PathLike | None = None, parent_id: int | None = None,
               picture: bytes | str | os.PathLike | None = None, user=None, cut_out: bool = False) -> int:
        """Queue a generation for ``user`` (``picture``: an image background's); returns its id at
        once. What would fail the job at once (storage.admission: unreadable images, a photo over
        the server's size limit, an unknown segmenter; with ``cut_out``, an automatic mask that
        finds no subject) and an account with too many jobs waiting raise InputError here, and
        nothing is recorded."""
        admission.check(request, image, mask, picture, cut_out=cut_out)
        # accounts share the server; without them one local user has it all
        return history.create(request, image, mask, parent_id, db=self.db, picture=picture, user=user,
                              queue_limit=limits.max_queued() if user is not None else None)

    def resubmit(self, generation_id: int, changes: dict[str, Any] | None = None, user=None) -> int:
        """Queue a stored generation (one ``user`` may see) again, as its child, from its stored
        photo, mask and picture: the same request (same seed, same image), or a remix with
        ``changes`` to its fields. Returns the new id."""
        inputs = service.rerun_inputs(generation_id, db=self.db, user=user, **(changes or {}))
        return self.submit(inputs.request, inputs.image, inputs.mask, parent_id=generation_id, picture=inputs.picture,
                           user=user)

    def get(self, generation_id: int, user=None) -> history.GenerationView:
        return history.get(generation_id, db=self.db, user=user)

    def cancel(self, generation_id: int, user=None) -> str:
        """Cancel a queued job at once, or ask a running one to stop at its next step. Returns the
        status the job now has (or will reach: cancelled, for a running one asked to stop)."""
        history.get(generation_id, db=self.db, user=user)  # NotFound unless it is the user's
        status = lifecycle.cancel(self.db, generation_id)
        if status is None:
            raise history.NotFound(f"no generation {generation_id}")
        return status

    def claim(self, worker: str, lane: str | None = None) -> int | None:
        """Take the oldest queued job (of ``lane``, or any) for ``worker``; None when there is none."""
        return lifecycle.claim(self.db, worker, _in_lane(lane))

    def pending(self, lane: str | None = None) -> int:
        """Jobs queued or running (in ``lane``, or in all)."""
        with self.db.Session() as session:
            return session.scalar(select(func.count(Generation.id)).where(
                Generation.status.in_(UNFINISHED), _in_lane(lane))) or 0

    def place(self, generation_id: int, user=None, now: datetime | None = None) -> Place:
        """Where a job (``user``'s, when given) stands in its lane, with its expected wait and run
        time at ``now`` (default: the clock's). The jobs ahead are everyone's: they share the
        lane's worker."""
        history.get(generation_id, db=self.db, user=user)  # NotFound unless it is the user's
        now = now or utcnow()
        with self.db.Session() as session:
            row = session.get(Generation, generation_id)
            lane = lane_of(row.background_kind)
            unfinished = _with_megapixels(session, select(Generation).where(
                Generation.status.in_(UNFINISHED), _in_lane(lane), Generation.id != row.id))
            ahead = [] if row.status == Status.RUNNING else [
                (job, mp) for job, mp in unfinished if job.status == Status.RUNNING or job.id < row.id]
            speeds = {kind: _speed(session, kind) for kind in {row.background_kind} | {j.background_kind for j, _ in ahead}}
            own_mp = _with_megapixels(session, select(Generation).where(Generation.id == row.id))[0][1]
            wait_s: float | None = 0.0
            for job, mp in ahead:
                speed = speeds[job.background_kind]
                seconds = speed.seconds(_work(job, mp)) if speed is not None else None
                if seconds is None:
                    wait_s = None
                    break
                if job.status == Status.RUNNING and job.started_at is not None:
                    seconds = max(seconds - (now - job.started_at).total_seconds(), 0.0)
                wait_s += seconds
            speed = speeds[row.background_kind]
            run_s = speed.seconds(_work(row, own_mp)) if speed is not None else None
            return Place(lane, row.status, len(ahead), wait_s, run_s, speed.similar if speed is not None else 0)

    def expected_run_s(self, request: GenerationRequest, megapixels: float = 1.0) -> tuple[float | None, int]:
        """(seconds a job of ``request`` on a photo of ``megapixels`` is expected to run, how many
        finished jobs that is from), from the recorded times of the last similar ones (None
        when there are none yet): what the Fast switch says before anything is queued."""
        with self.db.Session() as session:
            speed = _speed(session, request.background_spec.kind)
        if speed is None:
            return None, 0
        job = Generation(background_kind=request.background_spec.kind, request=request.to_dict())
        return speed.seconds(_work(job, megapixels)), speed.similar

    def recover_stale(self, requeue: bool = False, stale_after: timedelta = STALE_AFTER) -> list[int]:
        """Jobs left running by a worker that is gone: failed, or queued again with ``requeue``
        (storage.lifecycle.recover_stale)."""
        return lifecycle.recover_stale(self.db, requeue, stale_after)

    def release(self, worker: str, requeue: bool = False, error: str = lifecycle.INTERRUPTED) -> list[int]:
        """The jobs of one worker known to be gone (a Ray actor whose process died): failed with
        ``error``, or queued again with ``requeue``."""
        return lifecycle.release(self.db, worker, requeue, error)


def _with_megapixels(session, query) -> list[tuple[Generation, float]]:
    """The generations ``query`` selects, each with its photo's size in megapixels. Rows already
    loaded in ``session`` are refreshed: a job that finished since an earlier query of the same
    session must not keep that query's ``finished_at`` (None)."""
    rows = session.execute(query.add_columns(Image.width, Image.height)
                           .join(Image, Image.sha256 == Generation.input_sha256).order_by(Generation.id)
                           .execution_options(populate_existing=True)).all()
    return [(job, width * height / 1e6) for job, width, height in rows]


def _speed(session, kind: str) -> Speed | None:
    """How long jobs of background ``kind`` take, from the last SIMILAR_JOBS finished ones."""
    rows = _with_megapixels(session, select(Generation).where(
        Generation.status == Status.DONE, Generation.background_kind == kind, Generation.started_at.is_not(None),
        Generation.finished_at.is_not(None), Generation.id.in_(
            select(Generation.id).where(Generation.status == Status.DONE, Generation.background_kind == kind)
            .order_by(Generation.id.desc()).limit(SIMILAR_JOBS))))
    return Speed.fit([(_work(job, mp), (job.finished_at - job.started_at).total_seconds()) for job, mp in rows])


def _work(job: Generation, megapixels: float) -> float:
    """A job's amount of work, the unit its expected time scales with: the network rows its
    diffusion steps compute for an AI background (steps x variants, twice when guided; fast
    mode's recipe, core.engine.recipes; its cost hardly depends on the photo's size, which is
    bucketed), megapixels for the others (decoding, cutting out, compositing and encoding grow
    with the photo)."""
    if lane_of(job.background_kind) == "ai":
        return step_rows(job.request or {})
    return max(megapixels, 0.05)


class Worker(threading.Thread):
    """Serves the queue (one ``lane`` of it, or every job) in a daemon thread: claim, run,
    record, repeat; waits ``poll_interval`` seconds (or until ``wake()``) when there is nothing to
    claim. ``run_fn`` defaults to core.pipeline.run; the registry is the shared model cache.
    ``kind`` names it in the identity it records on the jobs it holds (storage.lifecycle.Holder)."""

    def __init__(self, queue: JobQueue | None = None, run_fn=None, registry=None, poll_interval: float = 0.5,
                 recover: bool = True, warm_up: GenerationRequest | None = None, lane: str | None = None,
                 kind: str = "worker"):
        super().__init__(name=f"backdrop-worker-{lane or 'any'}", daemon=True)
        _in_lane(lane)  # an unknown lane is an error now, not a worker that never claims
        self.lane = lane
        self.queue = queue or JobQueue()
        self.run_fn = run_fn
        self.registry = registry
        self.poll_interval = poll_interval
        self.recover = recover
        self.warm_up = warm_up
        self.holder = lifecycle.Holder(kind)
        self.identity = self.holder.identity
        self._stop_event = threading.Event()
        self._wake = threading.Event()
        self.current: int | None = None

    def run(self) -> None:
        with self.holder:  # its jobs are alive while it serves
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

    def _warm_up(self) -> None:
        from core.engine.generate import warm_up

        try:
            log.info("worker warm-up: %s", warm_up(self.warm_up, self.registry))
        except Exception:  # a failed warm-up only means the first AI job loads its models itself
            log.warning("worker warm-up failed", exc_info=True)

    def run_once(self) -> bool:
        """Claim and run one job; False when there was none."""
        with self.holder:
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
    """One worker thread per lane over one queue: what serves the queue in this process (a
    storage.serving.Executor). ``warm_up`` (a request) loads the AI models in the AI worker's own
    thread when it starts; ``kind`` (``app``, ``api``) names the process's workers in the identity
    each records on its jobs (``app-ai-...``: storage.lifecycle.describe says it in words)."""

    kind = "in-process"

    def __init__(self, queue: JobQueue | None = None, run_fn=None, registry=None, poll_interval: float = 0.5,
                 warm_up: GenerationRequest | None = None, kind: str = "worker"):
        self.queue = queue or JobQueue()
        self.workers = {lane: Worker(self.queue, run_fn=run_fn, registry=registry, poll_interval=poll_interval,
                                     warm_up=warm_up if lane == "ai" else None, lane=lane, kind=f"{kind}-{lane}")
                        for lane in LANES}

    def start(self) -> None:
        for worker in self.workers.values():
            worker.start()

    def is_alive(self) -> bool:
        return all(worker.is_alive() for worker in self.workers.values())

    def wake(self) -> None:
        for worker in self.workers.values():
            worker.wake()

    def running(self) -> dict[str | None, int | None]:
        """The job each lane is running now (None: idle)."""
        return {lane: worker.current for lane, worker in self.workers.items()}

    def worker_count(self) -> int:
        return len(self.workers)

    def stop(self, timeout: float | None = None) -> None:
        for worker in self.workers.values():
            worker.request_stop()
        for worker in self.workers.values():
            worker.join(timeout)
