"""Run the pipeline for a recorded generation and record its outcome.

``execute`` is the one way a job runs, whoever holds it (storage.lifecycle): a queue worker that
claimed it (storage.jobs, a Ray actor), a synchronous run that created it running
(``generate_and_record``: ``backdrop replace``, ``rerun``) or a Ray batch task that took it over.
The input comes back from the image store, so a re-run sees exactly the bytes the first run saw;
results, cutout and mask go to the store with the generation's parameters in their PNG text
chunks; the row ends done, failed (with the error) or cancelled, through storage.lifecycle.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from PIL import Image as PILImage
from sqlalchemy import select

from core.config import config
from core.engine.preview import LivePreview
from core.engine.recipes import RECIPE_SCHEDULERS, sampling
from core.errors import BackdropError, Cancelled, InputError, OutputError
from core.files import StagedFiles
from core.png_settings import REQUEST_CHUNK, request_text
from core.request import SCHEDULERS, GenerationRequest
from storage import admission, history, lifecycle, previews
from storage.db import Database, get_database
from storage.models import Generation, Output
from storage.settings import prompt_denylist

LIBRARIES = ("torch", "diffusers", "transformers", "accelerate", "peft", "rembg", "onnxruntime", "pillow", "numpy",
             "sqlalchemy")
PROGRESS_INTERVAL_S = 0.25  # at most this often a progress write or cancel-flag read hits the database

log = logging.getLogger(__name__)
Runner = Callable[..., Any]  # core.pipeline.run's signature


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def parameters_text(request: GenerationRequest, record: dict[str, Any], generation_id: int, width: int, height: int,
                    variant: int = 0) -> str:
    """AUTOMATIC1111's ``parameters`` text of what ran: the prompt, the negative prompt the text
    encoder read (the quality negative included), then ``Key: value`` pairs. ``Size`` is the
    size the sampler worked at, the bucket (replaying it elsewhere needs that; version-1
    generations recorded it as ``work_size``), ``Output size`` the image's.
    Variant i was generated with seed + i, written as A1111 writes batch seeds. When the prompt
    that ran is not the one typed (the prompt assistant wrote it, or the deny-list took words
    out), the typed one follows as ``Prompt as typed``, with the assistant's model and revision
    and what was removed. Backgrounds that are not AI have no prompt and no sampler: only their
    sizes and background."""
    fields: list[tuple[str, Any]] = [("Background", request.background), ("Backdrop generation", generation_id)]
    if not request.background_spec.declared.generated:
        return _a1111_pairs([("Size", f"{width}x{height}"), *fields])
    work = record["bucket"].split("x") if "bucket" in record else record.get("work_size") or [width, height]
    plan = sampling(request)  # fast mode: its recipe's
    name = SCHEDULERS.get(plan.scheduler) or RECIPE_SCHEDULERS[plan.scheduler][1]
    sampler = [("Steps", plan.steps), ("Sampler", name), ("CFG scale", plan.guidance),
               ("Seed", request.seed + variant), ("Size", f"{work[0]}x{work[1]}"), ("Output size", f"{width}x{height}"),
               ("Model", request.inpaint_model)]
    if plan.recipe is not None:
        sampler.append(("Fast mode", f"{plan.recipe.label} ({plan.lora})"))
    if request.tiny_vae:
        sampler.append(("VAE", request.tiny_vae_model))
    if (plan.scheduler == "ddim" or plan.eta) and "eta" in record:
        sampler.append(("Eta", record["eta"]))
    if record.get("depth_control"):
        sampler.append(("ControlNet", f"{request.controlnet_model} ({request.control_scale})"))
    prompt = record.get("prompt", request.prompt)
    if prompt != request.prompt:
        sampler.append(("Prompt as typed", request.prompt))
    if "prompt_assistant" in record:
        assistant = record["prompt_assistant"]
        sampler += [("Prompt assistant", assistant["model"]), ("Prompt assistant revision", assistant["revision"])]
    removed = [*record.get("prompt_removed", ()), *record.get("prompt_assistant", {}).get("removed_after", ())]
    if removed:
        sampler.append(("Removed from prompt", ", ".join(dict.fromkeys(removed))))
    negative = record.get("negative_prompt", request.negative_prompt)
    lines = [prompt] + ([f"Negative prompt: {negative}"] if negative else [])
    return "\n".join(lines + [_a1111_pairs(sampler + fields)])


def _a1111_pairs(pairs: list[tuple[str, Any]]) -> str:
    """``Key: value, ...``, values quoted as AUTOMATIC1111 quotes them: as a JSON string when
    they hold a comma, colon or newline."""
    return ", ".join(f"{key}: {_a1111_value(value)}" for key, value in pairs)


def _a1111_value(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if any(c in text for c in ",:\n") else text


def pnginfo_for(request: GenerationRequest, record: dict[str, Any], generation_id: int, image: PILImage.Image,
                variant: int = 0) -> dict[str, str]:
    """A result's text chunks: AUTOMATIC1111's parameters text (other tools read it), the
    generation's number, and the request whole (core.png_settings reads it back exactly)."""
    return {
        "parameters": parameters_text(request, record, generation_id, image.width, image.height, variant),
        "backdrop_generation_id": str(generation_id),
        REQUEST_CHUNK: request_text(request),
    }


