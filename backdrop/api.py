"""The HTTP API (``backdrop serve``): generations over the same storage and job queue as the app.

Create a generation (multipart: the photo, an optional mask and background picture, the
request's fields as JSON), follow its status and progress, download its images, list and search
the history, re-run, cancel and delete. Input is checked exactly as the app and the command line
check it (core.request, core.imaging) before anything is recorded: bad input is a 4xx answer
``{"detail": "..."}`` and leaves no trace. Whatever serves the queue (a worker thread here, or
Ray workers: storage.serving.start_serving) runs the jobs; the API submits and reads. Before any
route runs, backdrop.guard refuses requests under another name or from a web page of another
origin, and bodies past their route's limit; every route asks ``backdrop.auth.current_user``
who is calling.
"""

from __future__ import annotations

import copy
import json
from contextlib import asynccontextmanager
from importlib import metadata
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, File, Form, HTTPException, Path, Query, Request, Response, UploadFile
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from backdrop import api_schema as schema
from backdrop.auth import current_user
from backdrop.guard import BodyLimit, BrowserGuard
from storage.users import User
from core.errors import BackdropError, InputError, ModelMissingError
from core.look.backgrounds import KINDS
from core.look.framing import with_size_preset
from core.request import FIELD, GenerationRequest, field_values, upgrade
from storage import access, history, previews
from storage.errors import StorageError
from storage.jobs import JobQueue
from storage.lifecycle import STATUSES, Status
from storage.serving import Executor

PREFIX = schema.PREFIX
MAX_UPLOAD_BYTES = 50 * 1024 * 1024  # per file, as the app's uploads (.streamlit/config.toml's maxUploadSize)
MAX_JSON_BYTES = 256 * 1024  # the request's fields as JSON: both prompts at their longest fit, however escaped
MAX_ID = history.MAX_ID  # the largest integer SQLite and PostgreSQL store: ids and offsets past it are refused (422)
MAX_SEARCH = 1000  # characters of a search
GenerationId = Annotated[int, Path(ge=1, le=MAX_ID, description="the generation's id")]
IMAGE_KINDS = ("result", "cutout", "mask")
_ERRORS = {code: {"model": schema.Error} for code in (400, 401, 403, 404, 409, 413, 415, 422, 503)}

router = APIRouter(prefix=PREFIX, dependencies=[Depends(current_user)], responses=_ERRORS)


def create_app(queue: JobQueue | None = None, executor: Executor | None = None, listen: str = "127.0.0.1",
               allowed_hosts: tuple[str, ...] = (), policy: access.Policy | None = None) -> FastAPI:
    """The API over ``queue`` (default: the configured database); ``executor`` (what serves the
    queue, or None when another process does) is woken on each submission and stopped when the
    server stops. ``listen`` (the address it is served on) and ``allowed_hosts`` are the names it
    answers to (backdrop.guard); ``policy``: who may call (default: read from the secrets files
    now, once)."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        if executor is not None:
            executor.stop(30)

    app = FastAPIOffline(title="Backdrop", version=metadata.version("backdrop"), lifespan=lifespan,  # /docs: no CDN
                         description="Replace the background of photos: create generations, follow them, download their "
                                     "images, search the history. Errors are `{\"detail\": \"...\"}`.")
    app.state.queue = queue or (executor.queue if executor is not None else JobQueue())
    app.state.executor = executor
    app.state.access = policy or access.Policy.read()
    app.include_router(router)
    app.get(f"{PREFIX}/health", response_model=schema.Health, tags=["server"])(health)
    app.add_exception_handler(InputError, _answer(422))
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(history.NotFound, _answer(404))
    app.add_exception_handler(StorageError, _answer(503))  # the data folder or the database, not the request
    app.add_exception_handler(ModelMissingError, _answer(503))  # this server's weights, not the request
    app.add_exception_handler(BackdropError, _answer(400))
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.openapi = lambda: _openapi(app)
    app.add_middleware(BodyLimit, limit_for=_body_limit)
    app.add_middleware(BrowserGuard, listen=listen, allowed_hosts=allowed_hosts)  # the outermost: first to look
    return app


# ---- errors: one shape, a readable message ---------------------------------------------------

def _answer(status: int):
    """A handler answering ``status`` with the error's own message (BackdropErrors say what to do)."""

    def handler(_request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=status)

    return handler


async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """FastAPI's answer, with a 405's ``Allow`` naming every method the document gives the path:
    Starlette names only those of the first route whose path matched (GET, where DELETE is
    another route)."""
    if exc.status_code == 405:
        methods = set()
        for template, operations in _base_openapi(request.app)["paths"].items():
            if compile_path(template)[0].match(request.url.path):
                methods |= {method.upper() for method in operations} | ({"HEAD"} if "get" in operations else set())
        exc.headers = {**(exc.headers or {}), "Allow": ", ".join(sorted(methods))}
    return await http_exception_handler(request, exc)


