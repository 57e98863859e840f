"""Hostile callers against `backdrop serve` (issue 18): web pages of other origins driving the
local API from a real Chromium, a rebinding Host name, ids and offsets past the database's range,
deep and large bodies, the per-account queue limit under 30 parallel posts on SQLite and
PostgreSQL, input refused before anything is recorded, models and device per request for admins
only, and a bounded schemathesis run (with and without a token) that must find no server error
and no schema mismatch."""

from __future__ import annotations

import base64
import http.server
import io
import json
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from api_server import serve
from core.request import SCHEMA_VERSION
from test_storage import _new_pg_database, postgres_server  # noqa: F401 - the fixture, shared
from storage.db import Database
from storage.models import Generation

CHROMIUM = "/usr/bin/chromium"
LEMUR = Path(__file__).parent / "data" / "lemur" / "lemur.png"


def _photo_bytes(seed: int = 0, size=(96, 64)) -> bytes:
    """The lemur, small (a subject the automatic mask finds), as PNG bytes."""
    rng = np.random.default_rng(seed)
    pixels = np.asarray(Image.open(LEMUR).convert("RGB").resize(size), dtype=np.int16)
    noisy = np.clip(pixels + rng.integers(-3, 4, pixels.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(noisy).save(buffer, format="PNG")
    return buffer.getvalue()


def _rows(data_dir: Path, url: str | None = None) -> list[tuple[int, str, str | None]]:
    """(id, status, error) of every generation, oldest first."""
    db = Database(url, data_dir)
    try:
        with db.Session() as session:
            return [tuple(r) for r in session.execute(
                select(Generation.id, Generation.status, Generation.error).order_by(Generation.id))]
    finally:
        db.dispose()


@pytest.fixture(scope="module")
def queued_server(tmp_path_factory):
    """`backdrop serve --no-worker` (jobs stay queued) with one queued generation; yields (url,
    data folder, that generation's id)."""
    data_dir = tmp_path_factory.mktemp("hostile") / "data"
    data_dir.mkdir()
    with serve(data_dir, "--no-worker") as (url, _process):
        made = httpx.post(f"{url}/v1/generations", files={"photo": ("p.png", _photo_bytes(), "image/png")},
                          data={"request": '{"background": "color:#102030"}'}, timeout=60)
        assert made.status_code == 202, made.text
        yield url, data_dir, made.json()["id"]


# ---- 1. web pages and rebinding names -----------------------------------------------------------

@contextmanager
def _page_server(html: str):
    """A web page served on another port of this machine: another origin than the API's."""
    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = html.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


ATTACK = """<!doctype html><title>elsewhere</title><script>
async function attack(api, id, photo) {
  const bytes = Uint8Array.from(atob(photo), c => c.charCodeAt(0));
  const form = new FormData();
  form.append("photo", new Blob([bytes], {type: "image/png"}), "p.png");
  form.append("request", '{"background": "color:#ff0000", "prompt": "made by another origin"}');
  const attempts = [
    [api + "/v1/generations", {method: "POST", body: form}],
    [api + "/v1/generations/" + id + "/rerun", {method: "POST"}],
    [api + "/v1/generations/" + id + "/rerun", {method: "POST", headers: {"Content-Type": "text/plain"},
                                               body: '{"seed": 8}'}],
    [api + "/v1/generations/" + id + "/cancel", {method: "POST", headers: {"Content-Type": "text/plain"}}],
    [api + "/v1/generations", {method: "GET"}],
  ];
  const sent = [];
  for (const [url, init] of attempts) {
    try { await fetch(url, {...init, mode: "no-cors", credentials: "include"}); sent.push("sent"); }
    catch (error) { sent.push(String(error)); }
  }
  return sent;
}
</script>"""


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed "
                    "(scripts/system-deps.sh installs it)")
def test_a_page_of_another_origin_changes_and_reads_nothing(queued_server):
    """A real Chromium page served from another port (another origin; as localhost, another
    site too) POSTs to the API with fetch(..., {mode: "no-cors"}): create, re-run, remix,
    cancel, and reads the list. Each request reaches the server and is refused (403): nothing
    is created, the queued generation is still queued."""
    from playwright.sync_api import sync_playwright

    from test_browser import CHROMIUM_ARGS

    url, data_dir, queued = queued_server
    before = _rows(data_dir)
    photo = base64.b64encode(_photo_bytes(1)).decode()
    answers: list[tuple[str, str, int]] = []
    with _page_server(ATTACK) as page_port, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            for page_host in ("127.0.0.1", "localhost"):  # same site, other port; another site
                page = browser.new_page()
                page.on("response", lambda response: answers.append(
                    (response.request.method, response.url, response.status)) if response.url.startswith(url) else None)
                page.goto(f"http://{page_host}:{page_port}/")
                sent = page.evaluate("([api, id, photo]) => attack(api, id, photo)", [url, queued, photo])
                assert sent == ["sent"] * 5, sent
                page.close()
        finally:
            browser.close()
    assert len(answers) == 10 and {status for _m, _u, status in answers} == {403}, answers
    assert _rows(data_dir) == before, "a page of another origin created or changed a generation"
    assert (queued, "queued", None) in _rows(data_dir)


def test_a_rebinding_host_name_is_not_served(queued_server):
    """A page under a name of its own that resolves to 127.0.0.1 (DNS rebinding) sends that
    name as Host: refused before any route runs, reads included. The names of this machine work."""
    url, data_dir, queued = queued_server
    port = url.rsplit(":", 1)[1]
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example", "", "a@127.0.0.1"):
        for method, path in (("GET", "/v1/generations"), ("GET", f"/v1/generations/{queued}"),
                             ("GET", "/openapi.json"), ("POST", f"/v1/generations/{queued}/cancel")):
            answer = httpx.request(method, url + path, headers={"Host": host}, timeout=30)
            assert answer.status_code == 400, (host, method, path, answer.text)
            assert "does not answer to the name" in answer.json()["detail"]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", "127.0.0.1", f"[::1]:{port}"):
        assert httpx.get(url + "/v1/generations", headers={"Host": host}, timeout=30).status_code == 200, host
    assert (queued, "queued", None) in _rows(data_dir)


def test_curl_with_another_origin_or_site_is_refused_and_without_either_works(queued_server):
    """The issue's curl: a text/plain POST with a foreign Origin cancelled a job. Now 403 and the
    job is still queued; Sec-Fetch-Site cross-site or same-site likewise; the API's own origin
    (its /docs page) and no header at all (programs) are served."""
    url, data_dir, queued = queued_server
    cancel = f"{url}/v1/generations/{queued}/cancel"
    for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"}, {"Origin": url.replace("127.0.0.1", "localhost")},
                    {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"}):
        curl = subprocess.run(["curl", "-sS", "-X", "POST", "-H", "Content-Type: text/plain",
                               *[arg for name, value in headers.items() for arg in ("-H", f"{name}: {value}")],
                               "-w", "\n%{http_code}", cancel], capture_output=True, text=True, timeout=60)
        body, _, code = curl.stdout.rpartition("\n")
        assert code == "403" and "refused" in json.loads(body)["detail"], (headers, curl.stdout, curl.stderr)
        assert (queued, "queued", None) in _rows(data_dir), headers
    own = httpx.get(f"{url}/v1/generations", headers={"Origin": url, "Sec-Fetch-Site": "same-origin"}, timeout=30)
    assert own.status_code == 200 and own.json()["total"] >= 1
    typed = httpx.get(f"{url}/v1/generations/{queued}", headers={"Sec-Fetch-Site": "none"}, timeout=30)
    assert typed.status_code == 200
    plain = subprocess.run(["curl", "-sS", "--fail-with-body", f"{url}/v1/generations/{queued}"],
                           capture_output=True, text=True, timeout=60)
    assert plain.returncode == 0 and json.loads(plain.stdout)["status"] == "queued"


# ---- 3, 6. ids, offsets, depth and sizes: 4xx, never a server error ------------------------------

def test_ids_and_offsets_past_the_databases_range_are_refused(queued_server):
    url, data_dir, queued = queued_server
    huge = 2**63  # one past SQLite's and PostgreSQL's largest integer
    for method, path in (("GET", f"/v1/generations/{huge}"), ("GET", f"/v1/generations/{huge}/images/result"),
                         ("POST", f"/v1/generations/{huge}/cancel"), ("POST", f"/v1/generations/{huge}/rerun"),
                         ("DELETE", f"/v1/generations/{huge}"), ("GET", f"/v1/generations/{2**100}"),
                         ("GET", f"/v1/generations/-{huge}"), ("GET", "/v1/generations?offset=18446744073709551615"),
                         ("GET", f"/v1/generations/{queued}/images/result?variant={huge}")):
        answer = httpx.request(method, url + path, timeout=30)
        assert answer.status_code == 422, (method, path, answer.status_code, answer.text)
        assert answer.json()["detail"].startswith(("generation_id: ", "offset: ", "variant: ")), answer.text
    largest = 2**63 - 1
    assert httpx.get(f"{url}/v1/generations/{largest}", timeout=30).status_code == 404
    assert httpx.get(f"{url}/v1/generations?offset={largest}", timeout=30).json()["items"] == []


def test_deep_and_large_bodies_are_refused_before_they_cost_anything(queued_server):
    """A request part nested 100,000 deep, a 30 MB re-run body, a 10 MB prompt sent as a file
    part, a prompt past its stated length: 4xx with a message, nothing recorded."""
    url, data_dir, queued = queued_server
    before = _rows(data_dir)
    photo = {"photo": ("p.png", _photo_bytes(2), "image/png")}
    deep = httpx.post(f"{url}/v1/generations", files=photo, data={"request": "[" * 100_000 + "]" * 100_000},
                      timeout=60)
    assert deep.status_code in (413, 422) and deep.status_code != 500, deep.text
    deep_small = "{\"prompt\": " + "[" * 5000 + "]" * 5000 + "}"
    answer = httpx.post(f"{url}/v1/generations", files=photo, data={"request": deep_small}, timeout=60)
    assert answer.status_code == 422 and "nested" in answer.json()["detail"], answer.text
    answer = httpx.post(f"{url}/v1/generations/{queued}/rerun", content=deep_small,
                        headers={"Content-Type": "application/json"}, timeout=60)
    assert answer.status_code == 422 and "nested" in answer.json()["detail"], answer.text
    big = json.dumps({"prompt": "x" * 30_000_000})
    answer = httpx.post(f"{url}/v1/generations/{queued}/rerun", content=big,
                        headers={"Content-Type": "application/json"}, timeout=60)
    assert answer.status_code == 413 and "larger than" in answer.json()["detail"], answer.text
    streamed = httpx.post(f"{url}/v1/generations/{queued}/rerun", content=(b" " * 65536 for _ in range(64)),
                          headers={"Content-Type": "application/json"}, timeout=60)  # chunked: no Content-Length
    assert streamed.status_code == 413 and "larger than" in streamed.json()["detail"], streamed.text
    as_file = {**photo, "request": ("request.json", json.dumps({"prompt": "y" * 10_000_000}), "application/json")}
    answer = httpx.post(f"{url}/v1/generations", files=as_file, timeout=60)
    assert answer.status_code == 413 and "larger than" in answer.json()["detail"], answer.text
    from core.request import FIELD

    limit = FIELD["prompt"].max_length
    answer = httpx.post(f"{url}/v1/generations", files=photo, data={"request": json.dumps({"prompt": "z" * (limit + 1)})},
                        timeout=60)
    assert answer.status_code == 422 and f"at most {limit:,} characters" in answer.json()["detail"], answer.text
    schema = httpx.get(f"{url}/openapi.json", timeout=30).json()["components"]["schemas"]["GenerationRequest"]
    assert schema["properties"]["prompt"]["maxLength"] == limit
    surrogate = httpx.post(f"{url}/v1/generations/{queued}/rerun", content='{"inpaint_model": "\\uda23 alone"}',
                           headers={"Content-Type": "application/json"}, timeout=60)
    assert surrogate.status_code == 422 and "not valid text" in surrogate.json()["detail"], surrogate.text
    assert _rows(data_dir) == before


def test_rerun_takes_the_schemas_version_and_options_lists_every_method(queued_server):
    url, data_dir, queued = queued_server
    from core.request import SCHEMA_VERSION

    again = httpx.post(f"{url}/v1/generations/{queued}/rerun", json={"version": 2, "seed": 9}, timeout=60)
    assert again.status_code == 202 and again.json()["request"]["seed"] == 9, again.text
    assert again.json()["request"]["fast"] is False  # a version-2 request is one without fast mode
    newer = httpx.post(f"{url}/v1/generations/{queued}/rerun", json={"version": SCHEMA_VERSION + 1}, timeout=60)
    assert newer.status_code == 422 and "newer Backdrop" in newer.json()["detail"]
    plain = httpx.post(f"{url}/v1/generations/{queued}/rerun", content='{"seed": 3}',
                       headers={"Content-Type": "text/plain"}, timeout=60)
    assert plain.status_code == 415, plain.text
    for path, methods in ((f"/v1/generations/{queued}", {"GET", "DELETE"}), ("/v1/generations", {"GET", "POST"}),
                          (f"/v1/generations/{queued}/cancel", {"POST"})):
        answer = httpx.request("OPTIONS", url + path, timeout=30)
        assert answer.status_code == 405, answer.text
        allowed = set(answer.headers["allow"].replace(" ", "").split(",")) - {"HEAD"}  # HEAD: implied by GET
        assert allowed == methods, (path, answer.headers["allow"])
    httpx.post(f"{url}/v1/generations/{again.json()['id']}/cancel", timeout=30)


# ---- 8. refused before anything is recorded; models and device per request: admins only ------------

def _strip() -> bytes:
    """A 20000x20 strip: the automatic cut-out finds no subject in it (the model sees 318x1 px)."""
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (20, 20000, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def test_input_the_job_would_fail_on_is_refused_at_submission(queued_server):
    """A photo whose automatic mask is empty and an unknown segmenter answered 202 and failed in
    the worker, leaving failed rows: now 422 with the reason, and nothing recorded."""
    url, data_dir, queued = queued_server
    before = _rows(data_dir)
    for photo, fields, message in ((_strip(), {}, "mask is empty"),
                                   (_photo_bytes(3), {"segmenter": "no-such-model"}, "unknown segmenter 'no-such-model'")):
        answer = httpx.post(f"{url}/v1/generations", files={"photo": ("p.png", photo, "image/png")},
                            data={"request": json.dumps(fields)}, timeout=120)
        assert answer.status_code == 422 and message in answer.json()["detail"], answer.text
    answer = httpx.post(f"{url}/v1/generations/{queued}/rerun", json={"segmenter": "no-such-model"}, timeout=60)
    assert answer.status_code == 422 and "unknown segmenter" in answer.json()["detail"], answer.text
    assert _rows(data_dir) == before


@pytest.mark.slow
def test_only_admins_choose_models_and_device_per_request(tmp_path, monkeypatch):
    """A non-admin account's request naming a model (a folder of the server's: /etc) or a device
    other than the server's settings is refused (403) and nothing is recorded; its requests
    with the server's settings, and an admin's with any, are queued."""
    from storage import users

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    db = Database(None, data_dir)
    users.add("root", "a long password", admin=True, db=db)
    users.add("alice", "a long password", db=db)
    root, alice = users.create_token("root", db=db), users.create_token("alice", db=db)
    db.dispose()
    photo = {"photo": ("p.png", _photo_bytes(4), "image/png")}
    with serve(data_dir, "--no-worker") as (url, _process):
        def post(token, fields, path="/v1/generations", **kw):
            return httpx.post(url + path, headers={"Authorization": f"Bearer {token}"}, timeout=60, **kw,
                              **({} if path != "/v1/generations" else {"files": photo, "data": {"request": json.dumps(fields)}}))

        mine = post(alice, {"background": "color:#204060"})
        assert mine.status_code == 202, mine.text
        before = _rows(data_dir)
        for fields in ({"inpaint_model": "/etc"}, {"depth_model": "/root"}, {"controlnet_model": "someone/else"},
                       {"segmenter": "u2net"}, {"device": "cpu"}):
            answer = post(alice, fields)
            assert answer.status_code == 403 and "only an admin" in answer.json()["detail"], (fields, answer.text)
            answer = post(alice, None, f"/v1/generations/{mine.json()['id']}/rerun", json=fields)
            assert answer.status_code == 403 and "only an admin" in answer.json()["detail"], (fields, answer.text)
        assert _rows(data_dir) == before
        same = post(alice, {"inpaint_model": mine.json()["request"]["inpaint_model"], "device": "auto"})
        assert same.status_code == 202, "the server's own settings may be named"
        assert post(alice, None, f"/v1/generations/{mine.json()['id']}/rerun", json={"seed": 4}).status_code == 202
        assert post(root, {"inpaint_model": "/srv/models/inpaint", "device": "cpu"}).status_code == 202


# ---- 2. the per-account queue limit under 30 parallel posts --------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_queue_limit_holds_under_thirty_parallel_posts(backend, tmp_path, request):
    """BACKDROP_MAX_QUEUED_PER_USER=5 and 30 posts at once with one token, three rounds (the
    check-then-insert race let through 16, 5, 24, 19 and 8): exactly 5 queued, the rest 422
    with the reason, every round, on SQLite and on PostgreSQL."""
    from storage import users

    url = "" if backend == "sqlite" else _new_pg_database(request.getfixturevalue("postgres_server"))
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    db = Database(url or None, data_dir)
    users.add("alice", "a long password", db=db)
    token = users.create_token("alice", db=db)
    db.dispose()
    photo = _photo_bytes(6)
    env = {"BACKDROP_MAX_QUEUED_PER_USER": "5", **({"BACKDROP_DATABASE_URL": url} if url else {})}
    with serve(data_dir, "--no-worker", env=env) as (server, _process), \
            httpx.Client(base_url=server, timeout=120, headers={"Authorization": f"Bearer {token}"},
                         limits=httpx.Limits(max_connections=30)) as client:
        def post(_):
            return client.post("/v1/generations", files={"photo": ("p.png", photo, "image/png")},
                               data={"request": '{"background": "color:#305070"}'})

        # one post first, cancelled: the photo's cut-out (made at submission) is then in the server's
        # cache, so each round's 30 posts reach the queue's limit together, not one by one behind
        # 30 segmentations of the same photo (14 s)
        first = post(0)
        assert first.status_code == 202, first.text
        assert client.post(f"/v1/generations/{first.json()['id']}/cancel").status_code == 200
        for round_ in range(3):
            with ThreadPoolExecutor(30) as pool:
                answers = list(pool.map(post, range(30)))
            codes = sorted(a.status_code for a in answers)
            assert codes == [202] * 5 + [422] * 25, (round_, codes, [a.text for a in answers if a.status_code >= 500])
            assert all("at most 5 per user" in a.json()["detail"] for a in answers if a.status_code == 422)
            queued = [r for r in _rows(data_dir, url or None) if r[1] == "queued"]
            assert len(queued) == 5, (round_, queued)
            for generation_id, _status, _error in queued:  # room again for the next round
                assert client.post(f"/v1/generations/{generation_id}/cancel").status_code == 200


# ---- schemathesis: no server error, no answer the published schema does not allow ------------------

SCHEMATHESIS_CONFIG = """
# A photo of random bytes is never an image: for creating a generation, a request the schema
# allows may still be refused (422, with the reason), as may one naming models as a non-admin (403).
[[operations]]
include-name = "POST /v1/generations"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "409", "422", "429"]
"""


@pytest.mark.slow
def test_schemathesis_finds_no_server_error_and_no_schema_mismatch(tmp_path):
    """`schemathesis run --checks all` against a real `backdrop serve`, bounded (20 cases an
    operation and phase, fixed seeds: a few tens of seconds), without accounts and then with an
    account's token. Strings are valid Unicode without NUL: the API refuses lone surrogates and
    NUL by design (422), which JSON Schema's strings do not exclude."""
    from storage import users

    config = tmp_path / "schemathesis.toml"
    config.write_text(SCHEMATHESIS_CONFIG)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    command = [str(Path(sys.executable).parent / "schemathesis"), "--config-file", str(config), "run",
               "--checks", "all", "--max-examples", "20", "--no-color", "--generation-database", "none", "-w", "2",
               "--generation-codec", "utf-8", "--generation-allow-x00", "false"]
    with serve(data_dir, "--no-worker") as (url, _process):
        def run(name: str, *extra: str) -> None:
            outcome = subprocess.run([*command, *extra, f"{url}/openapi.json"], capture_output=True, text=True,
                                     timeout=300, cwd=tmp_path)
            assert outcome.returncode == 0, f"{name}:\n{outcome.stdout[-6000:]}\n{outcome.stderr[-2000:]}"
            assert " passed" in outcome.stdout and "Server error" not in outcome.stdout

        run("without accounts", "--seed", "1")
        db = Database(None, data_dir)  # the server reads the accounts at each request
        users.add("alice", "a long password", db=db)
        token = users.create_token("alice", db=db)
        db.dispose()
        run("with a token", "--seed", "2", "-H", f"Authorization: Bearer {token}")
