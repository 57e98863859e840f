"""The HTTP API end to end: `backdrop serve` on a loopback port with its own worker, driven by
curl and httpx as clients drive it: create, poll, download, list and search, re-run, cancel,
delete; bad input refused with a clear message and nothing recorded; the OpenAPI document made
from the request's field table; who may call it; the generation in the app's History."""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from sqlalchemy import func, select

from api_server import BACKDROP, free_port, serve, wait_finished
from core.look.framing import SIZE_PRESETS
from core.request import FIELD, FIELDS, SCHEMA_VERSION, GenerationRequest
from storage import history, service
from storage.db import Database
from storage.models import Generation, Image as ImageRow

SHOTS = Path(__file__).resolve().parents[1] / "test-artifacts" / "api"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("api") / "data"
    folder.mkdir()
    return folder


@pytest.fixture(scope="module")
def server(data_dir):
    with serve(data_dir) as (url, _process):
        yield url


@pytest.fixture(scope="module")
def db(data_dir):
    database = Database(None, data_dir)
    yield database
    database.dispose()


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server, timeout=60) as http:
        yield http


def _create(client: httpx.Client, photo: bytes, fields: dict | None = None, **files) -> httpx.Response:
    parts = {"photo": ("photo.png", photo, "image/png"), **files}
    return client.post("/v1/generations", files=parts, data={"request": json.dumps(fields or {})})


def _png(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image)


def _recorded(db: Database) -> tuple[int, int, int]:
    """Generations, image rows and image files: what bad input must leave unchanged."""
    with db.Session() as session:
        rows = (session.scalar(select(func.count(Generation.id))), session.scalar(select(func.count(ImageRow.sha256))))
    return (*rows, sum(1 for p in db.images.root.rglob("*") if p.is_file()))


@pytest.mark.slow
def test_curl_creates_a_generation_and_downloads_its_result(server, db, lemur_path, tmp_path):
    """The README's commands: the result is the recorded PNG, and its pixels are those of the
    same request run by a direct library call."""
    fields = '{"background": "color:#3366ff", "prompt": "api lemur"}'
    created = subprocess.run(["curl", "-sS", "--fail-with-body", "-F", f"photo=@{lemur_path}", "-F",
                              f"request={fields}", f"{server}/v1/generations"],
                             capture_output=True, text=True, timeout=60)
    assert created.returncode == 0, created.stdout + created.stderr
    body = json.loads(created.stdout)
    assert body["status"] == "queued" and body["request"]["background"] == "color:#3366ff"
    generation_id = body["id"]
    with httpx.Client(base_url=server, timeout=60) as client:
        body = wait_finished(client, generation_id)
    assert body["status"] == "done", body["error"]
    assert body["progress"]["fraction"] == 1.0 and body["timings"]["total"] > 0
    assert body["images"] == {"result": [f"/v1/generations/{generation_id}/images/result?variant=1"],
                              "cutout": f"/v1/generations/{generation_id}/images/cutout",
                              "mask": f"/v1/generations/{generation_id}/images/mask"}
    target = tmp_path / "result.png"
    downloaded = subprocess.run(["curl", "-sS", "--fail", "-o", str(target), server + body["images"]["result"][0]],
                                capture_output=True, text=True, timeout=60)
    assert downloaded.returncode == 0, downloaded.stderr
    view = history.get(generation_id, db=db)
    assert target.read_bytes() == view.output("result").path.read_bytes()
    with Image.open(target) as png:
        assert png.size == (680, 440) and png.text["backdrop_generation_id"] == str(generation_id)

    direct_id, direct = service.generate_and_record(lemur_path.read_bytes(), GenerationRequest(
        background="color:#3366ff", prompt="api lemur"), db=db)
    assert np.array_equal(_png(target.read_bytes()), np.asarray(direct.images[0]))
    same = history.get(direct_id, db=db)
    assert (same.output("cutout").sha256, same.mask_sha256) == (view.output("cutout").sha256, view.mask_sha256)
    ran_directly, ran_by_api = same.record.pop("worker"), view.record.pop("worker")  # who ran each: their own
    assert same.record == view.record and same.request == view.request
    assert ran_directly["kind"] == "the command line" and ran_by_api["kind"] == "the API's quick worker"