def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
    """FastAPI's own checks (a missing part, a query value of the wrong type) as one sentence."""
    parts = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path"))
        parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else error.get("msg", "invalid"))
    return JSONResponse({"detail": "; ".join(parts) or "invalid request"}, status_code=422)


# ---- what the routes share -------------------------------------------------------------------

def _queue(request: Request) -> JobQueue:
    return request.app.state.queue


def _wake(request: Request) -> None:
    executor = request.app.state.executor
    if executor is not None:
        executor.wake()


def _body_limit(method: str, path: str) -> int:
    """The largest body a route takes: the create form carries up to three files and the fields."""
    if method == "POST" and path.rstrip("/") == f"{PREFIX}/generations":
        return 3 * MAX_UPLOAD_BYTES + 2 * MAX_JSON_BYTES
    return MAX_JSON_BYTES


def _too_large(what: str, limit: int) -> HTTPException:
    shown = f"{limit / 2**20:g} MB" if limit >= 2**20 else f"{limit / 2**10:g} KB"
    return HTTPException(413, f"the {what} is larger than the limit of {shown}")


def _read(upload: UploadFile, what: str, limit: int | None = None) -> bytes:
    limit = limit or MAX_UPLOAD_BYTES
    data = upload.file.read(limit + 1)
    if len(data) > limit:
        raise _too_large(what, limit)
    if not data:
        raise InputError(f"the {what} is an empty file")
    return data


def _json(text: str | bytes, what: str) -> Any:
    """JSON of at most MAX_JSON_BYTES, nested no deeper than Python's parser goes (422, not a
    RecursionError)."""
    if len(text) > MAX_JSON_BYTES:
        raise _too_large(what, MAX_JSON_BYTES)
    try:
        return json.loads(text) if text.strip() else {}
    except RecursionError:
        raise InputError(f"{what} is nested too deeply to be a request's fields") from None
    except ValueError as exc:
        raise InputError(f"{what} is not valid JSON: {exc}") from None


def request_fields(values: Any, user: User | None) -> dict[str, Any]:
    """The fields a client gave (core.request.field_values); ``version`` (the schema's) upgrades
    a request of an older version, as stored ones are, but only the fields the client named are
    kept: a field added since that version stays as the base has it (the server's settings, or
    the generation re-run), where a stored request, which names every field, gets the upgrade's
    value. Models and the device are chosen per request only by an admin (or without accounts):
    anyone else may name the server's settings (the Models page's, which apply to everyone), no
    other model or folder of this server. ``size_preset`` fills the framing fields it does
    not name (core.look.framing)."""
    from storage.settings import SETTINGS, base_request

    preset = None
    if isinstance(values, dict):
        values = dict(values)
        preset = values.pop("size_preset", None)
        if preset is not None and not isinstance(preset, str):
            raise InputError(f"size_preset must be the name of a size preset (got {preset!r})")
    if isinstance(values, dict) and "version" in values:
        named = set(values) - {"version"}
        values = {name: value for name, value in upgrade(values).items() if name in named}
    fields = field_values(with_size_preset(values, preset) if isinstance(values, dict) else values)
    if user is not None and not user.admin:
        server = base_request()
        chosen = sorted(name for name, value in fields.items() if name in SETTINGS and value != getattr(server, name))
        if chosen:
            raise HTTPException(403, f"only an admin may choose {', '.join(chosen)} per request: this server uses "
                                     + ", ".join(f"{name} {getattr(server, name)!r}" for name in chosen)
                                     + "; leave them out (an admin sets them on the Models page)")
    return fields


def parse_request(text: str | bytes, user: User | None = None) -> GenerationRequest:
    """The request from its JSON: only the fields that differ from the defaults (the model and
    device fields default to this server's saved settings, as in the app), checked by
    request_fields and core.request."""
    from storage.settings import base_request

    return base_request().with_fields(request_fields(_json(text, "the request"), user))


async def _remix_fields(request: Request) -> Any:
    """The re-run's JSON body (fields to change), or None when it has none."""
    body = await request.body()  # at most MAX_JSON_BYTES: backdrop.guard.BodyLimit
    if not body.strip():
        return None
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json" and not kind.endswith("+json"):
        raise HTTPException(415, "the body must be JSON (Content-Type: application/json): the fields to change")
    return _json(body, "the body")


# ---- routes ------------------------------------------------------------------------------------

def health(request: Request) -> dict[str, Any]:
    """Whether the server is up, what runs its queue and how much is waiting."""
    executor = request.app.state.executor
    return {"status": "ok", "executor": executor.kind if executor else "none",
            "workers": executor.worker_count() if executor else 0, "pending": _queue(request).pending()}


