"""Limits a served app needs, set by whoever runs it (environment variables): how large a photo
one job may be, and how many jobs one account may have waiting or running in the queue (an app
without accounts has one local user, whose queue is not limited).

They apply to the job queue (the app's Studio and Batch pages, and whatever else submits jobs);
a ``backdrop replace`` on one's own machine is bounded only by the decompression-bomb limit of
core.imaging.
"""

from __future__ import annotations

from core.config import NAMED, config
from core.errors import InputError

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


def check_queue(waiting: int) -> None:
    limit = max_queued()
    if waiting >= limit:
        raise InputError(f"you already have {waiting} jobs queued or running; this server takes at most {limit} per "
                         f"user ({MAX_QUEUED.name}): wait for some to finish, or cancel some")