def test_bad_input_is_refused_with_a_message_and_nothing_recorded(client, db, lemur_path):
    photo = lemur_path.read_bytes()
    truncated = io.BytesIO()
    Image.open(lemur_path).convert("RGB").save(truncated, format="JPEG")
    small_mask = io.BytesIO()
    Image.new("L", (50, 50), 255).save(small_mask, format="PNG")
    before = _recorded(db)
    cases = [
        (b"not an image", {}, {}, "photo is not an image Pillow can read"),
        (truncated.getvalue()[:2000], {}, {}, "photo is damaged or truncated"),
        (photo, {"steps": 0}, {}, "steps must be from 1 to 150 (got 0)"),
        (photo, {"seed": "seven"}, {}, "seed must be a whole number (got 'seven')"),
        (photo, {"colour": "red"}, {}, "unknown field(s): colour"),
        (photo, {"background": "plaid"}, {}, "unknown background 'plaid'"),
        (photo, {"version": SCHEMA_VERSION + 1}, {}, f"version {SCHEMA_VERSION + 1}, written by a newer Backdrop"),
        (photo, {"background": "image"}, {}, "an image background needs its picture"),
        (photo, {}, {"picture": ("p.png", photo, "image/png")}, "a background picture was given for a 'color'"),
        (photo, {}, {"mask": ("m.png", small_mask.getvalue(), "image/png")}, "mask is 50x50 but the photo is 680x440"),
        (photo, {}, {"mask": ("m.png", b"", "image/png")}, "the mask is an empty file"),
    ]
    for data, fields, files, message in cases:
        answer = _create(client, data, fields, **files)
        assert answer.status_code == 422 and message in answer.json()["detail"], (message, answer.text)
    for form, message in [({"request": "{"}, "the request is not valid JSON"),
                          ({"request": '["ai"]'}, "the request must be an object")]:
        answer = client.post("/v1/generations", files={"photo": ("p.png", photo, "image/png")}, data=form)
        assert answer.status_code == 422 and message in answer.json()["detail"], answer.text
    answer = client.post("/v1/generations", data={"request": "{}"})
    assert answer.status_code == 422 and answer.json() == {"detail": "photo: Field required"}
    assert client.get("/v1/generations", params={"limit": 0}).status_code == 422
    assert client.get("/v1/generations/12345").json() == {"detail": "no generation 12345"}
    assert _recorded(db) == before, "bad input left a record or a file"


@pytest.mark.slow
def test_list_search_rerun_cancel_delete(client, db, lemur_path, tiny_models):
    photo = lemur_path.read_bytes()
    first = _create(client, photo, {"background": "color:#102030", "prompt": "searchable alpha"})
    assert first.status_code == 202 and first.headers["location"] == f"/v1/generations/{first.json()['id']}"
    a = first.json()["id"]
    b = _create(client, photo, {"background": "color:#203040", "prompt": "searchable beta"}).json()["id"]
    assert wait_finished(client, a)["status"] == wait_finished(client, b)["status"] == "done"
    listing = client.get("/v1/generations", params={"search": "searchable", "status": "done"}).json()
    assert listing["total"] == 2 and [item["id"] for item in listing["items"]] == [b, a]  # newest first
    assert [i["id"] for i in client.get("/v1/generations", params={"search": "beta"}).json()["items"]] == [b]
    assert client.get("/v1/generations", params={"search": "alpha", "status": "failed"}).json()["total"] == 0

    again = client.post(f"/v1/generations/{a}/rerun")
    assert again.status_code == 202
    rerun = wait_finished(client, again.json()["id"])
    assert rerun["status"] == "done" and rerun["parent_id"] == a and rerun["request"] == first.json()["request"]
    result = lambda gid, variant=1: client.get(f"/v1/generations/{gid}/images/result", params={"variant": variant})  # noqa: E731
    assert np.array_equal(_png(result(rerun["id"]).content), _png(result(a).content)), "same request, same image"
    remix = wait_finished(client, client.post(f"/v1/generations/{a}/rerun", json={"background": "color:#ff0000"}).json()["id"])
    assert remix["request"]["background"] == "color:#ff0000" and remix["parent_id"] == a
    assert not np.array_equal(_png(result(remix["id"]).content), _png(result(a).content))
    before = _recorded(db)
    for changes, message in [({"steps": 1000}, "steps must be from 1 to 150"), ({"nope": 1}, "unknown field(s): nope")]:
        answer = client.post(f"/v1/generations/{a}/rerun", json=changes)
        assert answer.status_code == 422 and message in answer.json()["detail"]
    assert _recorded(db) == before
    assert result(a, 2).json() == {"detail": f"generation {a} has 1 result(s), no variant 2"}

    # an AI background with the tiny models: refused deletion while running, then cancelled
    ai = _create(client, photo, {"background": "ai", "prompt": "a beach", "steps": 150, "device": "cpu",
                                 "inpaint_model": tiny_models["inpaint"], "controlnet_model": tiny_models["controlnet"],
                                 "depth_model": tiny_models["depth"]}).json()["id"]
    deadline = time.monotonic() + 120
    while True:
        progress = client.get(f"/v1/generations/{ai}").json()["progress"]
        if progress["stage"] == "generate" and progress["step"] >= 1:
            break
        assert time.monotonic() < deadline, progress
        time.sleep(0.1)
    assert 0 < progress["fraction"] < 1 and progress["total"] == 150
    refused = client.delete(f"/v1/generations/{ai}")
    assert refused.status_code == 409 and "running: cancel it first" in refused.json()["detail"]
    assert client.post(f"/v1/generations/{ai}/cancel").json() == {"id": ai, "status": "cancelled"}
    cancelled = wait_finished(client, ai)
    assert cancelled["status"] == "cancelled" and cancelled["progress"]["step"] < 150
    answer = result(ai)
    assert answer.status_code == 409 and answer.json()["detail"].startswith(f"generation {ai} is cancelled")

    assert client.delete(f"/v1/generations/{remix['id']}").status_code == 204
    assert client.get(f"/v1/generations/{remix['id']}").status_code == 404
    assert client.post(f"/v1/generations/{remix['id']}/cancel").status_code == 404


