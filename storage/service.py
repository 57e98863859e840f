"""Run the pipeline for a recorded generation and record its outcome.

One code path for the job worker (storage.jobs) and synchronous callers (``backdrop
replace``, re-runs): the input comes back from the image store, so a re-run sees exactly the
bytes the first run saw; results, cutout and mask go to the store with the generation's
parameters in their PNG text chunks; the row ends done, failed (with the error) or cancelled.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import threading
import time
import uuid
from collections.abc import Callable
from importlib import metadata
from typing import Any

from PIL import Image as PILImage
from sqlalchemy import select, update

from core.errors import BackdropError, Cancelled
from core.request import GenerationRequest
from storage import history
from storage.db import Database, get_database, utcnow
from storage.models import Generation, Output

SAMPLERS = {"dpmpp": "DPM++ 2M", "ddim": "DDIM", "euler_a": "Euler a"}
LIBRARIES = ("torch", "diffusers", "transformers", "accelerate", "rembg", "onnxruntime", "pillow", "numpy", "sqlalchemy")
PROGRESS_INTERVAL_S = 0.25  # at most this often a progress write or cancel-flag read hits the database

# Workers (and synchronous runs) alive in this process: recover_stale must not fail their jobs.
LIVE_WORKERS: set[str] = set()
_live_lock = threading.Lock()

Runner = Callable[..., Any]  # core.pipeline.run's signature


def worker_identity(kind: str = "worker") -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{kind}-{uuid.uuid4().hex[:8]}"


def set_live(identity: str, live: bool) -> None:
    with _live_lock:
        (LIVE_WORKERS.add if live else LIVE_WORKERS.discard)(identity)


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def parameters_text(request: GenerationRequest, generation_id: int, width: int, height: int, variant: int = 0) -> str:
    """The AUTOMATIC1111 ``parameters`` text: prompt, negative prompt, then ``Key: value`` pairs.
    Variant i was generated with seed + i (core.generate), written as A1111 writes batch seeds."""
    fields = [
        ("Steps", request.steps), ("Sampler", SAMPLERS.get(request.scheduler, request.scheduler)),
        ("CFG scale", request.guidance), ("Seed", request.seed + variant), ("Size", f"{width}x{height}"),
        ("Model", request.inpaint_model), ("ControlNet", f"{request.controlnet_model} ({request.control_scale})"),
        ("Background", request.background), ("Backdrop generation", generation_id),
    ]
    if request.background_spec.kind != "ai":
        fields = [f for f in fields if f[0] in ("Size", "Background", "Backdrop generation")]
    pairs = ", ".join(f"{key}: {_a1111_value(value)}" for key, value in fields)
    return f"{request.prompt}\nNegative prompt: {request.negative_prompt}\n{pairs}"


def _a1111_value(value: Any) -> str:
    """Quoted as AUTOMATIC1111 quotes: JSON string when the value holds a comma, colon or newline."""
    text = str(value)
    return json.dumps(text) if any(c in text for c in ",:\n") else text


def pnginfo_for(request: GenerationRequest, generation_id: int, image: PILImage.Image, variant: int = 0) -> dict[str, str]:
    return {
        "parameters": parameters_text(request, generation_id, image.width, image.height, variant),
        "backdrop_generation_id": str(generation_id),
    }


class _Hooks:
    """Progress writes and cancel reads against the generation row, throttled."""

    def __init__(self, db: Database, generation_id: int, progress=None, cancel=None):
        self.db, self.id, self.user_progress, self.user_cancel = db, generation_id, progress, cancel
        self._last_write = 0.0
        self._last_stage = None
        self._last_read = 0.0
        self._cancelled = False

    def progress(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if stage != self._last_stage or done >= total or now - self._last_write >= PROGRESS_INTERVAL_S:
            self._last_write, self._last_stage = now, stage
            with self.db.session() as session:
                session.execute(
                    update(Generation).where(Generation.id == self.id).values(
                        progress_stage=stage[:32], progress_step=done, progress_total=total, heartbeat_at=utcnow())
                )
        if self.user_progress:
            self.user_progress(stage, done, total)

    def cancel(self) -> bool:
        if self.user_cancel and self.user_cancel():
            return True
        now = time.monotonic()
        if not self._cancelled and now - self._last_read >= PROGRESS_INTERVAL_S:
            self._last_read = now
            with self.db.Session() as session:
                self._cancelled = bool(session.scalar(
                    select(Generation.cancel_requested).where(Generation.id == self.id)))
        return self._cancelled


def finish(db: Database, generation_id: int, status: str, error: str | None = None) -> None:
    with db.session() as session:
        session.execute(
            update(Generation).where(Generation.id == generation_id).values(
                status=status, error=error, finished_at=utcnow(), cancel_requested=False)
        )


def error_text(exc: BaseException) -> str:
    """User errors carry their own message; anything else names its type too."""
    return str(exc) if isinstance(exc, BackdropError) else f"{type(exc).__name__}: {exc}"


def execute(generation_id: int, db: Database | None = None, run: Runner | None = None, progress=None,
            cancel=None, registry=None):
    """Run a recorded generation (already marked running) and record the outcome. Returns the
    GenerationResult; re-raises the pipeline's error after recording it."""
    from core.imaging import load_image

    db = db or get_database()
    if run is None:
        from core.pipeline import run
    view = history.get(generation_id, db=db)
    hooks = _Hooks(db, generation_id, progress, cancel)
    try:
        image = load_image(db.images.read(view.input_sha256))
        mask = db.images.open(view.user_mask_sha256).convert("L") if view.user_mask_sha256 else None
        result = run(image, view.generation_request(), mask=mask, progress=hooks.progress, cancel=hooks.cancel,
                     registry=registry)
    except Cancelled as exc:
        finish(db, generation_id, "cancelled", str(exc) or "cancelled")
        raise
    except BaseException as exc:
        finish(db, generation_id, "failed", error_text(exc))
        raise
    try:
        record_result(db, generation_id, result)
    except BaseException as exc:  # e.g. a full disk: the row must not stay "running"
        finish(db, generation_id, "failed", f"recording the result failed: {error_text(exc)}")
        raise
    return result