@router.post("/generations", status_code=202, response_model=schema.Generation, tags=["generations"],
             summary="Create a generation")
def create_generation(request: Request, response: Response,
                      photo: UploadFile = File(description="the photo (JPEG, PNG, WebP, ...)"),
                      fields: str | UploadFile = Form("{}", alias="request",
                                                      description="the request's fields as JSON (the GenerationRequest "
                                                                  "schema); only those that differ from the defaults"),
                      mask: UploadFile | None = File(None, description="your own mask (white = subject) instead of "
                                                                       "the automatic one: the photo's size"),
                      picture: UploadFile | None = File(None, description="the background picture, for the "
                                                                          "`image` background"),
                      user: User | None = Depends(current_user)) -> dict[str, Any]:
    """Queue a generation; answers at once with its id and status (queued). Follow it with GET
    on the generation, download its images when it is done."""
    from core.imaging import load_image, load_mask

    if not isinstance(fields, str):  # sent as a JSON file part (Swagger UI, curl -F request=@fields.json)
        fields = _read(fields, "request", MAX_JSON_BYTES)
    generation_request = parse_request(fields, user)
    data = _read(photo, "photo")
    image = load_image(data, what="photo")
    mask_image = load_mask(_read(mask, "mask"), image.size) if mask is not None else None
    picture_data = _read(picture, "background picture") if picture is not None else None
    queue = _queue(request)
    generation_id = queue.submit(generation_request, data, mask_image, picture=picture_data, user=user, cut_out=True)
    created = queue.get(generation_id, user=user)  # as created: read before a woken worker can claim it
    _wake(request)
    response.headers["Location"] = f"{PREFIX}/generations/{generation_id}"
    return schema.Generation.from_view(created)


@router.get("/generations", response_model=schema.GenerationList, tags=["generations"],
            summary="List and search generations")
def list_generations(request: Request, search: str | None = Query(None, max_length=MAX_SEARCH,
                                                                 description="text in the prompt"),
                     status: list[Literal[STATUSES]] | None = Query(None, description="one or more statuses"),
                     background: Literal[tuple(KINDS)] | None = Query(None, description="background kind"),
                     favourite: bool | None = Query(None), limit: int = Query(50, ge=1, le=500),
                     offset: int = Query(0, ge=0, le=MAX_ID),
                     user: User | None = Depends(current_user)) -> dict[str, Any]:
    """Newest first, as the app's History."""
    filters = {"search": search, "status": status, "background": background, "favourite": favourite}
    db = _queue(request).db
    views = history.list_generations(limit=limit, offset=offset, db=db, user=user, **filters)
    shown = previews.present(db, [view.id for view in views if view.status == Status.RUNNING])
    return {"total": history.count_generations(db=db, user=user, **filters),
            "items": [schema.Generation.from_view(view, preview=view.id in shown) for view in views]}


@router.get("/generations/{generation_id}", response_model=schema.Generation, tags=["generations"],
            summary="A generation: status, progress, request, what ran, its images")
def get_generation(request: Request, generation_id: GenerationId,
                   user: User | None = Depends(current_user)) -> dict[str, Any]:
    queue = _queue(request)
    view = queue.get(generation_id, user=user)
    return schema.Generation.from_view(view, preview=view.status == Status.RUNNING
                                       and bool(previews.present(queue.db, [view.id])))


@router.get("/generations/{generation_id}/preview", tags=["generations"], summary="The live preview",
            response_class=Response, responses={200: {"content": {"image/jpeg": {}}, "description": "the JPEG"}})
def live_preview(request: Request, generation_id: GenerationId,
                 user: User | None = Depends(current_user)) -> Response:
    """While an AI background runs: the estimate of the result after its latest diffusion step,
    composited with the subject (a small JPEG, approximate colours unless TAESD is installed).
    ``X-Backdrop-Step`` and ``X-Backdrop-Steps`` say which step it shows. Kept only while the
    generation runs."""
    queue = _queue(request)
    view = queue.get(generation_id, user=user)
    shown = previews.latest(queue.db, generation_id) if view.status == Status.RUNNING else None
    if shown is None:
        why = "it has no preview yet" if view.status == Status.RUNNING else "previews are kept only while it runs"
        raise HTTPException(409, f"generation {generation_id} is {view.status}: {why}")
    return Response(shown.jpeg, media_type="image/jpeg", headers={
        "Cache-Control": "no-store", "X-Backdrop-Step": str(shown.step), "X-Backdrop-Steps": str(shown.total)})


@router.get("/generations/{generation_id}/images/{kind}", tags=["generations"], summary="Download an image",
            response_class=Response, responses={200: {"content": {"image/png": {}}, "description": "the PNG"}})