class _Hooks:
    """Progress writes and cancel reads against the generation row, throttled; the live preview
    into storage.previews (core.engine.preview makes one at most every PROGRESS_INTERVAL_S)."""

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
            lifecycle.progress(self.db, self.id, stage, done, total)
        if self.user_progress:
            self.user_progress(stage, done, total)

    def preview(self, image: PILImage.Image, done: int, total: int) -> None:
        try:
            previews.save(self.db, self.id, image, done, total)
        except Exception:  # noqa: BLE001 - a busy or full database: the next step's preview tries again
            log.warning("step preview of generation %s not stored", self.id, exc_info=True)

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


def error_text(exc: BaseException) -> str:
    """What a failed generation says (History, the API, ``show``): a user error's own sentence;
    for anything else, a sentence naming the error and the first line of its message (a
    library's can run to pages; the traceback is in the log)."""
    if isinstance(exc, BackdropError):
        return str(exc)
    first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
    return (f"an unexpected error stopped it ({type(exc).__name__}{': ' + first if first else ''}); "
            "the server's log has the details")


Deliver = Callable[[dict[str, list[Path]]], StagedFiles]


def execute(generation_id: int, db: Database | None = None, run: Runner | None = None, progress=None,
            cancel=None, registry=None, deliver: Deliver | None = None):
    """Run a recorded generation (already marked running) and record the outcome. Returns the
    GenerationResult; re-raises the pipeline's error after recording it.

    ``deliver(stored)``, given the stored PNGs by kind (``result``, ``cutout``, ``mask``), stages
    the caller's copies of them (core.files.StagedFiles); they are written before the generation
    is marked done and renamed into place after, so a generation is never done without the files
    its caller asked for, and a failed one leaves none of them."""
    from core.imaging import load_image

    db = db or get_database()
    if run is None:
        from core.pipeline import run
    if config().compile:  # compiled steps are kept with the data it makes
        from core.engine.compile import use_cache_dir

        use_cache_dir(db.data_dir / "compile-cache")
    view = history.get(generation_id, db=db)
    hooks = _Hooks(db, generation_id, progress, cancel)
    live = LivePreview(hooks.preview, every_s=PROGRESS_INTERVAL_S, model=_preview_model(db))
    with lifecycle.Heartbeat(db, generation_id), _previews_cleared(db, generation_id):
        try:
            inputs = _inputs(db, view)
            result = run(load_image(inputs.image), inputs.request, mask=inputs.mask, progress=hooks.progress,
                         cancel=hooks.cancel, registry=registry,
                         picture=load_image(inputs.picture, what="background picture") if inputs.picture else None,
                         denylist=prompt_denylist(db.data_dir), preview=live)
        except Cancelled as exc:
            lifecycle.stop(db, generation_id, str(exc))
            raise
        except BaseException as exc:
            _log_unexpected(generation_id, exc)
            lifecycle.fail(db, generation_id, error_text(exc))
            raise
        staged = None
        try:
            staged = record_result(db, generation_id, result, deliver, hooks)
            if staged is not None:
                staged.publish()
        except Cancelled as exc:  # while its images were encoded (seconds at 12 MP): nothing kept
            lifecycle.stop(db, generation_id, str(exc))
            raise
        except BaseException as exc:
            if staged is not None:
                staged.discard()
            _log_unexpected(generation_id, exc)
            what = "writing the outputs" if isinstance(exc, OutputError) else "recording the result"
            recorded = lifecycle.fail(db, generation_id, f"{what} failed: {error_text(exc)}")
            if recorded and isinstance(exc, BackdropError):  # the caller is told what is kept
                raise type(exc)(f"{exc}; generation {generation_id} is recorded as failed") from exc
            raise
    return result