@pytest.mark.slow
def test_a_running_ai_generation_links_its_latest_preview(client, lemur_path, tiny_models):
    """While an AI background forms, its progress links the latest step preview: a small JPEG of
    the estimate composited with the subject, which changes from step to step; once the run has
    ended there is none (the link is null, the address answers 409)."""
    ai = _create(client, lemur_path.read_bytes(), {
        "background": "ai", "prompt": "a beach", "steps": 150, "device": "cpu", "inpaint_model": tiny_models["inpaint"],
        "controlnet_model": tiny_models["controlnet"], "depth_model": tiny_models["depth"]}).json()["id"]
    link = f"/v1/generations/{ai}/preview"

    def preview_after(step: int) -> tuple[dict, httpx.Response]:
        deadline = time.monotonic() + 120
        while True:
            body = client.get(f"/v1/generations/{ai}").json()
            if body["progress"]["preview"]:
                answer = client.get(body["progress"]["preview"])
                if answer.status_code == 200 and int(answer.headers["x-backdrop-step"]) >= step:
                    return body, answer
            assert body["status"] in ("queued", "running") and time.monotonic() < deadline, body
            time.sleep(0.1)

    try:
        body, first = preview_after(1)
        assert body["status"] == "running" and body["progress"]["preview"] == link
        assert first.headers["content-type"] == "image/jpeg" and first.headers["x-backdrop-steps"] == "150"
        assert first.headers["cache-control"] == "no-store"
        with Image.open(io.BytesIO(first.content)) as jpeg:
            assert jpeg.format == "JPEG" and jpeg.size == (384, 248)  # the photo's shape (680x440), 384 px long
        listed = client.get("/v1/generations", params={"status": "running"}).json()["items"]
        assert [item["progress"]["preview"] for item in listed if item["id"] == ai] == [link]
        _, later = preview_after(int(first.headers["x-backdrop-step"]) + 2)
        assert not np.array_equal(_png(later.content), _png(first.content)), "the preview changes as it forms"
    finally:
        client.post(f"/v1/generations/{ai}/cancel")
    ended = wait_finished(client, ai)
    assert ended["status"] == "cancelled" and ended["progress"]["preview"] is None
    gone = client.get(link)
    assert gone.status_code == 409 and gone.json()["detail"] == (
        f"generation {ai} is cancelled: previews are kept only while it runs")
    listed = client.get("/v1/generations", params={"status": "cancelled"}).json()["items"]
    assert [item["progress"]["preview"] for item in listed if item["id"] == ai] == [None]