def record_result(db: Database, generation_id: int, result) -> None:
    """Store every output and mark the generation done, in one transaction."""
    with db.session() as session:
        row = session.get(Generation, generation_id)
        request = (result.request or GenerationRequest.from_dict(row.request)).replace(
            input_sha256=row.input_sha256, mask_sha256=row.user_mask_sha256 or "")
        for index, image in enumerate(result.images):
            stored = history.store_image(session, db, image, pnginfo_for(request, generation_id, image, index))
            session.add(Output(generation_id=generation_id, kind="result", index=index, image_sha256=stored.sha256))
        cutout = history.store_image(session, db, result.cutout)  # untagged: equal cut-outs share a file
        session.add(Output(generation_id=generation_id, kind="cutout", index=0, image_sha256=cutout.sha256))
        mask = history.store_image(session, db, result.mask.convert("L"))
        session.add(Output(generation_id=generation_id, kind="mask", index=0, image_sha256=mask.sha256))
        row.mask_sha256 = mask.sha256
        row.request = request.to_dict()
        row.status, row.error, row.finished_at = "done", None, utcnow()
        row.timings = {k: float(v) for k, v in result.timings.items()}
        row.device = result.device
        row.models = dict(result.models)
        row.warnings = list(result.warnings)
        row.versions = library_versions()
        row.progress_step = row.progress_total = max(row.progress_total, 1)
        row.cancel_requested = False


def generate_and_record(image: PILImage.Image | bytes | str | os.PathLike, request: GenerationRequest,
                        mask: PILImage.Image | bytes | str | os.PathLike | None = None, parent_id: int | None = None,
                        progress=None, cancel=None, registry=None, db: Database | None = None,
                        run: Runner | None = None):
    """Run one generation now, in this thread, and record it. Returns (generation_id, result);
    a failure is recorded (status failed, error text) and re-raised."""
    db = db or get_database()
    identity = worker_identity("sync")
    set_live(identity, True)
    try:
        generation_id = history.create(request, image, mask, parent_id, status="running", worker=identity, db=db)
        result = execute(generation_id, db=db, run=run, progress=progress, cancel=cancel, registry=registry)
    finally:
        set_live(identity, False)
    return generation_id, result


def stored_results(generation_id: int, db: Database | None = None) -> list[PILImage.Image]:
    """The recorded result PNGs, loaded: each carries its ``parameters`` text in ``image.text``
    (write it again with ``storage.images.png_text_info(image)``)."""
    db = db or get_database()
    return [db.images.open(o.sha256) for o in history.get(generation_id, db=db).results]


def rerun_inputs(generation_id: int, db: Database | None = None, **changes: Any):
    """(request, input bytes, user mask or None) to run a stored generation again with ``changes``."""
    db = db or get_database()
    view = history.get(generation_id, db=db)
    request = view.generation_request().replace(**changes)
    mask = db.images.open(view.user_mask_sha256).convert("L") if view.user_mask_sha256 else None
    return request, db.images.read(view.input_sha256), mask


def rerun(generation_id: int, db: Database | None = None, progress=None, cancel=None, registry=None,
          run: Runner | None = None, **changes: Any):
    """Run a stored generation again (a remix when ``changes`` edit fields such as seed or prompt),
    recorded as its child. Same request, seed and device give the identical image."""
    db = db or get_database()
    request, image, mask = rerun_inputs(generation_id, db=db, **changes)
    return generate_and_record(image, request, mask, parent_id=generation_id, progress=progress, cancel=cancel,
                               registry=registry, db=db, run=run)
