"""End to end in a real browser: ``streamlit run`` on a loopback port, Debian's Chromium driven
by Playwright (never ``playwright install``), tiny local models for the AI background.

One user's path through the app, in order: upload a photo, see the mask, paint a stroke and see
the mask change, generate a colour and an AI background, download a result, find the
generation in History and re-run it. A screenshot of each step goes to test-artifacts/browser/.
"""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core import brush

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "test-artifacts" / "browser"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
WAIT_MS = 150_000  # an AI generation with tiny models on a busy 2-core machine

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed "
                                "(scripts/system-deps.sh installs it)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen, timeout: float = 120) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"streamlit exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                return response.read().decode()
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"{url} did not answer within {timeout} s")


@pytest.fixture(scope="module")
def server(tiny_models, tmp_path_factory):
    """The app as `make run` starts it (python -m streamlit run streamlit_app.py), with its own
    data folder and the tiny models as the default models."""
    port = free_port()
    data = tmp_path_factory.mktemp("browser-data")
    env = dict(
        os.environ, BACKDROP_DATA_DIR=str(data), BACKDROP_INPAINT_MODEL=str(tiny_models["inpaint"]),
        BACKDROP_CONTROLNET_MODEL=str(tiny_models["controlnet"]), BACKDROP_DEPTH_MODEL=str(tiny_models["depth"]),
        BACKDROP_DEVICE="cpu", HF_HUB_OFFLINE="1",
        # one torch thread: the server shares a small CPU with Chromium, and OpenMP threads that
        # spin-wait for a busy core make each diffusion step many times slower
        OMP_NUM_THREADS="1",
    )
    env.pop("BACKDROP_DATABASE_URL", None)
    SHOTS.mkdir(parents=True, exist_ok=True)
    log = open(SHOTS / "streamlit.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        yield url, wait_healthy(url, process), data
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="module")
def page(server):
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("*.png"):
        old.unlink()
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1400, "height": 2000}, accept_downloads=True,
        )
        context.set_default_timeout(WAIT_MS)
        page = context.new_page()
        yield page
        context.close()


def shot(page, name: str) -> None:
    page.mouse.move(1, 1)  # no hover tooltip over the page
    page.wait_for_timeout(300)  # let the last rerun paint
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def painted_pixels(page) -> int:
    """Non-transparent pixels on the canvas's drawing layers (Playwright's locators reach into
    the component's shadow DOM; the photo is on a separate background canvas)."""
    return page.locator(".dc-container canvas:not(.dc-background-canvas)").evaluate_all(
        """canvases => canvases.reduce((n, c) => {
               const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
               for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
               return n; }, 0)""")


def image_at(page, img) -> np.ndarray:
    """The pixels an <img> on the page shows, fetched from the app's media endpoint."""
    response = page.request.get(img.get_attribute("src"))
    return np.asarray(Image.open(io.BytesIO(response.body())).convert("RGB"), dtype=np.int16)


def test_app_answers_on_its_port(server):
    url, health, _ = server
    assert health == "ok"
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200 and b"<div id=\"root\">" in response.read()


def test_user_journey_in_chromium(server, page, lemur_path, tmp_path):
    try:
        journey(page, server[0], lemur_path, tmp_path)
    except BaseException:
        page.screenshot(path=str(SHOTS / "failure.png"))
        raise