def test_a_size_preset_fills_the_framing_fields_it_is_not_given(client, db, lemur_path):
    photo = lemur_path.read_bytes()
    made = _create(client, photo, {"size_preset": "feed-portrait", "fill": 0.5})
    assert made.status_code == 202, made.text
    request = made.json()["request"]
    assert (request["canvas"], request["fill"], request["anchor"], request["margin"]) == ("1080x1350", 0.5, "bottom", 0.06)
    assert "size_preset" not in request  # the values are stored, not the preset's name
    done = wait_finished(client, made.json()["id"])
    assert done["status"] == "done" and done["record"]["canvas"] == [1080, 1350]
    remix = client.post(f"/v1/generations/{done['id']}/rerun", json={"size_preset": "marketplace-square"})
    assert remix.status_code == 202 and remix.json()["request"]["canvas"] == "2000x2000"
    assert remix.json()["request"]["background"] == "color:#ffffff"
    wait_finished(client, remix.json()["id"])
    before = _recorded(db)
    for fields, message in [({"size_preset": "poster"}, "unknown size preset 'poster'"),
                            ({"size_preset": 3}, "size_preset must be the name of a size preset"),
                            ({"canvas": "16:9@20000"}, "each side must be from 16 to 10,000")]:
        answer = _create(client, photo, fields)
        assert answer.status_code == 422 and message in answer.json()["detail"], answer.text
    assert _recorded(db) == before


def test_openapi_documents_the_request_from_the_field_table(client):
    document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    properties = schemas["GenerationRequest"]["properties"]
    assert set(properties) == {"version", "size_preset", *FIELD}
    assert properties["size_preset"]["anyOf"][0]["enum"] == list(SIZE_PRESETS)
    for spec in FIELDS:
        prop = properties[spec.name]
        assert (prop["default"], prop["title"], prop["description"]) == (spec.default, spec.label, spec.help)
        if spec.low is not None:
            assert (prop["minimum"], prop["maximum"]) == (spec.low, spec.high), spec.name
        if spec.choices:
            assert prop["enum"] == list(spec.choices), spec.name
        if spec.env:
            assert prop["x-environment-variable"] == spec.env
    create = document["paths"]["/v1/generations"]["post"]["requestBody"]["content"]["multipart/form-data"]
    form = schemas[create["schema"]["$ref"].rsplit("/", 1)[1]]
    assert form["required"] == ["photo"] and form["properties"]["request"]["$ref"].endswith("/GenerationRequest")
    assert create["encoding"] == {"request": {"contentType": "application/json"}}
    rerun = document["paths"]["/v1/generations/{generation_id}/rerun"]["post"]["requestBody"]
    assert rerun["content"]["application/json"]["schema"]["$ref"].endswith("/GenerationRequest")
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger-ui" in docs.text and "/openapi.json" in docs.text


def test_docs_page_works_in_a_browser_without_a_network(server, client, lemur_path):
    """/docs as a person uses it: Swagger UI served by this server (no CDN: this machine has no
    network, nor have many that run Backdrop), the create form prefilled with the request's
    fields, a photo chosen, Execute: 202 and the generation is queued and done."""
    from playwright.sync_api import sync_playwright

    from test_browser import CHROMIUM, CHROMIUM_ARGS

    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (scripts/system-deps.sh installs it)")
    SHOTS.mkdir(parents=True, exist_ok=True)
    requested: list[str] = []
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, args=CHROMIUM_ARGS,
                                                                headless=True, viewport={"width": 1200, "height": 1800})
        context.set_default_timeout(60_000)
        page = context.new_page()
        page.on("request", lambda request: requested.append(request.url))
        page.goto(f"{server}/docs")
        page.get_by_text("Create a generation").click()
        page.get_by_role("button", name="Try it out").click()
        fields = page.locator("textarea").first
        assert json.loads(fields.input_value())["steps"] == FIELD["steps"].default  # the defaults, from the table
        fields.fill('{"background": "color:#00ff00", "prompt": "from the docs page"}')
        page.locator("input[type=file]").first.set_input_files(str(lemur_path))
        page.get_by_role("button", name="Execute").click()
        status = page.locator(".live-responses-table tbody .response-col_status").first
        status.wait_for()
        page.screenshot(path=str(SHOTS / "docs-create.png"))
        assert status.inner_text() == "202"
        context.close()
    assert requested and all(url.startswith(server) for url in requested), [u for u in requested if not u.startswith(server)]
    made = client.get("/v1/generations", params={"search": "from the docs page"}).json()["items"]
    assert len(made) == 1 and wait_finished(client, made[0]["id"])["status"] == "done"


