"""The job lifecycle: a generation's status, who holds it and its heartbeat change here and
nowhere else (a test checks the source: no other module writes a status, or spells one).

::

    queued --claim--> running --finish--> done
      |                  +------fail----> failed      (the error recorded)
      |                  +------stop----> cancelled   (it stopped at a cancel request)
      |                  +----recover---> failed "interrupted", or queued again
      +------cancel------------------> cancelled

A run that starts at once (the command line's ``replace`` and ``rerun``, a batch's photo) is
created running, held by its ``Holder`` (``new_row``); a Ray batch task takes such a row over
from the process that recorded it (``take_over``). Whatever acquired it, a held job runs through
``storage.service.execute``, which beats, writes progress and ends it through this module.

Who holds a running job is its ``worker`` column, a ``Holder``'s identity (host:pid:kind-token).
A process killed mid-job leaves its rows running; ``recover_stale`` finds them: on this host by
the process being gone (or, for this process, by no open Holder of that identity), on another
host by a heartbeat silent for STALE_AFTER (a running job beats every HEARTBEAT_S).
"""

from __future__ import annotations

import collections
import logging
import os
import socket
import threading
import uuid
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import select, update

from core.errors import BackdropError
from storage.db import Database, utcnow
from storage.models import Generation

log = logging.getLogger(__name__)


class Status(StrEnum):
    """A generation's status; a member equals its text (``Status.DONE == "done"``), as stored."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


STATUSES = tuple(status.value for status in Status)  # for choices and Literal types
UNFINISHED = (Status.QUEUED, Status.RUNNING)
INTERRUPTED = "interrupted: the process running it stopped mid-job (killed or crashed)"
CANCELLED_BEFORE_START = "cancelled before it started"
STALE_AFTER = timedelta(minutes=5)  # a run on another host silent this long is taken for dead
HEARTBEAT_S = 30.0  # a running generation's row is marked alive this often

_live: collections.Counter[str] = collections.Counter()  # identities of the Holders open in this process
_live_lock = threading.Lock()


class Holder:
    """Who holds running jobs: a worker thread, a synchronous run, a batch or one of its tasks.
    Its ``identity`` is recorded on the rows it holds; while it is open (``with holder:``, which
    may nest), this process's recovery leaves them alone."""

    def __init__(self, kind: str = "worker"):
        self.identity = f"{socket.gethostname()}:{os.getpid()}:{kind}-{uuid.uuid4().hex[:8]}"

    def __enter__(self) -> Holder:
        with _live_lock:
            _live[self.identity] += 1
        return self

    def __exit__(self, *exc) -> None:
        with _live_lock:
            _live[self.identity] -= 1
            if _live[self.identity] <= 0:
                del _live[self.identity]


def new_row(status: Status | str = Status.QUEUED, worker: str | None = None) -> dict[str, Any]:
    """The lifecycle columns of a new generation: queued, or running and held by ``worker``
    (a run that starts at once)."""
    status = Status(status)
    now = utcnow() if status == Status.RUNNING else None
    return dict(status=status, worker=worker, started_at=now, heartbeat_at=now)


def claim(db: Database, worker: str, *where) -> int | None:
    """Take the oldest queued job (of those ``where`` selects) for ``worker``; None when there is
    none. The conditional UPDATE's row count says whether this worker won it: atomic on SQLite
    (one writer at a time) and PostgreSQL (the losing UPDATE re-checks the row after the winner
    commits and matches nothing)."""
    while True:
        with db.session() as session:
            candidate = session.scalar(select(Generation.id).where(Generation.status == Status.QUEUED, *where)
                                       .order_by(Generation.id).limit(1))
            if candidate is None:
                return None
            now = utcnow()
            won = session.execute(
                update(Generation).where(Generation.id == candidate, Generation.status == Status.QUEUED)
                .values(status=Status.RUNNING, worker=worker, started_at=now, heartbeat_at=now)).rowcount
        if won == 1:
            return candidate


def take_over(db: Database, generation_id: int, worker: str) -> bool:
    """A Ray batch task takes over a photo recorded running by the batch's process; False when
    it is not running any more (cancelled, or failed by a recovery, while it waited)."""
    with db.session() as session:
        return bool(session.execute(
            update(Generation).where(Generation.id == generation_id, Generation.status == Status.RUNNING)
            .values(worker=worker, heartbeat_at=utcnow())).rowcount)


def beat(db: Database, generation_id: int) -> None:
    """Mark a running job alive."""
    with db.session() as session:
        session.execute(update(Generation).where(Generation.id == generation_id, Generation.status == Status.RUNNING)
                        .values(heartbeat_at=utcnow()))


def beat_held(db: Database, worker: str) -> None:
    """Mark every running job ``worker`` holds alive (a batch's photos waiting for their task)."""
    with db.session() as session:
        session.execute(update(Generation).where(Generation.status == Status.RUNNING, Generation.worker == worker)
                        .values(heartbeat_at=utcnow()))


def progress(db: Database, generation_id: int, stage: str, done: int, total: int) -> None:
    """A running job's stage and step; it is alive."""
    with db.session() as session:
        session.execute(update(Generation).where(Generation.id == generation_id).values(
            progress_stage=stage[:32], progress_step=done, progress_total=total, heartbeat_at=utcnow()))


