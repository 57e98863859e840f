"""The app under load, as issue 15 describes it: 8 people at once in real Chromium sessions (one
app on a loopback port of this machine), each uploading a photo of their own and pressing
Generate as soon as the corrected mask shows (two of them double-click). Every press makes
exactly one job, every user sees their own result and nobody else's, and the photos the sessions
held are freed once the sessions have ended.

The figures (press to result, median and slowest; the app's memory when idle, after the run and
once the sessions have ended) are printed and written to test-artifacts/load/figures.json;
bench/load_bench.py runs this test several times in a row and keeps every run's figures.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

import pytest

from app_pages.memory import REAP_EVERY_S
from tests.load_users import CHROMIUM, rss_mb, run_users, user_photos
from tests.test_browser import SHOTS, free_port, streamlit_app

USERS = 8
DOUBLE_CLICKS = {0, 1}
FREED_MB_PER_SESSION = 1.5
SESSION_TTL_S = 5  # how long the app keeps a closed session for its reconnection (Streamlit's default: 120 s)
ARTIFACTS = SHOTS.parent / "load"

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")]


def app_pid(port: int) -> int:
    """The process listening on ``port`` (the streamlit server)."""
    import psutil

    for connection in psutil.net_connections("tcp"):
        if connection.status == "LISTEN" and connection.laddr.port == port and connection.pid:
            return connection.pid
    raise AssertionError(f"nothing listens on port {port}")


def recorded(data: Path) -> dict[int, object]:
    from storage import history
    from storage.db import Database

    database = Database(None, data)
    try:
        return {view.id: view for view in history.list_generations(limit=1000, db=database)}
    finally:
        database.dispose()


def test_eight_users_at_once_each_get_their_own_result(lemur_path, tmp_path):
    data = tmp_path / "data"
    port = free_port()
    for old in ARTIFACTS.glob("*.png"):
        old.unlink()
    with streamlit_app(data, port, "load.log", STREAMLIT_SERVER_DISCONNECTED_SESSION_TTL=str(SESSION_TTL_S)) as (url, _):
        pid = app_pid(port)
        photos = user_photos(lemur_path, tmp_path / "photos", USERS)
        warm = run_users(url, photos[:1])  # the first session imports the pipeline: not part of the load
        assert warm[0].error is None, warm[0].error
        time.sleep(SESSION_TTL_S + 1)
        idle_mb = rss_mb(pid)

        started = time.monotonic()
        outcomes = run_users(url, photos, DOUBLE_CLICKS, shots=ARTIFACTS)
        wall_s = time.monotonic() - started
        # the sessions are closed now (run_users closes every browser), the app keeps them SESSION_TTL_S
        after_run_mb = rss_mb(pid)
        time.sleep(SESSION_TTL_S + 1)
        after_sessions_mb = ended_sessions_rss(url, pid)

    failures = [f"user {o.user}: {o.error}" for o in outcomes if o.error]
    assert not failures, failures
    views = recorded(data)
    assert len(views) == 1 + USERS, f"{len(views) - 1} generations recorded for {USERS} presses of Generate"
    for outcome in outcomes:
        assert views[outcome.generation].input_sha256 == outcome.photo_sha256, f"user {outcome.user} saw another's"
    assert len({o.generation for o in outcomes}) == USERS
    assert all(o.reloaded for o in outcomes)
    seconds = sorted(o.seconds for o in outcomes)
    figures = {"users": USERS, "double_clicks": len(DOUBLE_CLICKS), "wall_s": round(wall_s, 2),
               "press_to_result_median_s": round(statistics.median(seconds), 2),
               "press_to_result_slowest_s": round(seconds[-1], 2), "rss_idle_mb": round(idle_mb),
               "rss_after_run_mb": round(after_run_mb), "rss_after_sessions_ended_mb": round(after_sessions_mb)}
    print("load:", json.dumps(figures))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "figures.json").write_text(json.dumps(figures, indent=2))
    # what the sessions held (each its photo, masks, previews: ~4 MB for this 0.3 MP photo) is
    # given back once they have ended: measured 31-67 MB for the 8 with the app's reaper, 0-2 MB
    # without it (Streamlit kept the last sessions until more traffic came)
    assert after_run_mb - after_sessions_mb >= FREED_MB_PER_SESSION * USERS, figures


def ended_sessions_rss(url: str, pid: int) -> float:
    """The app's memory once the closed sessions have expired: one more visit (a session that
    opens and closes) makes Streamlit drop the expired ones, then the app's own reaper runs."""
    from playwright.sync_api import sync_playwright

    from tests.load_users import CHROMIUM_ARGS

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page()
        page.goto(url)
        page.get_by_text("Upload a photo to start").wait_for()
        browser.close()
    time.sleep(SESSION_TTL_S + 2 * REAP_EVERY_S)
    return rss_mb(pid)