def journey(page, url, lemur_path, tmp_path):  # noqa: PLR0915 - one user's story, step by step
    from playwright.sync_api import expect

    page.goto(url)
    page.get_by_text("Upload a photo to start").wait_for()
    shot(page, "01-start")

    # upload a real photo: the automatic mask appears as the canvas background and the preview
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(lemur_path))
    page.get_by_text("Corrected mask: this is what will be kept").wait_for()
    preview = page.locator('[data-testid="stImage"] img').first
    preview.wait_for()
    canvas = page.locator("canvas.dc-canvas").first
    canvas.wait_for()
    shot(page, "02-mask")
    assert painted_pixels(page) == 0
    before = image_at(page, preview)
    tinted_background = before[5, 5].copy()

    # one stroke with the Add brush across the top-left background (away from the canvas toolbar)
    box = canvas.bounding_box()
    start = (box["x"] + box["width"] * 0.04, box["y"] + box["height"] * 0.15)
    page.mouse.move(*start)
    page.mouse.down()
    for i in range(1, 21):
        page.mouse.move(start[0] + i * box["width"] * 0.012, start[1] + i * box["height"] * 0.004)
    page.mouse.up()
    page.wait_for_function(
        "src => { const img = document.querySelector('[data-testid=\"stImage\"] img'); return img && img.src !== src; }",
        arg=preview.get_attribute("src"),
    )
    after = image_at(page, preview)
    shot(page, "03-stroke")
    changed = np.abs(after - before).sum(axis=2) > 30
    assert changed.mean() > 0.005, "the stroke did not change the corrected mask"
    ys, xs = np.nonzero(changed)
    assert xs.mean() < after.shape[1] * 0.4 and ys.mean() < after.shape[0] * 0.4  # where it was painted
    # painted pixels went from background (tinted) to subject (the photo itself): before the
    # stroke they were the tint blended over exactly what they show now
    expected_before = after[changed] * 0.35 + np.array(brush.TINT_RGB) * 0.65
    assert np.abs(before[changed] - expected_before).mean() < 12
    assert np.array_equal(after[5, 5], tinted_background)  # outside the stroke: unchanged

    # a colour background (the default choice), then download the full-resolution result
    page.get_by_role("button", name="Generate").click()
    page.get_by_text(re.compile(r"Generation 1 done")).wait_for()
    shot(page, "04-colour-result")
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download result PNG").first.click()
    saved = tmp_path / "result.png"
    download_info.value.save_as(saved)
    result = Image.open(saved)
    assert result.format == "PNG" and result.size == Image.open(lemur_path).size

    # an AI background with the tiny models: progress, then the variant
    page.get_by_text("AI scene", exact=True).click()
    prompt = page.get_by_label("Describe the new background", exact=True)
    prompt.fill("a sunny beach at golden hour")
    prompt.press("Control+Enter")
    page.get_by_text("Advanced settings").click()
    steps = page.locator('[data-testid="stSlider"]').filter(has_text="Steps").get_by_role("slider")
    steps.focus()
    steps.press("Home")
    steps.press("ArrowRight")  # 2 steps: enough to exercise the path, quick on a shared CPU
    page.locator('[data-testid="stSlider"]').filter(has_text="Steps").get_by_text("2", exact=True).wait_for()
    page.get_by_role("button", name="Generate").click()
    page.locator('[data-testid="stProgress"]').wait_for()
    page.get_by_role("button", name="Cancel").wait_for()
    shot(page, "05-ai-progress")
    page.get_by_text(re.compile(r"Generation 2 done")).wait_for()
    shot(page, "06-ai-result")
    assert page.get_by_role("button", name="Download result PNG").count() == 1

    # History: both generations, newest first; open the AI one and re-run it
    page.get_by_role("link", name="History").click()
    page.get_by_text("2 generation(s); page 1 of 1").wait_for()
    shot(page, "07-history")
    cards = page.get_by_text(re.compile(r"^#\d+ "))
    assert cards.first.inner_text().startswith("#2 AI scene")
    page.locator(".st-key-history_open_2 button").click()
    page.get_by_text("Generation #2").wait_for()
    page.locator('[data-testid="stCode"]').filter(has_text="a sunny beach at golden hour").wait_for()
    shot(page, "08-history-detail")
    page.get_by_role("button", name="Re-run").click()
    page.get_by_text("Generation #3").wait_for()
    page.get_by_text(re.compile(r"^done · AI scene")).wait_for()
    page.get_by_text("Made from").wait_for()
    shot(page, "09-rerun-done")

    # the other pages render in the browser too
    page.get_by_role("link", name="Models").click()
    page.get_by_text("Depth ControlNet").wait_for()
    page.get_by_text("runs on cpu, precision float32").wait_for()
    shot(page, "10-models")
    page.get_by_role("link", name="Batch").click()
    page.get_by_text("Every photo gets the same background recipe").wait_for()
    shot(page, "11-batch")

    # back in the Studio the brush stroke is still there: on the canvas and in the mask
    page.get_by_role("link", name="Studio").click()
    page.locator("canvas.dc-canvas").first.wait_for()
    expect(page.get_by_label("Describe the new background", exact=True)).to_have_value("a sunny beach at golden hour")
    deadline = time.monotonic() + 30
    while painted_pixels(page) == 0:
        assert time.monotonic() < deadline, "the brush stroke is gone from the canvas after switching pages"
        page.wait_for_timeout(250)
    shot(page, "12-studio-again")
    again = image_at(page, page.locator('[data-testid="stImage"] img').first)
    assert np.abs(again - after).max() <= 2, "the corrected mask changed after switching pages"