def test_serve_refuses_addresses_beyond_this_machine_without_accounts(tmp_path):
    port = free_port()
    environment = {**os.environ, "BACKDROP_DATA_DIR": str(tmp_path / "data")}
    for host in ("0.0.0.0", "::"):
        proc = subprocess.run([str(BACKDROP), "serve", "--host", host, "--port", str(port)], capture_output=True,
                              text=True, timeout=60, cwd=tmp_path, env=environment)
        assert proc.returncode == 2 and proc.stdout == "", proc.stderr
        assert proc.stderr.startswith(f"error: Backdrop will not serve {host} without sign-in"), proc.stderr
        assert "backdrop users add NAME --admin" in proc.stderr
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def _asgi(app, client_host: str, method: str, path: str, token: str | None = None, **kw) -> httpx.Response:
    """One request to the ASGI app in this process (as uvicorn passes it), from ``client_host``."""
    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=(client_host, 40000))
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000", headers=headers) as http:
            return await http.request(method, path, **kw)

    return asyncio.run(call())


def _routes(app) -> list[tuple[str, str]]:
    """Every route but the health check, as (method, path with example ids)."""
    routes = [(method.upper(), path.replace("{generation_id}", "1").replace("{kind}", "result"))
              for path, operations in app.openapi()["paths"].items() for method in operations if path != "/v1/health"]
    assert len(routes) == 8
    return routes


def test_without_accounts_only_this_machine_is_answered(tmp_path, lemur_path, monkeypatch):
    """In process (the ASGI app, as uvicorn runs it) with a client address set: a client beyond
    loopback is refused on every route but the health check; uploads past the limit are 413; a
    storage failure (a full disk) is 503 with its message."""
    from backdrop import api
    from storage.errors import disk_full
    from storage.jobs import JobQueue

    app = api.create_app(JobQueue(Database(None, tmp_path / "data")))
    for method, path in _routes(app):
        answer = _asgi(app, "203.0.113.9", method, path)
        assert answer.status_code == 403 and "no accounts yet" in answer.json()["detail"], (method, path)
    assert _asgi(app, "203.0.113.9", "GET", "/v1/health").json()["executor"] == "none"
    assert _asgi(app, "::1", "GET", "/v1/generations").json() == {"total": 0, "items": []}
    monkeypatch.setattr(api, "MAX_UPLOAD_BYTES", 1000)
    answer = _asgi(app, "127.0.0.1", "POST", "/v1/generations",
                   files={"photo": ("p.png", lemur_path.read_bytes(), "image/png")})
    assert answer.status_code == 413 and "larger than the limit" in answer.json()["detail"]

    def full_disk(*args, **kwargs):
        raise disk_full(tmp_path, "recording a generation")

    monkeypatch.setattr(history, "list_generations", full_disk)
    answer = _asgi(app, "127.0.0.1", "GET", "/v1/generations")
    assert answer.status_code == 503 and answer.json()["detail"].startswith("no space left on the disk of")


def test_health_names_what_serves_the_queue(tmp_path):
    """In this process: a worker per lane (AI jobs and the rest apart)."""
    from backdrop import api
    from storage.jobs import JobQueue, LaneWorkers

    queue = JobQueue(Database(None, tmp_path / "data"))
    app = api.create_app(queue, LaneWorkers(queue))
    assert _asgi(app, "127.0.0.1", "GET", "/v1/health").json() == {
        "status": "ok", "executor": "in-process", "workers": 2, "pending": 0}


def test_what_serves_the_queue_is_one_type(tmp_path):
    """The API and the app see an Executor (storage.serving), whichever it is; RayExecutor
    answers the health check's questions without a cluster until it starts."""
    from storage.jobs import JobQueue, LaneWorkers
    from storage.ray_workers import RayExecutor
    from storage.serving import Executor

    queue = JobQueue(Database(None, tmp_path / "data"))
    lanes, ray = LaneWorkers(queue), RayExecutor(queue, address="local", workers=1)
    assert isinstance(lanes, Executor) and isinstance(ray, Executor)
    assert (lanes.kind, lanes.worker_count(), lanes.running()) == ("in-process", 2, {"quick": None, "ai": None})
    assert (ray.kind, ray.worker_count(), ray.running()) == ("ray", 0, {None: None})