def download_image(request: Request, generation_id: GenerationId, kind: Literal[IMAGE_KINDS],
                   variant: int = Query(1, ge=1, le=int(FIELD["variants"].high),
                                        description="which result, for several AI variants"),
                   user: User | None = Depends(current_user)) -> Response:
    """The full-resolution PNG: a result (carrying the generation's parameters in its text
    chunks), the cut-out (with alpha) or the mask."""
    queue = _queue(request)
    view = queue.get(generation_id, user=user)
    if view.status != Status.DONE:
        why = f" ({view.error})" if view.error else ""
        raise HTTPException(409, f"generation {generation_id} is {view.status}{why}: it has no images")
    output = view.output(kind, variant - 1 if kind == "result" else 0)
    if output is None:
        raise HTTPException(404, f"generation {generation_id} has {len(view.results)} result(s), no variant {variant}")
    return Response(queue.db.images.read(output.sha256), media_type=f"image/{output.format}", headers={
        "Content-Disposition": f'attachment; filename="backdrop-{generation_id}-{kind}'
                               f'{f"-{variant}" if kind == "result" else ""}.{output.format}"'})


@router.post("/generations/{generation_id}/rerun", status_code=202, response_model=schema.Generation,
             tags=["generations"], summary="Re-run or remix a generation", openapi_extra={"requestBody": {
                 "required": False, "description": "fields to change (a remix); none: the same request, seed included",
                 "content": {"application/json": {"schema": {"type": "object"}}}}})
def rerun_generation(request: Request, response: Response, generation_id: GenerationId,
                     changes: Any = Depends(_remix_fields),
                     user: User | None = Depends(current_user)) -> dict[str, Any]:
    """Queue the generation again from its stored photo, mask and picture, as its child; the
    same request and seed give the same image."""
    queue = _queue(request)
    queue.get(generation_id, user=user)  # 404 before the body's fields are looked at
    new_id = queue.resubmit(generation_id, request_fields(changes or {}, user), user=user)
    created = queue.get(new_id, user=user)  # as created: read before a woken worker can claim it
    _wake(request)
    response.headers["Location"] = f"{PREFIX}/generations/{new_id}"
    return schema.Generation.from_view(created)


@router.post("/generations/{generation_id}/cancel", response_model=schema.Cancelled, tags=["generations"],
             summary="Cancel a queued or running generation")
def cancel_generation(request: Request, generation_id: GenerationId,
                      user: User | None = Depends(current_user)) -> dict[str, Any]:
    """A queued generation is cancelled at once; a running one stops at its next step."""
    queue = _queue(request)
    return {"id": generation_id, "status": queue.cancel(generation_id, user=user)}


@router.delete("/generations/{generation_id}", status_code=204, response_class=Response, tags=["generations"],
               summary="Delete a generation and the files only it used")
def delete_generation(request: Request, generation_id: GenerationId,
                      user: User | None = Depends(current_user)) -> Response:
    queue = _queue(request)
    try:
        history.delete(generation_id, db=queue.db, user=user)
    except history.NotFound:
        raise
    except BackdropError as exc:  # running: cancel it first
        raise HTTPException(409, str(exc)) from None
    return Response(status_code=204)


# ---- the OpenAPI document ------------------------------------------------------------------------

def _openapi(app: FastAPI) -> dict[str, Any]:
    """The document for this server as it is now: without accounts no request carries a token
    (one sent is refused), so no operation lists the bearer token as its security."""
    document = _base_openapi(app)
    if app.state.access.mode(app.state.queue.db) != "local":
        return document
    document = copy.deepcopy(document)
    for operations in document["paths"].values():
        for operation in operations.values():
            operation.pop("security", None)
    return document


def _base_openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, with the request's JSON Schema (generated from core.request.FIELDS)
    where the request is given: the create form's ``request`` part and the re-run body."""
    if app.openapi_schema:
        return app.openapi_schema
    document = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    fields = schema.RequestFields.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(fields.pop("$defs", {}))
    schemas["GenerationRequest"] = fields
    ref = {"$ref": "#/components/schemas/GenerationRequest"}
    create = document["paths"][f"{PREFIX}/generations"]["post"]["requestBody"]["content"]["multipart/form-data"]
    form = schemas[create["schema"]["$ref"].rsplit("/", 1)[1]]
    form["properties"]["request"] = {**ref, "description": form["properties"]["request"].get("description", "")}
    create["encoding"] = {"request": {"contentType": "application/json"}}
    rerun = document["paths"][f"{PREFIX}/generations/{{generation_id}}/rerun"]["post"]
    rerun["requestBody"]["content"]["application/json"]["schema"] = ref
    app.openapi_schema = document
    return document