def _preview_model(db: Database) -> str | None:
    """The step-preview model the settings name (core.models.slots.PREVIEW_MODEL); None when the
    settings cannot be read (the preview then uses the linear map: it is never a reason to fail)."""
    from storage.settings import load_settings

    try:
        return load_settings(db.data_dir).get("preview_model")
    except BackdropError:
        return None


@contextmanager
def _previews_cleared(db: Database, generation_id: int):
    """The run's live preview is removed when it ends, whatever the outcome."""
    try:
        yield
    finally:
        try:
            previews.clear(db, generation_id)
        except Exception:  # noqa: BLE001 - the next run's clear removes it
            log.warning("step preview of generation %s not removed", generation_id, exc_info=True)


def _log_unexpected(generation_id: int, exc: BaseException) -> None:
    """A failure that is not the user's (a bug, the machine): its traceback goes to the log."""
    if not isinstance(exc, BackdropError):
        log.error("generation %s failed", generation_id, exc_info=exc)


def record_result(db: Database, generation_id: int, result, deliver: Deliver | None = None,
                  hooks: _Hooks | None = None) -> StagedFiles | None:
    """Store every output and mark the generation done, in one transaction; the caller's copies
    (``deliver``) are staged inside it, before the commit. Images stored by a transaction that
    then failed are removed again. Returns the staged copies, to publish. With ``hooks``, each
    image's encoding is a step of the ``save`` stage, and a cancel request before one stops it
    (Cancelled: nothing is kept).

    The images are encoded and written to the store before the transaction opens: the progress
    of the ``save`` stage is written through another connection, which a transaction already
    writing would lock out (SQLite: "database is locked" after the busy timeout, and a 12 MP
    job failed)."""
    created: list[str] = []
    encoded = [0, len(result.images) + 2]  # done, of: the results, the cut-out, the mask

    def store(image, pnginfo=None):
        if hooks is not None:
            if hooks.cancel():
                raise Cancelled("cancelled while its images were saved")
            hooks.progress("save", *encoded)
            encoded[0] += 1
        stored = db.images.put_image(image, pnginfo)
        if stored.created:
            created.append(stored.sha256)
        return stored

    staged = None
    try:
        with db.session() as session:
            request = GenerationRequest.from_dict(session.get(Generation, generation_id).request)
        results = [store(image, pnginfo_for(request, result.record, generation_id, image, index))
                   for index, image in enumerate(result.images)]
        cutout = store(result.cutout)  # untagged: equal cut-outs share a file
        mask = store(result.mask.convert("L"))
        with db.session() as session:
            row = session.get(Generation, generation_id)
            outputs = [("result", index, stored) for index, stored in enumerate(results)]
            for kind, index, stored in [*outputs, ("cutout", 0, cutout), ("mask", 0, mask)]:
                history.record_image(session, stored)
                session.add(Output(generation_id=generation_id, kind=kind, index=index, image_sha256=stored.sha256))
            paths = {"result": [db.images.path(stored.sha256) for stored in results],
                     "cutout": [db.images.path(cutout.sha256)], "mask": [db.images.path(mask.sha256)]}
            row.mask_sha256 = mask.sha256
            row.record = {**(row.record or {}), **result.record, "worker": lifecycle.describe(row.worker)}
            lifecycle.finish(row)
            row.timings = {k: float(v) for k, v in result.timings.items()}
            row.device = result.device
            row.models = dict(result.models)
            row.warnings = list(result.warnings)
            row.versions = library_versions()
            if deliver is not None:
                staged = deliver(paths)
        return staged
    except BaseException:
        if staged is not None:
            staged.discard()
        history.forget_unrecorded(db, created)
        raise