def test_the_secrets_are_read_once_when_the_api_is_made(tmp_path, monkeypatch):
    """Whether an OIDC provider is configured is read from Streamlit's secrets files when the
    API is made, never per request (token-less requests asked the files each time)."""
    from backdrop import api
    from storage import access
    from storage.jobs import JobQueue

    reads = []
    monkeypatch.setattr(access, "oidc_configured", lambda folder=None: reads.append(folder) or False)
    app = api.create_app(JobQueue(Database(None, tmp_path / "data")))
    for _ in range(3):
        assert _asgi(app, "127.0.0.1", "GET", "/v1/generations").status_code == 200
    assert len(reads) == 1
    oidc = api.create_app(JobQueue(Database(None, tmp_path / "data")), policy=access.Policy(oidc=True))
    answer = _asgi(oidc, "127.0.0.1", "GET", "/v1/generations")
    assert answer.status_code == 401 and "Authorization: Bearer" in answer.json()["detail"]
    assert len(reads) == 1


def test_a_generation_is_answered_in_the_views_own_fields():
    """One shape: every field of the API's Generation but its progress and image addresses is
    a GenerationView field of the same name (a renamed view field fails here, not in a client)."""
    from dataclasses import fields

    from backdrop.api_schema import Generation

    view_fields = {f.name for f in fields(history.GenerationView)}
    assert set(Generation.model_fields) - {"progress", "images"} <= view_fields


def test_with_accounts_every_request_needs_a_token_and_sees_its_own(tmp_path, lemur_path, monkeypatch):
    from backdrop import api
    from storage import users
    from storage.jobs import JobQueue

    db = Database(None, tmp_path / "data")
    app = api.create_app(JobQueue(db))
    for name, admin in (("root", True), ("alice", False), ("bob", False)):
        users.add(name, "a long password", admin=admin, db=db)
    root, alice, bob = (users.create_token(name, db=db) for name in ("root", "alice", "bob"))
    for method, path in _routes(app):
        answer = _asgi(app, "127.0.0.1", method, path)
        assert answer.status_code == 401 and answer.headers["www-authenticate"] == "Bearer", (method, path)
        assert "send an account's API token" in answer.json()["detail"]
    wrong = _asgi(app, "127.0.0.1", "GET", "/v1/generations", token="bd_" + "x" * 43)
    assert wrong.status_code == 401 and "not valid" in wrong.json()["detail"]

    photo = {"photo": ("lemur.png", lemur_path.read_bytes(), "image/png")}
    made = _asgi(app, "203.0.113.9", "POST", "/v1/generations", token=alice, files=photo)  # from anywhere, with a token
    assert made.status_code == 202, made.text
    mine = made.json()["id"]
    assert history.get(mine, db=db).owner_id == users.get("alice", db=db).id
    for method, path in _routes(app):
        if "/1" in path:
            answer = _asgi(app, "127.0.0.1", method, path.replace("/1", f"/{mine}", 1), token=bob)
            assert answer.status_code == 404 and answer.json()["detail"] == f"no generation {mine}", (method, path)
    assert _asgi(app, "127.0.0.1", "GET", "/v1/generations", token=bob).json()["total"] == 0
    assert _asgi(app, "127.0.0.1", "GET", "/v1/generations", token=root).json()["total"] == 1, "an admin sees all"
    child = _asgi(app, "127.0.0.1", "POST", f"/v1/generations/{mine}/rerun", token=alice).json()
    assert child["parent_id"] == mine and history.get(child["id"], db=db).owner_id == history.get(mine, db=db).owner_id
    monkeypatch.setenv("BACKDROP_MAX_QUEUED_PER_USER", "2")
    full = _asgi(app, "127.0.0.1", "POST", "/v1/generations", token=alice, files=photo)
    assert full.status_code == 422 and "you already have 2 jobs queued or running" in full.json()["detail"]
    assert _asgi(app, "127.0.0.1", "POST", "/v1/generations", token=bob, files=photo).status_code == 202
    users.revoke_token("alice", db=db)
    assert _asgi(app, "127.0.0.1", "GET", "/v1/generations", token=alice).status_code == 401


