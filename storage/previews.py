"""The live preview of running AI generations, kept where every front end can read it.

A job runs in a worker thread, another process or a Ray actor, so its preview travels through
the database as its progress does: ``save`` replaces the generation's one preview (a small JPEG
of core.engine.preview's composite) after a step, the Studio's job view and the API read the
``latest``, and ``clear`` removes it when the run ends (with any a killed run left behind).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import datetime

from PIL import Image as PILImage
from sqlalchemy import delete, or_, select

from storage.db import Database, utcnow
from storage.lifecycle import Status
from storage.models import Generation, Preview

QUALITY = 80  # JPEG quality: a 384 px preview is about 20 KB


@dataclass(frozen=True)
class Shown:
    """A preview as stored: the image after diffusion step ``step`` of ``total``."""

    step: int
    total: int
    jpeg: bytes
    updated_at: datetime


def encode(image: PILImage.Image) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, format="JPEG", quality=QUALITY)
    return out.getvalue()


def save(db: Database, generation_id: int, image: PILImage.Image, step: int, total: int) -> None:
    """Make ``image`` the generation's latest preview (one writer per generation: its run)."""
    jpeg = encode(image)
    with db.session() as session:
        session.merge(Preview(generation_id=generation_id, step=step, total=total, jpeg=jpeg, updated_at=utcnow()))


def latest(db: Database, generation_id: int) -> Shown | None:
    """The generation's latest preview, or None (none yet, or the run has ended)."""
    with db.Session() as session:
        row = session.get(Preview, generation_id)
        return Shown(row.step, row.total, row.jpeg, row.updated_at) if row is not None else None


def present(db: Database, generation_ids: list[int]) -> set[int]:
    """Which of these generations have a preview now."""
    if not generation_ids:
        return set()
    with db.Session() as session:
        return set(session.scalars(select(Preview.generation_id).where(Preview.generation_id.in_(generation_ids))))


def clear(db: Database, generation_id: int) -> None:
    """Remove the generation's preview, and those of generations no longer running (a killed
    run's, whose process could not)."""
    ended = select(Generation.id).where(Generation.status != Status.RUNNING)
    with db.session() as session:
        session.execute(delete(Preview).where(or_(Preview.generation_id == generation_id,
                                                  Preview.generation_id.in_(ended))))