class Heartbeat(threading.Thread):
    """Beats a running job every HEARTBEAT_S while it runs (``with Heartbeat(db, id):``), even
    through a long stage with no progress to report: recovery on another host takes a silent
    row for dead."""

    def __init__(self, db: Database, generation_id: int):
        super().__init__(name=f"backdrop-heartbeat-{generation_id}", daemon=True)
        self.db, self.generation_id = db, generation_id
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(HEARTBEAT_S):
            try:
                beat(self.db, self.generation_id)
            except Exception:  # a busy or full database: the next beat tries again
                log.warning("heartbeat of generation %s not recorded", self.generation_id, exc_info=True)

    def __enter__(self) -> Heartbeat:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop_event.set()
        self.join()


def finish(row: Generation) -> None:
    """Mark a generation done, inside the transaction that records its results (storage.service)."""
    row.status, row.error, row.finished_at = Status.DONE, None, utcnow()
    row.progress_step = row.progress_total = max(row.progress_total, 1)
    row.cancel_requested = False


def fail(db: Database, generation_id: int, error: str, only_if_running: bool = False) -> bool:
    """Record that a generation failed, and why (``only_if_running``: unless it already ended);
    True when it was recorded."""
    return _end(db, generation_id, Status.FAILED, error, only_if_running)


def stop(db: Database, generation_id: int, reason: str = "") -> None:
    """Record that a running generation stopped at a cancel request (``reason``: how, if said)."""
    _end(db, generation_id, Status.CANCELLED, reason or Status.CANCELLED.value)


def _end(db: Database, generation_id: int, status: Status, error: str, only_if_running: bool = False) -> bool:
    """On a full disk the data folder's reserve is given up to record it; should even that fail,
    the row stays running and the next recovery marks it failed."""
    def record() -> None:
        with db.session() as session:
            session.execute(update(Generation).where(
                Generation.id == generation_id, *([Generation.status == Status.RUNNING] if only_if_running else []))
                .values(status=status, error=error, finished_at=utcnow(), cancel_requested=False))

    try:
        db.retry_when_full(record)
    except BackdropError:
        log.exception("could not record that generation %s ended %s (%s)", generation_id, status, error)
        return False
    return True


def cancel(db: Database, generation_id: int) -> str | None:
    """Cancel a queued job at once, or ask a running one to stop at its next step. Returns the
    status it now has, or will reach (cancelled, for a running one asked to stop); None when
    there is no such generation."""
    with db.session() as session:
        if session.execute(
                update(Generation).where(Generation.id == generation_id, Generation.status == Status.QUEUED)
                .values(status=Status.CANCELLED, finished_at=utcnow(), error=CANCELLED_BEFORE_START)).rowcount:
            return Status.CANCELLED.value
        if session.execute(
                update(Generation).where(Generation.id == generation_id, Generation.status == Status.RUNNING)
                .values(cancel_requested=True)).rowcount:
            return Status.CANCELLED.value
        return session.scalar(select(Generation.status).where(Generation.id == generation_id))


def recover(db: Database, generation_id: int, worker: str | None, requeue: bool = False,
            error: str = INTERRUPTED) -> bool:
    """Fail (with ``error``) or queue again one running job, only if ``worker`` still holds it."""
    values = (dict(status=Status.QUEUED, worker=None, started_at=None, progress_step=0, progress_stage="")
              if requeue else dict(status=Status.FAILED, error=error, finished_at=utcnow()))
    with db.session() as session:
        return bool(session.execute(
            update(Generation).where(Generation.id == generation_id, Generation.status == Status.RUNNING,
                                     Generation.worker.is_(None) if worker is None else Generation.worker == worker)
            .values(cancel_requested=False, **values)).rowcount)


def recover_stale(db: Database, requeue: bool = False, stale_after: timedelta = STALE_AFTER) -> list[int]:
    """Jobs left running by a holder that is gone (``worker_gone``): failed with INTERRUPTED,
    or queued again with ``requeue``."""
    with db.Session() as session:
        rows = session.execute(select(Generation.id, Generation.worker, Generation.heartbeat_at)
                               .where(Generation.status == Status.RUNNING)).all()
    recovered = [generation_id for generation_id, worker, heartbeat in rows
                 if worker_gone(worker, heartbeat, stale_after) and recover(db, generation_id, worker, requeue)]
    if recovered:
        log.warning("recovered %d interrupted job(s): %s", len(recovered), recovered)
    return recovered


def release(db: Database, worker: str, requeue: bool = False, error: str = INTERRUPTED) -> list[int]:
    """The jobs of one holder known to be gone (a Ray actor whose process died): failed with
    ``error``, or queued again with ``requeue``."""
    with db.Session() as session:
        held = list(session.scalars(select(Generation.id).where(Generation.status == Status.RUNNING,
                                                                Generation.worker == worker)))
    released = [generation_id for generation_id in held if recover(db, generation_id, worker, requeue, error)]
    if released:
        log.warning("released %d job(s) of worker %s: %s", len(released), worker, released)
    return released


def worker_gone(worker: str | None, heartbeat: datetime | None, stale_after: timedelta = STALE_AFTER) -> bool:
    """Whether the holder of a running job is gone: on this host, its process is dead (or it is
    this process and no such Holder is open); on another, no heartbeat for ``stale_after``."""
    host, _, rest = (worker or "").partition(":")
    pid_text = rest.partition(":")[0]
    if host == socket.gethostname() and pid_text.isdigit():
        pid = int(pid_text)
        if pid == os.getpid():
            with _live_lock:
                return worker not in _live
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