def test_the_generation_appears_in_the_apps_history(client, data_dir, lemur_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from app_pages import job_view
    from test_app import APP

    generation_id = _create(client, lemur_path.read_bytes(), {"prompt": "made through the API"}).json()["id"]
    assert wait_finished(client, generation_id)["status"] == "done"
    monkeypatch.setenv("BACKDROP_DATA_DIR", str(data_dir))
    job_view.workers.clear()
    try:
        at = AppTest.from_file(APP, default_timeout=60).run()
        at.switch_page("app_pages/history.py").run()
        assert not at.exception, at.exception
        assert any(t.value.startswith(f"#{generation_id} ") for t in at.text), [t.value for t in at.text]
    finally:
        job_view.workers().stop(30)
        job_view.workers.clear()


def test_enhance_prompt_runs_the_assistant_as_part_of_the_generation(client, data_dir, lemur_path, tiny_models,
                                                                     tiny_prompt_lm):
    """The API's field: the generation's record keeps the words and the assistant's text, its
    models the assistant's; a request without words to improve is refused before anything is
    recorded; a model that is not here fails the generation with the command that fetches it."""
    from core.prompting.assistant import propose
    from core.prompting.denylist import DenyList
    from storage.settings import save_denylist

    save_denylist("nike\n", data_dir)
    photo = lemur_path.read_bytes()
    fields = {"background": "ai", "prompt": "a Nike shoe on a beach", "enhance_prompt": True, "steps": 1,
              "prompt_model": tiny_prompt_lm, "inpaint_model": tiny_models["inpaint"], "control_scale": 0.0,
              "device": "cpu"}
    done = wait_finished(client, _create(client, photo, fields).json()["id"])
    assert done["status"] == "done", done["error"]
    expected = propose("a Nike shoe on a beach", tiny_prompt_lm, "cpu", DenyList.parse("nike"))
    assert done["request"]["prompt"] == "a Nike shoe on a beach" and done["request"]["enhance_prompt"] is True
    assert done["record"]["prompt"] == done["record"]["prompt_assistant"]["text"] == expected.text
    assert done["record"]["prompt_removed"] == ["Nike"] and done["models"]["prompt"]["id"] == tiny_prompt_lm
    # a client of request version 2 (before the assistant) re-runs it with a new seed: what it did
    # not name stays as stored, the assistant included
    again = client.post(f"/v1/generations/{done['id']}/rerun", json={"version": 2, "seed": 5})
    assert again.status_code == 202, again.text
    rerun = wait_finished(client, again.json()["id"])
    assert rerun["request"] == {**done["request"], "seed": 5} and rerun["record"]["prompt"] == expected.text
    refused = _create(client, photo, {**fields, "prompt": ""})
    assert refused.status_code == 422 and "enhance prompt needs a prompt" in refused.json()["detail"]
    missing = wait_finished(client, _create(client, photo, {**fields, "prompt_model": "nobody/no-such-lm"}).json()["id"])
    assert missing["status"] == "failed" and "models fetch nobody/no-such-lm" in missing["error"]
    (data_dir / "prompt-denylist.txt").unlink()


def test_with_an_account_the_same_curl_needs_its_token(server, db, lemur_path, tmp_path):
    """Last in this module (it gives the server's database an account): on the real server,
    requests without a token are refused; with an account's token the README's curl commands
    work, and the account sees only what it made."""
    from storage import users

    users.add("carol", "a long password", db=db)
    token = users.create_token("carol", db=db)
    curl = ["curl", "-sS", "-H", f"Authorization: Bearer {token}"]
    refused = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", f"{server}/v1/generations"],
                             capture_output=True, text=True, timeout=60)
    assert refused.stdout == "401"
    created = subprocess.run([*curl, "--fail-with-body", "-F", f"photo=@{lemur_path}", "-F",
                              'request={"background": "color:#123456"}', f"{server}/v1/generations"],
                             capture_output=True, text=True, timeout=60)
    assert created.returncode == 0, created.stdout + created.stderr
    generation_id = json.loads(created.stdout)["id"]
    with httpx.Client(base_url=server, timeout=60, headers={"Authorization": f"Bearer {token}"}) as client:
        assert wait_finished(client, generation_id)["status"] == "done"
        assert client.get("/v1/generations").json()["total"] == 1, "carol's own only"
    target = tmp_path / "carol.png"
    downloaded = subprocess.run([*curl, "--fail", "-o", str(target),
                                 f"{server}/v1/generations/{generation_id}/images/result"], capture_output=True, timeout=60)
    assert downloaded.returncode == 0 and target.read_bytes() == history.get(generation_id, db=db).results[0].path.read_bytes()