def generate_and_record(image: PILImage.Image | bytes | str | os.PathLike, request: GenerationRequest,
                        mask: PILImage.Image | bytes | str | os.PathLike | None = None, parent_id: int | None = None,
                        progress=None, cancel=None, registry=None, db: Database | None = None,
                        run: Runner | None = None, picture: bytes | str | os.PathLike | None = None,
                        deliver: Deliver | None = None, user=None, cut_out: bool = False):
    """Run one generation now, in this thread, and record it (owned by ``user``). Returns
    (generation_id, result); a failure is recorded (status failed, error text) and re-raised.
    What would fail it at once is refused before anything is recorded (storage.admission; with
    ``cut_out``, an automatic mask that finds no subject too).
    ``deliver``: as in ``execute``. The row carries this process's id and a heartbeat like a
    worker's job, so a run killed midway is recovered by any later start."""
    db = db or get_database()
    admission.check(request, image, mask, picture, cut_out=cut_out)  # refused before anything is recorded
    with lifecycle.Holder("sync") as holder:
        generation_id = history.create(request, image, mask, parent_id, status=lifecycle.Status.RUNNING,
                                       worker=holder.identity, db=db, picture=picture, user=user)
        result = execute(generation_id, db=db, run=run, progress=progress, cancel=cancel, registry=registry,
                         deliver=deliver)
    return generation_id, result


@dataclass(frozen=True)
class Inputs:
    """What a stored generation ran on: its request, the photo's bytes, the user's mask (or
    None: automatic) and an image background's picture bytes (or None)."""

    request: GenerationRequest
    image: bytes
    mask: PILImage.Image | None
    picture: bytes | None


def _inputs(db: Database, view: history.GenerationView) -> Inputs:
    mask = db.images.open(view.user_mask_sha256).convert("L") if view.user_mask_sha256 else None
    return Inputs(view.generation_request(), db.images.read(view.input_sha256), mask, _picture(db, view))


def _picture(db: Database, view: history.GenerationView) -> bytes | None:
    """The stored picture; for a generation recorded before pictures were stored (request
    version 1, ``image:PATH``), the file at its recorded path if it is still there."""
    if view.background_sha256:
        return db.images.read(view.background_sha256)
    path = view.record.get("background_path")
    if view.background_kind != "image" or not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InputError(f"generation {view.id}'s background picture was not stored (it was recorded before "
                         f"pictures were) and {path!r} cannot be read: {exc.strerror or exc}") from None


def rerun_inputs(generation_id: int, db: Database | None = None, user=None, **changes: Any) -> Inputs:
    """The inputs to run a stored generation (one ``user`` may see) again, with ``changes`` to its request."""
    db = db or get_database()
    inputs = _inputs(db, history.get(generation_id, db=db, user=user))
    request = inputs.request.replace(**changes)
    wanted = request.background_spec
    picture = inputs.picture if wanted.declared.picture else None
    if wanted.declared.picture and picture is None:
        raise InputError(f"generation {generation_id} has no background picture: an {wanted.kind} background needs one")
    return dataclasses.replace(inputs, request=request, picture=picture)


def rerun(generation_id: int, db: Database | None = None, progress=None, cancel=None, registry=None,
          run: Runner | None = None, deliver: Deliver | None = None, user=None, **changes: Any):
    """Run a stored generation again (a remix when ``changes`` edit fields such as seed or prompt),
    recorded as its child. Same request, seed and device give the identical image."""
    db = db or get_database()
    inputs = rerun_inputs(generation_id, db=db, user=user, **changes)
    return generate_and_record(inputs.image, inputs.request, inputs.mask, parent_id=generation_id, progress=progress,
                               cancel=cancel, registry=registry, db=db, run=run, picture=inputs.picture,
                               deliver=deliver, user=user)
