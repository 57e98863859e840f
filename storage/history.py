"""Generation records: create, fetch with outputs and lineage, list/search/filter, favourite,
delete (with the files only that generation used) and export as a zip.

Every function takes ``db=None`` (the shared database from the environment) and returns plain
``GenerationView`` objects, so callers never hold an ORM session. Every function that reads or
changes generations takes ``user``: None (the command line, a local app without accounts: every
generation) or a ``storage.users.User``, who sees and changes only their own unless an admin.
Another user's generation is "not found", exactly like one that does not exist.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image as PILImage
from sqlalchemy import Select, delete as sql_delete, func, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, selectinload

from core.errors import BackdropError, OutputError
from core.files import check_target, write_atomic
from core.request import GenerationRequest
from storage import limits
from storage.db import Database, get_database, utcnow
from storage.errors import DOCTOR, StorageError
from storage.images import StoredImage
from storage.lifecycle import Status, new_row
from storage.models import Generation, Image, Output

if TYPE_CHECKING:
    from storage.users import User

MAX_LINEAGE = 1000  # guards the ancestor walk against a corrupted cycle
MAX_ID = 2**63 - 1  # the largest integer SQLite and PostgreSQL store: no generation has a larger id


class NotFound(BackdropError):
    """No generation with that id."""


@dataclass(frozen=True)
class OutputView:
    kind: str
    index: int
    sha256: str
    format: str
    width: int
    height: int
    path: Path


@dataclass(frozen=True)
class GenerationView:
    """A generation as every front end shows it: the History and the Studio read it, the HTTP
    API answers it (backdrop.api_schema.Generation.from_view: the fields it names, with the
    progress and the images' addresses)."""

    id: int
    request: dict[str, Any]
    prompt: str
    background_kind: str
    status: str
    progress_stage: str
    progress_step: int
    progress_total: int
    cancel_requested: bool
    error: str | None
    timings: dict[str, Any]
    device: str | None
    versions: dict[str, Any]
    models: dict[str, Any]
    warnings: list[Any]
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    favourite: bool
    parent_id: int | None
    owner_id: int | None
    input_sha256: str
    mask_sha256: str | None
    user_mask_sha256: str | None
    background_sha256: str | None
    record: dict[str, Any]
    worker: str | None = None  # who holds or held it (storage.lifecycle.describe says it in words)
    outputs: list[OutputView] = field(default_factory=list)
    ancestors: list[int] = field(default_factory=list)  # parent first
    children: list[int] = field(default_factory=list)

    def generation_request(self) -> GenerationRequest:
        return GenerationRequest.from_dict(self.request)

    def output(self, kind: str = "result", index: int = 0) -> OutputView | None:
        return next((o for o in self.outputs if o.kind == kind and o.index == index), None)

    @property
    def results(self) -> list[OutputView]:
        return [o for o in self.outputs if o.kind == "result"]

    @property
    def progress_fraction(self) -> float:
        """How far it is, from 0 to 1: the step of its stage while it runs, 1 once done, 0 otherwise."""
        if self.status == Status.DONE:
            return 1.0
        total = max(self.progress_total, 1)
        return min(self.progress_step, total) / total if self.status == Status.RUNNING else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe record (times as ISO 8601 UTC, paths as text)."""
        data = asdict(self)
        for key in ("created_at", "started_at", "finished_at"):
            data[key] = data[key].isoformat() if data[key] else None
        for out in data["outputs"]:
            out["path"] = str(out["path"])
        return data


def _db(db: Database | None) -> Database:
    return db or get_database()


def visible(query: Select, user: User | None) -> Select:
    """``query`` limited to the generations ``user`` may see."""
    if user is None or user.admin:
        return query
    return query.where(Generation.owner_id == user.id)


def _owned_row(session: Session, generation_id: int, user: User | None, **options: Any) -> Generation:
    if not 0 < generation_id <= MAX_ID:  # past the database's integers: no such row (and no OverflowError)
        raise NotFound(f"no generation {generation_id}")
    row = session.get(Generation, generation_id, **options)
    if row is None or not (user is None or user.admin or row.owner_id == user.id):
        raise NotFound(f"no generation {generation_id}")
    return row


def store_image(session: Session, db: Database, source: PILImage.Image | bytes | str | Path,
                pnginfo: dict[str, str] | None = None) -> StoredImage:
    """Put an image in the file store and its row in ``images`` (idempotent under concurrency).
    Bytes and paths are kept as given; PIL images are stored as PNG."""
    if isinstance(source, PILImage.Image):
        stored = db.images.put_image(source, pnginfo)
    else:
        stored = db.images.put_bytes(source if isinstance(source, bytes) else Path(source).read_bytes())
    return record_image(session, stored)


def record_image(session: Session, stored: StoredImage) -> StoredImage:
    """The ``images`` row of a file already in the store (idempotent under concurrency)."""
    insert = pg_insert if session.bind.dialect.name == "postgresql" else sqlite_insert
    session.execute(
        insert(Image)
        .values(sha256=stored.sha256, format=stored.format, width=stored.width, height=stored.height,
                bytes=stored.bytes, created_at=utcnow())
        .on_conflict_do_nothing(index_elements=["sha256"])
    )
    return stored


def create(request: GenerationRequest, image: PILImage.Image | bytes | str | Path,
           mask: PILImage.Image | bytes | str | Path | None = None, parent_id: int | None = None,
           status: Status | str = Status.QUEUED, worker: str | None = None, db: Database | None = None,
           picture: PILImage.Image | bytes | str | Path | None = None, user: User | None = None,
           queue_limit: int | None = None) -> int:
    """Record a generation with its inputs: the photo, the user's mask and an image background's
    picture, each kept in the image store by hash. Returns its id. Running, held by ``worker``,
    records a run that starts at once (storage.lifecycle.new_row). ``user`` owns it (and must be
    able to see the parent); with ``queue_limit``, in the same transaction, only while ``user``
    has fewer jobs queued or running (storage.limits.take_queue_place)."""
    db = _db(db)
    lifecycle = new_row(status, worker)  # an unknown status is a ValueError here, before anything is stored
    kind = request.background_spec.kind
    request.background_spec.check_picture(picture)
    created: list[str] = []

    def store(session: Session, source) -> str | None:
        if source is None:
            return None
        stored = store_image(session, db, source)
        if stored.created:
            created.append(stored.sha256)
        return stored.sha256

    try:
        with db.session() as session:
            if parent_id is not None:
                try:
                    _owned_row(session, parent_id, user)
                except NotFound:
                    raise NotFound(f"no generation {parent_id} to use as parent") from None
            if queue_limit is not None and user is not None:
                limits.take_queue_place(session, user.id, queue_limit)
            input_sha, mask_sha, picture_sha = store(session, image), store(session, mask), store(session, picture)
            row = Generation(
                request=request.to_dict(), prompt=request.prompt, background_kind=kind,
                input_sha256=input_sha, mask_sha256=mask_sha, user_mask_sha256=mask_sha, background_sha256=picture_sha,
                parent_id=parent_id, created_at=utcnow(), owner_id=user.id if user else None, **lifecycle,
            )
            session.add(row)
            session.flush()
            return row.id
    except BaseException:
        forget_unrecorded(db, created)
        raise


def _view(db: Database, row: Generation, ancestors: list[int] | None = None, children: list[int] | None = None) -> GenerationView:
    outputs = [
        OutputView(o.kind, o.index, o.image_sha256, o.image.format, o.image.width, o.image.height,
                   db.images.path(o.image_sha256))
        for o in row.outputs
    ]
    return GenerationView(
        id=row.id, request=dict(row.request), prompt=row.prompt, background_kind=row.background_kind,
        status=row.status, progress_stage=row.progress_stage, progress_step=row.progress_step,
        progress_total=row.progress_total, cancel_requested=row.cancel_requested, error=row.error,
        timings=dict(row.timings or {}), device=row.device, versions=dict(row.versions or {}),
        models=dict(row.models or {}), warnings=list(row.warnings or []), created_at=row.created_at,
        started_at=row.started_at, finished_at=row.finished_at, favourite=row.favourite,
        parent_id=row.parent_id, owner_id=row.owner_id, input_sha256=row.input_sha256, mask_sha256=row.mask_sha256,
        user_mask_sha256=row.user_mask_sha256, background_sha256=row.background_sha256,
        record=dict(row.record or {}), worker=row.worker, outputs=outputs, ancestors=ancestors or [],
        children=children or [],
    )


def get(generation_id: int, db: Database | None = None, user: User | None = None) -> GenerationView:
    """One generation with its outputs, its ancestors (parent first) and its children (those
    ``user`` may see)."""
    db = _db(db)
    with db.Session() as session:
        row = _owned_row(session, generation_id, user, options=[selectinload(Generation.outputs)])
        ancestors: list[int] = []
        parent = row.parent_id
        while parent is not None and parent not in ancestors and len(ancestors) < MAX_LINEAGE:
            ancestors.append(parent)
            parent = session.scalar(select(Generation.parent_id).where(Generation.id == parent))
        if ancestors and user is not None and not user.admin:
            mine = set(session.scalars(visible(select(Generation.id).where(Generation.id.in_(ancestors)), user)))
            ancestors = [a for a in ancestors if a in mine]
        children = list(session.scalars(visible(
            select(Generation.id).where(Generation.parent_id == row.id).order_by(Generation.id), user)))
        return _view(db, row, ancestors, children)


def escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _filtered(query: Select, search: str | None = None, status: str | list[str] | None = None,
              background: str | None = None, favourite: bool | None = None,
              since: datetime | None = None, until: datetime | None = None) -> Select:
    if search:
        pattern = f"%{escape_like(search)}%"
        query = query.where(Generation.prompt.ilike(pattern, escape="\\"))
    if status:
        query = query.where(Generation.status.in_([status] if isinstance(status, str) else status))
    if background:
        query = query.where(Generation.background_kind == background)
    if favourite is not None:
        query = query.where(Generation.favourite.is_(favourite))
    if since is not None:
        query = query.where(Generation.created_at >= since)
    if until is not None:
        query = query.where(Generation.created_at < until)
    return query


def list_generations(limit: int = 50, offset: int = 0, db: Database | None = None, user: User | None = None,
                     **filters: Any) -> list[GenerationView]:
    """Newest first, of those ``user`` may see. Filters: search (text in the prompt), status (one
    or a list), background (kind), favourite (bool), since/until (aware datetimes, until exclusive)."""
    db = _db(db)
    query = visible(_filtered(select(Generation), **filters), user).options(selectinload(Generation.outputs))
    query = query.order_by(Generation.created_at.desc(), Generation.id.desc()).limit(limit).offset(offset)
    with db.Session() as session:
        return [_view(db, row) for row in session.scalars(query)]


def count_generations(db: Database | None = None, user: User | None = None, **filters: Any) -> int:
    db = _db(db)
    with db.Session() as session:
        return session.scalar(visible(_filtered(select(func.count(Generation.id)), **filters), user)) or 0


def set_favourite(generation_id: int, value: bool = True, db: Database | None = None, user: User | None = None) -> None:
    with _db(db).session() as session:
        _owned_row(session, generation_id, user).favourite = value


def _referenced(session: Session, sha: str) -> bool:
    return bool(
        session.scalar(select(func.count()).select_from(Output).where(Output.image_sha256 == sha))
        or session.scalar(select(func.count()).select_from(Generation).where(
            or_(Generation.input_sha256 == sha, Generation.mask_sha256 == sha, Generation.user_mask_sha256 == sha,
                Generation.background_sha256 == sha)))
    )


def delete(generation_id: int, db: Database | None = None, user: User | None = None) -> list[str]:
    """Delete a generation and its outputs; remove the files that nothing else references and
    keep the rest. Children keep existing with no parent. Returns the removed files' hashes."""
    db = _db(db)
    with db.session() as session:
        # locked (PostgreSQL) so a worker cannot claim it between this check and the delete
        row = _owned_row(session, generation_id, user, options=[selectinload(Generation.outputs)], with_for_update=True)
        if row.status == Status.RUNNING:
            raise BackdropError(f"generation {generation_id} is running: cancel it first (`backdrop cancel "
                                f"{generation_id}`, or Cancel in the app)")
        shas = {row.input_sha256, row.mask_sha256, row.user_mask_sha256, row.background_sha256}
        shas |= {o.image_sha256 for o in row.outputs}
        session.delete(row)
        session.flush()
        unused = sorted(sha for sha in shas if sha and not _referenced(session, sha))
        if unused:
            session.execute(sql_delete(Image).where(Image.sha256.in_(unused)))
    removed = []
    with db.Session() as session:
        for sha in unused:
            # a generation created meanwhile with the same bytes re-added the row: keep the file
            if session.get(Image, sha) is None:
                db.images.delete(sha)
                removed.append(sha)
    return removed


def forget_unrecorded(db: Database, shas: list[str]) -> None:
    """Remove files a failed transaction stored that no row records (best effort: the store
    must not keep what no generation refers to)."""
    if not shas:
        return
    try:
        with db.Session() as session:
            kept = set(session.scalars(select(Image.sha256).where(Image.sha256.in_(shas))))
        for sha in set(shas) - kept:
            db.images.delete(sha)
    except Exception:  # the database is unusable right now: doctor reports files nothing records
        pass


def _select_for_export(db: Database, ids: list[int] | None, filters: dict[str, Any],
                       user: User | None) -> list[GenerationView]:
    if ids:
        return [get(i, db=db, user=user) for i in ids]
    return list_generations(limit=1_000_000, db=db, user=user, **filters)


def export(path: str | Path, ids: list[int] | None = None, db: Database | None = None, user: User | None = None,
           **filters: Any) -> tuple[Path, int]:
    """Write a zip: ``generation-ID/{input,mask,result-N,cutout}.EXT`` (N from 1) plus ``records.json`` (each
    record with a ``files`` map). ``ids`` picks generations, else the filters do (as in
    ``list_generations``). Returns the path and the number of generations. ``path`` must be a
    new name or an ordinary file in a folder that exists (never a folder or a device); the zip is
    written atomically, so a failure leaves whatever was there before."""
    db = _db(db)
    path = check_target(path)
    views = _select_for_export(db, ids, filters, user)
    records = []

    def write(stream) -> None:
        with zipfile.ZipFile(stream, "w", compression=zipfile.ZIP_STORED) as archive:
            for view in views:
                files: dict[str, str] = {}
                entries = [("input", view.input_sha256)]
                # variants numbered from 1, as the app and the command line name them
                entries += [(f"{o.kind}-{o.index + 1}" if o.kind == "result" else o.kind, o.sha256) for o in view.outputs]
                entries += [(name, sha) for name, sha in (("user_mask", view.user_mask_sha256),
                                                           ("background", view.background_sha256)) if sha]
                with db.Session() as session:
                    for name, sha in entries:
                        fmt = session.scalar(select(Image.format).where(Image.sha256 == sha)) or "bin"
                        arcname = f"generation-{view.id}/{name}.{fmt}"
                        source = db.images.path(sha)
                        if not source.is_file():
                            raise StorageError(f"generation {view.id}'s {name} ({sha}) is missing from the image "
                                               f"store; nothing was exported. {DOCTOR}")
                        archive.write(source, arcname)
                        files[name] = arcname
                record = view.to_dict()
                record["files"] = files
                records.append(record)
            archive.writestr("records.json", json.dumps(records, indent=2, sort_keys=True))

    try:
        return write_atomic(path, write), len(views)
    except OSError as exc:
        raise OutputError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None


def safe_stem(name: str) -> str:
    """A file name's stem fit to name a file in a zip anywhere: the last part after any ``/`` or
    ``\\`` (an uploaded name may carry a Windows path), without control characters, leading dots
    or characters Windows refuses; ``photo`` when nothing is left."""
    base = re.split(r"[\\/]", name)[-1]
    stem = base.rsplit(".", 1)[0] if "." in base.lstrip(".") else base
    stem = re.sub(r'[\x00-\x1f\x7f<>:"|?*]', "_", stem).strip(" .")
    return stem[:120] or "photo"


def results_zip(done: list[tuple[str, GenerationView]]) -> bytes:
    """The results of finished generations as one zip: one PNG per result, named after its
    photo (``-2``, ``-3``... for more variants; a generation's id when two photos share a name)."""
    buffer = io.BytesIO()
    used: set[str] = set()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, view in done:
            stem = safe_stem(name)
            for output in view.results:
                arcname = f"{stem}.png" if output.index == 0 else f"{stem}-{output.index + 1}.png"
                while arcname in used:  # two photos with the same name
                    arcname = f"{Path(arcname).stem}-{view.id}.png"
                used.add(arcname)
                archive.write(output.path, arcname)
    return buffer.getvalue()
