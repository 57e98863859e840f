"""Limits a served app needs, set by whoever runs it (environment variables): how large a photo
one job may be, and how many jobs one account may have waiting or running in the queue (an app
without accounts has one local user, whose queue is not limited).

They apply to the job queue (the app's Studio and Batch pages, and whatever else submits jobs);
the number of jobs is counted and the new one recorded in one transaction (take_queue_place);
a ``backdrop replace`` on one's own machine is bounded only by the decompression-bomb limit of
core.imaging.
"""

from __future__ import annotations

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from core.config import NAMED, config
from core.errors import InputError
from storage.lifecycle import UNFINISHED
from storage.models import Generation, User

MAX_PIXELS = NAMED["BACKDROP_MAX_PIXELS"]  # a 48 MP phone photo fits; 80 MP with shadows took minutes
MAX_QUEUED = NAMED["BACKDROP_MAX_QUEUED_PER_USER"]  # queued or running jobs of one user (a batch counts each photo)


def max_pixels() -> int:
    return config().max_pixels


def max_queued() -> int:
    return config().max_queued_per_user


def check_pixels(width: int, height: int, what: str = "the photo") -> None:
    limit = max_pixels()
    if width * height > limit:
        raise InputError(f"{what} is {width}x{height} = {width * height / 1e6:.1f} megapixels; this server takes at "
                         f"most {limit / 1e6:.1f} megapixels per job ({MAX_PIXELS.name}): make it smaller first")


def take_queue_place(session: Session, user_id: int, limit: int) -> None:
    """Inside the transaction that records a queued job of account ``user_id``: InputError when
    the account already has ``limit`` jobs queued or running.

    Atomic, so parallel submissions of one account cannot all pass the count before any of them
    is recorded: the account's row is written first (a no-op UPDATE), which on PostgreSQL locks
    that row and on SQLite takes the database's write lock, both held until the transaction
    commits; so the count below sees every job of the account committed before, and the next
    submission of the account waits for this one's job to be recorded (or refused)."""
    session.execute(update(User).where(User.id == user_id).values(id=User.id))
    waiting = session.scalar(select(func.count(Generation.id)).where(
        Generation.owner_id == user_id, Generation.status.in_(UNFINISHED)))
    if waiting >= limit:
        raise InputError(f"you already have {waiting} jobs queued or running; this server takes at most {limit} per "
                         f"user ({MAX_QUEUED.name}): wait for some to finish, or cancel some")
