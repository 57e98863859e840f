"""Who may connect (issue 12): the app listens on 127.0.0.1 unless told otherwise, refuses to serve
a network without sign-in, gates every page behind a sign-in once accounts exist, shows each
user only their own generations and the Models page only to admins; accounts and API tokens are
managed from the command line.

The bound address is checked where it is decided: the listening socket (``ss``) and a connection
from this machine's non-loopback address. The served case runs in Chromium from that address.
"""

from __future__ import annotations

import io
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from PIL import Image

from app_pages import job_view, ui
from storage import history, users
from storage.db import Database
from test_browser import CHROMIUM, CHROMIUM_ARGS, free_port, wait_healthy

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "streamlit_app.py")
SHOTS = ROOT / "test-artifacts" / "access"
BACKDROP = str(Path(sys.executable).parent / "backdrop")


def non_loopback_address() -> str | None:
    """An IPv4 address of this machine that is not loopback (another host would use it)."""
    if not shutil.which("ip"):
        return None
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True, text=True).stdout
    found = re.findall(r"inet (\d+\.\d+\.\d+\.\d+)/", out)
    return found[0] if found else None


def listening(port: int) -> list[str]:
    """The local addresses listening on ``port`` (from ``ss``)."""
    out = subprocess.run(["ss", "-ltnH"], capture_output=True, text=True, check=True).stdout
    return [line.split()[3].rsplit(":", 1)[0] for line in out.splitlines() if line.split()[3].endswith(f":{port}")]


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=3):
            return True
    except OSError:
        return False


def env_with(data: Path, **extra) -> dict:
    env = {**os.environ, "BACKDROP_DATA_DIR": str(data), **extra}
    env.pop("BACKDROP_DATABASE_URL", None)
    return env


def start(argv: list[str], env: dict, log: Path) -> subprocess.Popen:
    SHOTS.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(argv, cwd=ROOT, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


# ---- the command line: accounts and tokens -------------------------------------------------

def test_users_commands(tmp_path, monkeypatch, capsys):
    """The first command as a real process with the password piped in; the others in this process
    (the same parser and handlers, without seconds of imports each)."""
    from backdrop.cli import main

    env = env_with(tmp_path / "data")
    monkeypatch.setenv("BACKDROP_DATA_DIR", env["BACKDROP_DATA_DIR"])
    monkeypatch.delenv("BACKDROP_DATABASE_URL", raising=False)
    added = subprocess.run([BACKDROP, "users", "add", "alice", "--admin"], cwd=ROOT, env=env,
                           input="alice's password\n", capture_output=True, text=True, timeout=120)
    assert added.stdout.strip() == "added admin alice", added.stderr

    def run(*args, stdin: str = "") -> subprocess.CompletedProcess:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        capsys.readouterr()
        code = main(["users", *args])
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)

    assert run("add", "bob", stdin="bob's password\n").returncode == 0
    refused = run("add", "carol", stdin="short\n")
    assert refused.returncode == 2 and "at least 8 characters" in refused.stderr
    assert run("add", "alice", stdin="whatever long\n").stderr.startswith("error: an account named 'alice'")
    assert run("add", "erin", stdin="").stderr.startswith("error: no password given")
    assert run("add", "dave@example.com", "--no-password").returncode == 0
    listed = run("list").stdout
    assert re.search(r"alice\s+admin\s+password", listed) and re.search(r"dave@example.com\s+user\s+OIDC", listed)
    token = run("token", "bob").stdout.strip()
    db = Database(None, tmp_path / "data")
    assert users.authenticate_token(token, db=db).name == "bob"
    assert "since" in re.search(r"bob.*", run("list").stdout).group(0)
    assert run("token", "bob", "--revoke").stdout.strip() == "bob: token revoked"
    assert users.authenticate_token(token, db=db) is None
    assert run("passwd", "bob", stdin="bob's new password\n").returncode == 0
    assert users.authenticate("bob", "bob's new password", db=db) and not users.authenticate("bob", "bob's password", db=db)
    assert run("passwd", "nobody", stdin="a long password\n").stderr.startswith("error: no account named 'nobody'")
    assert "last admin" in run("remove", "alice").stderr
    assert run("remove", "bob").returncode == 0 and "bob" not in run("list").stdout
    db.dispose()


# ---- the bound address ----------------------------------------------------------------------

@pytest.mark.slow
def test_default_app_listens_on_loopback_only(tmp_path):
    """`make run`'s command (`backdrop app`) and a plain `streamlit run` with the repository's
    config both bind 127.0.0.1: another address of this machine gets no answer."""
    other = non_loopback_address()
    for name, argv in (("backdrop-app", [BACKDROP, "app", "--port", "{port}"]),
                       ("streamlit-run", [sys.executable, "-m", "streamlit", "run", "streamlit_app.py",
                                          "--server.port", "{port}"])):
        port = free_port()
        process = start([a.format(port=port) for a in argv], env_with(tmp_path / name), SHOTS / f"{name}.log")
        try:
            wait_healthy(f"http://127.0.0.1:{port}", process)
            assert listening(port) == ["127.0.0.1"], (name, listening(port))
            if other:
                assert not reachable(other, port), f"{name}: reachable from {other}"
        finally:
            stop(process)


@pytest.mark.slow
def test_serving_a_network_without_accounts_is_refused(tmp_path):
    env = env_with(tmp_path / "data")
    proc = subprocess.run([BACKDROP, "app", "--host", "0.0.0.0", "--port", str(free_port())], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "will not serve 0.0.0.0 without sign-in" in proc.stderr
    if shutil.which("make"):
        made = subprocess.run(["make", "run", "HOST=0.0.0.0", f"PORT={free_port()}"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=300)
        assert made.returncode != 0 and "will not serve 0.0.0.0 without sign-in" in made.stderr, made.stderr[-2000:]


# ---- the app's sign-in (AppTest) -------------------------------------------------------------

@pytest.fixture
def accounts(tmp_path, monkeypatch):
    """A data folder with two users and an admin, each with a generation, for the app."""
    folder = tmp_path / "data"
    monkeypatch.setenv("BACKDROP_DATA_DIR", str(folder))
    monkeypatch.delenv("BACKDROP_DATABASE_URL", raising=False)
    from storage.db import get_database

    db = get_database()
    made = {}
    for name, admin in (("alice", False), ("bob", False), ("root", True)):
        user = users.add(name, f"{name}'s password", admin=admin, db=db)
        made[name] = history.create(__import__("core.request").request.GenerationRequest(prompt=f"{name}'s prompt"),
                                    photo_bytes(), db=db, user=user)
    job_view.workers.clear()
    yield made
    job_view.workers().stop(timeout=30)
    job_view.workers.clear()


def photo_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.open(ROOT / "tests" / "data" / "lemur" / "lemur.png").convert("RGB").save(buffer, format="PNG")
    return buffer.getvalue()


def signed_in(name: str):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, at.exception
    assert [t.label for t in at.text_input] == ["Name", "Password"], "only the sign-in before signing in"
    assert not any(t.value == "Studio" for t in at.title)
    at.text_input(key="sign_in_name").set_value(name)
    at.text_input(key="sign_in_password").set_value(f"{name}'s password")
    at.button[0].click().run()
    assert not at.exception, at.exception
    return at


def test_sign_in_gates_every_page_and_each_user_sees_their_own(accounts):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=60).run()
    with pytest.raises(ValueError, match="Known pages: \\['Sign in'\\]"):  # no other page exists yet
        at.switch_page("app_pages/history.py")
    assert [t.value for t in at.title] == ["Backdrop"] and not at.dataframe
    at.text_input(key="sign_in_name").set_value("alice")
    at.text_input(key="sign_in_password").set_value("not alice's password")
    at.button[0].click().run()
    assert any(e.value == "Wrong name or password." for e in at.error) and ui.SIGNED_IN not in at.session_state

    for name in ("alice", "bob"):
        at = signed_in(name)
        assert [t.value for t in at.title] == ["Studio"]
        assert any(t.value.startswith(f"Signed in as {name}") for t in at.sidebar.text)
        with pytest.raises(ValueError, match="Could not find a navigation page"):  # not in a user's navigation
            at.switch_page("app_pages/models.py")
        at.switch_page("app_pages/history.py").run()
        shown = " ".join(t.value for t in at.text)
        assert f"{name}'s prompt" in shown, shown
        others = {"alice", "bob", "root"} - {name}
        assert not any(f"{other}'s prompt" in shown for other in others), shown

    at = signed_in("root")
    at.switch_page("app_pages/history.py").run()
    shown = " ".join(t.value for t in at.text)
    assert all(f"{name}'s prompt" in shown for name in ("alice", "bob", "root"))
    at.switch_page("app_pages/models.py").run()
    assert [t.value for t in at.title] == ["Models"] and not at.error
    # (a new password ending open sessions is checked in Chromium below: AppTest reruns a page's
    # own script after the first run, without the app's main script where sign-in is checked)


def test_app_served_to_a_network_without_accounts_shows_only_why(tmp_path, monkeypatch):
    from streamlit import config
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("BACKDROP_DATA_DIR", str(tmp_path / "data"))
    before = config.get_option("server.address")
    config.set_option("server.address", "0.0.0.0")
    try:
        at = AppTest.from_file(APP, default_timeout=60).run()
    finally:
        config.set_option("server.address", before)
    assert any("will not serve 0.0.0.0 without sign-in" in e.value for e in at.error)
    assert not at.title and not at.text_input, "nothing but the refusal"


def test_markdown_in_an_uploaded_file_name_is_shown_as_text(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("BACKDROP_DATA_DIR", str(tmp_path / "data"))
    job_view.workers.clear()
    name = "[click](http://evil.example) ![x](http://evil.example/i.png) **b**.png"
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.file_uploader(key="studio_upload").set_value((name, b"not an image", "image/png")).run()
    [error] = at.error
    assert "evil" not in error.value, "no user text in what is rendered as Markdown"
    assert any(c.value.startswith(name) for c in at.code), "the name shown as plain text"


# ---- served to a network, in Chromium from another address ----------------------------------

@pytest.mark.browser  # through served(): the hook in conftest.py sees only the test's own source
@pytest.mark.slow
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
def test_served_app_shows_only_sign_in_then_each_users_own(tmp_path):
    other = non_loopback_address() or "127.0.0.1"
    data = tmp_path / "data"
    db = Database(None, data)
    from core.request import GenerationRequest

    for name in ("alice", "bob"):
        user = users.add(name, f"{name}'s password", db=db)
        history.create(GenerationRequest(prompt=f"{name}'s prompt"), photo_bytes(), db=db, user=user)
    db.dispose()
    port = free_port()
    process = start([BACKDROP, "app", "--host", "0.0.0.0", "--port", str(port)], env_with(data, OMP_NUM_THREADS="1"),
                    SHOTS / "served.log")
    url = f"http://{other}:{port}"
    try:
        wait_healthy(url, process)
        assert "0.0.0.0" in listening(port)
        served(url, data)
    finally:
        stop(process)
    log = (SHOTS / "served.log").read_text()
    for name in ("alice", "bob"):  # each sign-in is logged with the address it came from
        assert f"signed in: '{name}' from {other}" in log, log[-3000:]


def settled(page) -> None:
    """Wait until the canvas has drawn the photo: it then tells the app (a rerun of the Studio),
    and Streamlit 1.67 lets a rerun of the page being left, sent before the new page has
    started, win over a click on another page. A person clicks after seeing the photo."""
    background = page.locator("canvas.dc-background-canvas").first
    deadline = time.monotonic() + 60
    while not background.evaluate("c => c.width > 0 && c.getContext('2d').getImageData(c.width >> 1, c.height >> 1, 1, 1).data[3] > 0"):
        assert time.monotonic() < deadline, "the canvas never drew the photo"
        page.wait_for_timeout(100)
    page.wait_for_timeout(500)


def served(url: str, data: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with tempfile.TemporaryDirectory() as profile, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            for name in ("alice", "bob"):
                context = browser.new_context(viewport={"width": 1400, "height": 1100})
                context.set_default_timeout(120_000)
                page = context.new_page()
                page.goto(url)
                page.get_by_role("button", name="Sign in").wait_for()
                expect(page.get_by_text("Upload a photo to start")).to_have_count(0)
                expect(page.locator('[data-testid="stSidebarNav"]')).to_have_count(0)
                page.goto(f"{url}/history")  # a page's own address: the sign-in too
                page.get_by_role("button", name="Sign in").wait_for()
                expect(page.get_by_text("prompt")).to_have_count(0)
                page.screenshot(path=str(SHOTS / f"{name}-1-sign-in.png"))  # "page not found" over it
                page.keyboard.press("Escape")
                page.get_by_label("Name", exact=True).fill(name)
                page.get_by_label("Password", exact=True).fill(f"{name}'s password")
                page.get_by_role("button", name="Sign in").click()
                page.get_by_text("Upload a photo to start").wait_for()
                nav = page.locator('[data-testid="stSidebarNav"]')
                expect(nav.get_by_role("link", name="Models")).to_have_count(0)
                # a file name with Markdown in it is shown as text: no link, no image from elsewhere
                photo = photo_bytes()
                page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(
                    files=[{"name": "[click](http://evil.example) ![x](http://evil.example/i.png).png",
                            "mimeType": "image/png", "buffer": photo}])
                page.get_by_text("Corrected mask: this is what will be kept").wait_for()
                settled(page)
                nav.get_by_role("link", name="History").click()
                page.get_by_text(f"{name}'s prompt").wait_for()
                other = "bob" if name == "alice" else "alice"
                expect(page.get_by_text(f"{other}'s prompt")).to_have_count(0)
                page.screenshot(path=str(SHOTS / f"{name}-2-history.png"))
                nav.get_by_role("link", name="Studio").click()  # the photo is kept: its name is in the caption
                page.get_by_text(re.compile(r"Working on: \[click\]\(http://evil")).wait_for()
                expect(page.locator('a[href*="evil.example"]')).to_have_count(0)
                expect(page.locator('img[src*="evil.example"]')).to_have_count(0)
                page.screenshot(path=str(SHOTS / f"{name}-3-studio.png"))
                if name == "alice":  # a new password ends the sessions signed in before it
                    db = Database(None, data)
                    users.set_password("alice", "a new password for alice", db=db)
                    db.dispose()
                    nav.get_by_role("link", name="History").click()
                    page.get_by_text("Your session ended").wait_for()
                    expect(page.get_by_text("Upload a photo to start")).to_have_count(0)
                    page.screenshot(path=str(SHOTS / "alice-4-session-ended.png"))
                context.close()
        finally:
            browser.close()


def test_browser_gets_short_error_details():
    """An unexpected error shows Streamlit's generic message; the traceback goes to the server log."""
    from streamlit import config

    config.get_config_options(force_reparse=True)
    assert config.get_option("client.showErrorDetails") == "none"
    assert config.get_option("server.address") == "127.0.0.1"


def test_oidc_is_configured_by_an_auth_section_in_the_secrets(tmp_path):
    from storage.access import oidc_configured

    secrets = tmp_path / ".streamlit" / "secrets.toml"
    assert not oidc_configured(tmp_path)
    secrets.parent.mkdir()
    secrets.write_text('[auth]\nredirect_uri = "http://x/oauth2callback"\ncookie_secret = "s"\n')
    assert not oidc_configured(tmp_path), "no provider"
    secrets.write_text(secrets.read_text() + 'client_id = "id"\nclient_secret = "c"\n'
                       'server_metadata_url = "https://accounts.example/.well-known/openid-configuration"\n')
    assert oidc_configured(tmp_path)
    secrets.write_text("[auth\nbroken")
    assert not oidc_configured(tmp_path)


# ---- failed sign-ins: a budget per account and per server, logged with the address ---------------

@pytest.fixture
def sign_in_log():
    """What the app logs about sign-ins (Streamlit's logger for it does not propagate)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("backdrop.sign_in")
    logger.addHandler(handler)
    users.forget_failed_sign_ins()
    yield records
    logger.removeHandler(handler)
    users.forget_failed_sign_ins()


def test_failed_sign_ins_lock_the_account_until_a_time_it_names_and_are_logged(accounts, sign_in_log):
    """Five wrong passwords for alice: the sixth try, even with her password, is refused with
    the time the lock ends; bob signs in meanwhile; each failure, refusal and success is logged
    with the address it came from."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=60).run()
    for attempt in range(6):
        at.text_input(key="sign_in_name").set_value("alice")
        at.text_input(key="sign_in_password").set_value("alice's password" if attempt == 5 else f"guess {attempt}")
        at.button[0].click().run()
        assert ui.SIGNED_IN not in at.session_state
    [error] = at.error
    assert re.fullmatch(r"Too many failed sign-ins for this name: it is locked until \d\d:\d\d UTC \(in 15 min\)\..*",
                        error.value), error.value
    assert [t.value for t in signed_in("bob").title] == ["Studio"], "another account is not locked"
    lines = [record.getMessage() for record in sign_in_log]
    assert sum(line.startswith("sign-in failed for 'alice' from ") for line in lines) == 5, lines
    assert sum(line.startswith("sign-in refused for 'alice' from ") for line in lines) == 1, lines
    assert sum(line.startswith("signed in: 'bob' from ") for line in lines) == 1, lines


def test_sign_in_budget_per_account_and_per_server_and_its_expiry(tmp_path, monkeypatch):
    """The budget is counted before the password is checked, so parallel sessions cannot pass
    it (8 sessions made 40 guesses in 25 s); a lock ends after its window; many names failing
    pause every sign-in."""
    from datetime import datetime, timedelta, timezone
    from concurrent.futures import ThreadPoolExecutor

    db = Database(None, tmp_path / "data")
    users.add("alice", "alice's password", db=db)
    users.forget_failed_sign_ins()
    checked = []
    real = users.authenticate
    monkeypatch.setattr(users, "authenticate", lambda *a, **k: checked.append(a[0]) or real(*a, **k))
    now = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)

    def guess(i):
        try:
            return users.sign_in("alice", f"guess {i}", db=db, now=now)
        except users.SignInRefused as refused:
            return str(refused)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(guess, range(40)))
    assert len(checked) == users.FAILURES_PER_ACCOUNT == 5, "no more passwords checked than the budget"
    assert answers.count(None) == 5 and all("until 12:15 UTC" in a for a in answers if a is not None)
    with pytest.raises(users.SignInRefused):
        users.sign_in("alice", "alice's password", db=db, now=now + timedelta(minutes=14))
    later = now + users.SIGN_IN_WINDOW
    assert users.sign_in("alice", "alice's password", db=db, now=later).name == "alice", "the lock has ended"

    for i in range(users.FAILURES_PER_SERVER):  # many names, a few tries each
        assert users.sign_in(f"name{i}", "wrong", db=db, now=later) is None
    with pytest.raises(users.SignInRefused, match="on this server: sign-in is paused until 12:30 UTC"):
        users.sign_in("alice", "alice's password", db=db, now=later + timedelta(minutes=1))
    assert users.sign_in("alice", "alice's password", db=db, now=later + users.SIGN_IN_WINDOW).name == "alice"
    users.forget_failed_sign_ins()


# ---- the names the app answers to ----------------------------------------------------------------

@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")
def test_app_gives_no_session_to_a_page_under_another_name(tmp_path):
    """DNS rebinding: Chromium resolves evil.example to 127.0.0.1 (as a rebinding name would)
    and opens the app under it. Streamlit's WebSocket refuses that Host (server.allowedHosts in
    .streamlit/config.toml), so the page never gets a session; under localhost the app works."""
    from playwright.sync_api import sync_playwright

    from test_browser import streamlit_app

    SHOTS.mkdir(parents=True, exist_ok=True)
    port = free_port()
    with streamlit_app(tmp_path / "data", port, "rebinding.log") as (_url, _health), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            *CHROMIUM_ARGS, "--host-resolver-rules=MAP evil.example 127.0.0.1"])
        try:
            page = browser.new_page()
            page.goto(f"http://localhost:{port}/")
            page.get_by_text("Upload a photo to start").wait_for(timeout=60_000)
            page.goto(f"http://evil.example:{port}/")
            page.wait_for_timeout(8000)
            page.screenshot(path=str(SHOTS / "rebinding-name.png"))
            assert page.get_by_text("Upload a photo to start").count() == 0
            assert page.get_by_role("heading", name="Studio").count() == 0
        finally:
            browser.close()


def test_backdrop_app_answers_to_this_machine_or_to_any_name_where_sign_in_is_required():
    from backdrop.app import command

    def hosts(argv: list[str]) -> list[str]:
        return [argv[i + 1] for i, arg in enumerate(argv) if arg == "--server.allowedHosts"]

    assert hosts(command("127.0.0.1", 8501, [])) == ["localhost", "127.0.0.1", "::1"]
    assert hosts(command("127.0.0.2", 8501, [])) == ["localhost", "127.0.0.1", "::1", "127.0.0.2"]
    assert hosts(command("0.0.0.0", 8501, [])) == ["*"]
