"""End to end in a real browser: ``streamlit run`` on a loopback port, Debian's Chromium driven
by Playwright (never ``playwright install``), tiny local models for the AI background and for
click selection.

People's paths through the app, each in its own browser session: one user's journey (upload,
paint and undo, a colour and an AI background, compare before and after, History, re-run); two
photos in a row (the second one several megapixels) and a file that is not a photo; a phone
with a touch stroke; zoom and pan on a desktop and a phone (strokes painted zoomed in land
where the photo showed them), and the soft brush; two sessions where a colour job finishes while
another's AI job runs; an AI job's live preview changing step by step; click selection with
Segment Anything; the messages that say what to run; and a page URL opened first after a
restart. A screenshot of each step goes to test-artifacts/browser/.
"""

from __future__ import annotations

import base64
import io
import json
import math
import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.masks import brush

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "test-artifacts" / "browser"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
WAIT_MS = 150_000  # an AI generation with tiny models on a busy 2-core machine
PHONE = dict(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True, has_touch=True)

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed "
                                 "(scripts/system-deps.sh installs it)")]


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


@contextmanager
def streamlit_app(data: Path, port: int, log_name: str, **env_vars: str):
    """The app as `make run` starts it (python -m streamlit run streamlit_app.py) with its own data
    folder; yields (url, health)."""
    env = {**os.environ, "BACKDROP_DATA_DIR": str(data), "BACKDROP_DEVICE": "cpu", "HF_HUB_OFFLINE": "1",
           # one torch thread: the server shares a small CPU with Chromium, and OpenMP threads that
           # spin-wait for a busy core make each diffusion step many times slower
           "OMP_NUM_THREADS": "1", **env_vars}
    env.pop("BACKDROP_DATABASE_URL", None)
    SHOTS.mkdir(parents=True, exist_ok=True)
    with open(SHOTS / log_name, "a") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
             "--server.address", "127.0.0.1"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            yield url, wait_healthy(url, process)
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture(scope="module")
def server(tiny_models, tiny_sam, tiny_prompt_lm, tmp_path_factory):
    """The app with the tiny models as its default models (AI background, click selection and the
    prompt assistant)."""
    data = tmp_path_factory.mktemp("browser-data")
    (SHOTS / "streamlit.log").unlink(missing_ok=True)
    with streamlit_app(data, free_port(), "streamlit.log", BACKDROP_INPAINT_MODEL=str(tiny_models["inpaint"]),
                       BACKDROP_CONTROLNET_MODEL=str(tiny_models["controlnet"]),
                       BACKDROP_DEPTH_MODEL=str(tiny_models["depth"]), BACKDROP_SAM_MODEL=tiny_sam,
                       BACKDROP_PROMPT_MODEL=tiny_prompt_lm) as (url, health):
        yield url, health, data


@pytest.fixture(scope="module")
def browser():
    """Chromium, started once; each test opens its own sessions (contexts) in it."""
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    for old in SHOTS.glob("*.png"):
        old.unlink()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@contextmanager
def session(browser, **options):
    """One person's browser session (a fresh context: its own cookies, so its own app session)."""
    context = browser.new_context(**({"viewport": {"width": 1400, "height": 2000}} | options), accept_downloads=True)
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    try:
        yield page
    except BaseException:
        page.screenshot(path=str(SHOTS / f"failure-{int(time.time())}.png"))
        raise
    finally:
        context.close()


def shot(page, name: str) -> None:
    page.mouse.move(1, 1)  # no hover tooltip over the page
    page.wait_for_timeout(400)  # let the last rerun paint
    page.screenshot(path=str(SHOTS / f"{name}.png"))


def painted_pixels(page) -> int:
    """Non-transparent pixels on the canvas's drawing layers (Playwright's locators reach into
    the component's shadow DOM; the photo is on a separate background canvas)."""
    return page.locator(".dc-container canvas:not(.dc-background-canvas)").evaluate_all(
        """canvases => canvases.reduce((n, c) => {
               const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
               for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
               return n; }, 0)""")


def image_at(page, img, dtype=np.int16) -> np.ndarray:
    """The pixels an <img> on the page shows: its data URL, or fetched from the app's media
    endpoint (a rerun may replace the file between reading the address and fetching it: the
    address is read again)."""
    for _ in range(20):
        src = img.get_attribute("src")
        if src.startswith("data:"):
            data = base64.b64decode(src.split(",", 1)[1])
        else:
            response = page.request.get(urllib.parse.urljoin(page.url, src))
            if not response.ok:
                page.wait_for_timeout(250)
                continue
            data = response.body()
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=dtype)
    raise AssertionError(f"the image at {src} could not be fetched")


def canvas_background(page) -> np.ndarray:
    """The photo (with the mask's tint) the canvas shows under the drawing."""
    # the RGBA bytes as base64 (a 12 MP photo's 1620x1215 canvas as a JSON array of numbers took 47 s)
    data = page.locator("canvas.dc-background-canvas").first.evaluate(
        """c => { const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                  let s = ''; for (let i = 0; i < d.length; i += 0x8000) s += String.fromCharCode(...d.subarray(i, i + 0x8000));
                  return {w: c.width, h: c.height, px: btoa(s)}; }""")
    return np.frombuffer(base64.b64decode(data["px"]), dtype=np.uint8).reshape(data["h"], data["w"], 4)[..., :3]


def upload(page, path) -> None:
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(str(path))


def preview(page):
    return page.locator('[data-testid="stImage"] img').first


def wait_new_preview(page, old_src: str) -> None:
    page.wait_for_function(
        "src => { const img = document.querySelector('[data-testid=\"stImage\"] img'); return img && img.src !== src; }",
        arg=old_src)


def drag(page, points) -> None:
    page.mouse.move(*points[0])
    page.mouse.down()
    for point in points[1:]:
        page.mouse.move(*point)
    page.mouse.up()


def generation(data: Path, generation_id: int):
    """A generation as the server recorded it (its data folder and SQLite database)."""
    from storage import history
    from storage.db import Database

    database = Database(None, data)
    try:
        return history.get(generation_id, db=database)
    finally:
        database.dispose()


def running(data: Path) -> int:
    """The id of the one generation the server is running."""
    from storage import history
    from storage.db import Database

    database = Database(None, data)
    try:
        (view,) = history.list_generations(status="running", db=database)
        return view.id
    finally:
        database.dispose()


def photo_file(folder: Path, name: str, size: tuple[int, int], source: str) -> Path:
    """A large JPEG made from one of scikit-image's photos (a phone photo is 12 MP)."""
    from skimage import data

    path = folder / name
    Image.fromarray(getattr(data, source)()).resize(size, Image.Resampling.BICUBIC).save(path, quality=90)
    return path


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).mean(axis=2).ravel(), b.astype(np.float64).mean(axis=2).ravel()
    return float(np.corrcoef(a, b)[0, 1])


# ---------------------------------------------------------------- tests

def test_app_answers_on_its_port(server):
    url, health, _ = server
    assert health == "ok"
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200 and b"<div id=\"root\">" in response.read()


def test_page_url_opened_first_after_a_restart(browser, tmp_path):
    """A refresh or a bookmark of /history after the server restarted: the History page inside
    the app (its navigation, the workers' status, the wide layout), not Streamlit's own list of
    the files in a pages folder; and with accounts, the sign-in, never the page itself."""
    from storage import users
    from storage.db import Database

    port = free_port()
    with streamlit_app(tmp_path, port, "restart.log") as (url, _), session(browser) as page:
        page.goto(url)
        page.get_by_text("Upload a photo to start").wait_for()
    with streamlit_app(tmp_path, port, "restart.log") as (url, _), session(browser) as page:  # a restart
        page.goto(f"{url}/history")
        page.get_by_role("heading", name="History").wait_for()
        page.get_by_text(re.compile(r"generation\(s\); page 1 of 1")).wait_for()
        sidebar = page.locator('[data-testid="stSidebar"]')
        sidebar.get_by_text(re.compile(r"AI worker: idle")).wait_for()
        shot(page, "20-history-opened-first-after-restart")
        links = [text.split("\n")[-1].strip() for text in sidebar.locator('[data-testid="stSidebarNavLink"]').all_inner_texts()]
        assert links == ["Studio", "History", "Batch", "Models"]
        assert page.get_by_text("streamlit app", exact=True).count() == 0 and page.get_by_text("ui", exact=True).count() == 0
        main = page.locator('[data-testid="stMainBlockContainer"]').bounding_box()
        assert main["width"] > 900, "the wide layout of streamlit_app.py's set_page_config"
    database = Database(None, tmp_path)
    users.add("alice", "alice's password", admin=True, db=database)
    database.dispose()
    with streamlit_app(tmp_path, port, "restart.log") as (url, _), session(browser) as page:  # accounts now
        page.goto(f"{url}/history")
        page.get_by_role("button", name="Sign in").wait_for()
        page.wait_for_timeout(1000)
        assert page.get_by_role("heading", name="History").count() == 0, "a page ran before the sign-in"
        shot(page, "20b-history-after-restart-asks-to-sign-in")


def test_user_journey_in_chromium(server, browser, lemur_path, tmp_path):
    with session(browser) as page:
        journey(page, server[0], lemur_path, tmp_path)


def journey(page, url, lemur_path, tmp_path):  # noqa: PLR0915 - one user's story, step by step
    from playwright.sync_api import expect

    page.goto(url)
    page.get_by_text("Upload a photo to start").wait_for()
    shot(page, "01-start")

    # upload a real photo: the automatic mask appears as the canvas background and the preview
    upload(page, lemur_path)
    page.get_by_text("Corrected mask: this is what will be kept").wait_for()
    preview(page).wait_for()
    canvas = page.locator("canvas.dc-canvas").first
    canvas.wait_for()
    shot(page, "02-mask")
    assert painted_pixels(page) == 0
    assert page.locator(".dc-toolbar").evaluate_all("bars => bars.every(b => getComputedStyle(b).display === 'none')"), \
        "the canvas's own toolbar would duplicate Undo and Clear"
    before = image_at(page, preview(page))
    tinted_background = before[5, 5].copy()

    # one stroke with the Add brush across the top-left background
    box = canvas.bounding_box()
    start = (box["x"] + box["width"] * 0.04, box["y"] + box["height"] * 0.15)
    src = preview(page).get_attribute("src")
    drag(page, [(start[0] + i * box["width"] * 0.012, start[1] + i * box["height"] * 0.004) for i in range(21)])
    wait_new_preview(page, src)
    after = image_at(page, preview(page))
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

    # Ctrl+Z takes the stroke back, Ctrl+Shift+Z puts it back
    src = preview(page).get_attribute("src")
    page.keyboard.press("Control+z")
    wait_new_preview(page, src)
    deadline = time.monotonic() + 30
    while painted_pixels(page) or np.abs(image_at(page, preview(page)) - before).max() > 2:
        assert time.monotonic() < deadline, "Ctrl+Z did not take the stroke back"
        page.wait_for_timeout(250)
    shot(page, "03b-ctrl-z")
    page.keyboard.press("Control+Shift+Z")
    deadline = time.monotonic() + 30
    while not painted_pixels(page) or np.abs(image_at(page, preview(page)) - after).max() > 2:
        assert time.monotonic() < deadline, "Ctrl+Shift+Z did not put the stroke back"
        page.wait_for_timeout(250)

    # a transparent background, then download the full-resolution result
    page.get_by_text("Transparent", exact=True).click()
    page.get_by_role("button", name="Generate").click()
    page.get_by_text(re.compile(r"Generation 1 done: ran ")).wait_for()
    shot(page, "04-transparent-result-on-checkerboard")
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download result PNG").first.click()
    assert download_info.value.suggested_filename == "backdrop-1-result-1.png"
    saved = tmp_path / "result.png"
    download_info.value.save_as(saved)
    result = Image.open(saved)
    assert result.format == "PNG" and result.size == Image.open(lemur_path).size and result.mode == "RGBA"
    shown = image_at(page, page.locator('[data-testid="stImage"] img').nth(1))
    corner = shown[:30, :30].reshape(-1, 3)  # the result's transparent corner, as shown
    light, grey = (np.abs(corner - 255).max(axis=1) < 10).mean(), (np.abs(corner - 204).max(axis=1) < 10).mean()
    assert light > 0.3 and grey > 0.3, "transparency is shown on a checkerboard, not on white"

    # before / after with a slider, and the edge at 100%
    compare(page, "Before / after", "05-compare-slider")
    compare(page, "Edge at 100%", "05b-compare-edge-100", natural=True)

    # an AI background with the tiny models, two variants, started with Enter in the prompt box
    page.get_by_text("AI scene", exact=True).click()
    page.locator('[data-testid="stSlider"]').filter(has_text="Variants").get_by_role("slider").focus()
    page.keyboard.press("ArrowRight")  # 2 variants
    page.get_by_text("Advanced settings").click()
    steps = page.locator('[data-testid="stSlider"]').filter(has_text="Steps").get_by_role("slider")
    steps.focus()
    steps.press("Home")
    steps.press("ArrowRight")  # 2 steps: enough to exercise the path, quick on a shared CPU
    page.locator('[data-testid="stSlider"]').filter(has_text="Steps").get_by_text("2", exact=True).wait_for()
    prompt = page.get_by_label("Describe the new background", exact=True)
    prompt.fill("a sunny beach at golden hour")
    prompt.press("Enter")
    page.locator('[data-testid="stProgress"]').wait_for()
    shot(page, "06-ai-progress")
    page.get_by_text(re.compile(r"Generation 2 done")).wait_for()
    expect(prompt).to_have_value("a sunny beach at golden hour")  # Enter generated: no new line typed
    page.get_by_text("Variant 1: chosen").wait_for()
    page.get_by_role("button", name="Choose variant 2").click()
    page.get_by_text("Variant 2: chosen").wait_for()
    shot(page, "07-ai-variants-gallery")
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download result PNG").click()
    assert download_info.value.suggested_filename == "backdrop-2-result-2.png"

    # History: both generations, newest first, cards with dates; open the AI one and re-run it
    page.get_by_role("link", name="History").click()
    page.get_by_text("2 generation(s); page 1 of 1").wait_for()
    shot(page, "08-history")
    dates = page.locator('[data-testid="stDateInput"] input').all()  # From and To, each shown whole
    assert len(dates) == 2
    assert all(d.evaluate("e => e.scrollWidth <= e.clientWidth") for d in dates), "a date box cuts its text"
    with page.expect_download() as download_info:  # one click: the zip is made as it is clicked
        page.get_by_role("button", name="Export 2 generations as a zip").click()
    exported = tmp_path / "history.zip"
    download_info.value.save_as(exported)
    with zipfile.ZipFile(exported) as archive:
        assert len(json.loads(archive.read("records.json"))) == 2, archive.namelist()
    cards = page.get_by_text(re.compile(r"^#\d+ "))
    assert cards.first.inner_text().startswith("#2 AI scene")
    assert page.get_by_text(re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d UTC$")).count() == 2
    cards = [page.locator(f".st-key-history_card_{i}").bounding_box() for i in (1, 2)]
    assert abs(cards[0]["y"] - cards[1]["y"]) < 2 and abs(cards[0]["height"] - cards[1]["height"]) < 2, \
        "the cards of a row line up"
    page.locator(".st-key-history_open_2 button").click()
    page.get_by_text("Generation #2").wait_for()
    page.locator('[data-testid="stCode"]').filter(has_text="a sunny beach at golden hour").wait_for()
    shot(page, "09-history-detail")
    page.get_by_role("button", name="Re-run").click()
    page.get_by_text("Generation #3").wait_for()
    page.get_by_text(re.compile(r"^done · AI scene")).wait_for()
    page.get_by_text("Made from").wait_for()
    shot(page, "10-rerun-done")

    # the other pages render in the browser too
    page.get_by_role("link", name="Models").click()
    page.get_by_text("Depth ControlNet (id or folder)").wait_for()
    page.get_by_text("runs on cpu, precision float32").wait_for()
    shot(page, "11-models")
    page.get_by_role("link", name="Batch").click()
    page.get_by_text("Every photo gets the same background recipe").wait_for()
    shot(page, "12-batch")

    # back in the Studio the brush stroke is still there: on the canvas and in the mask
    page.get_by_role("link", name="Studio").click()
    page.locator("canvas.dc-canvas").first.wait_for()
    expect(prompt).to_have_value("a sunny beach at golden hour")
    deadline = time.monotonic() + 30
    while painted_pixels(page) == 0:
        assert time.monotonic() < deadline, "the brush stroke is gone from the canvas after switching pages"
        page.wait_for_timeout(250)
    shot(page, "13-studio-again")
    again = image_at(page, preview(page))
    assert np.abs(again - after).max() <= 2, "the corrected mask changed after switching pages"


def test_fast_switch_on_a_cpu_in_chromium(browser, lemur_path, tiny_models, tiny_lora_cache, tiny_taesd, tmp_path):
    """The fast-mode LoRA and TAESD here and no GPU: the Studio's AI background starts in fast
    mode with the tiny autoencoder and says why; Generate runs the recipe and TAESD decodes; one
    click on the switch turns fast mode off, and both modes' expected times are shown from the
    finished job."""
    from playwright.sync_api import expect

    data = tmp_path / "data"
    data.mkdir()
    with streamlit_app(data, free_port(), "streamlit-fast.log", BACKDROP_INPAINT_MODEL=str(tiny_models["inpaint"]),
                       BACKDROP_CONTROLNET_MODEL=str(tiny_models["controlnet"]),
                       BACKDROP_DEPTH_MODEL=str(tiny_models["depth"]), BACKDROP_TINY_VAE_MODEL=tiny_taesd,
                       HF_HUB_CACHE=str(tiny_lora_cache)) as (url, _), \
            session(browser) as page:
        page.goto(url)
        upload(page, lemur_path)
        page.get_by_text("Corrected mask: this is what will be kept").wait_for()
        page.get_by_text("AI scene", exact=True).click()
        page.get_by_text("This computer has no GPU, so the Studio starts in fast mode").wait_for()
        switch = page.get_by_label("Fast", exact=True)
        assert switch.is_checked()
        page.get_by_text("It also encodes and decodes with the tiny autoencoder (TAESD)").wait_for()
        assert page.get_by_role("checkbox", name="Tiny autoencoder (faster, softer background detail)").is_checked()
        page.get_by_text("Advanced settings").click()
        page.get_by_text("Fast mode samples with its recipe (LCM-LoRA SD1.5: LCMScheduler, 4 steps").wait_for()
        shot(page, "fast-01-on-by-default")
        prompt = page.get_by_label("Describe the new background", exact=True)
        prompt.fill("a sunny beach")
        prompt.press("Enter")
        page.get_by_text(re.compile(r"Generation 1 done")).wait_for()
        shot(page, "fast-02-result")
        ran = generation(data, 1)
        assert ran.request["fast"] is True and (ran.record["scheduler"], ran.record["steps"]) == ("LCMScheduler", 4)
        assert ran.record["guided"] is False and ran.request["tiny_vae"] is True and ran.record["vae_decode"] == "tiny"
        # one fast job finished: its time, and the standard mode's work beside it
        page.get_by_text(re.compile(r"Expected here: fast about .+ \(from 1 similar job\); standard does about \d+x")).wait_for()
        switch.click(force=True)  # the toggle's input is drawn over by its track
        expect(page.get_by_text("Fast mode samples with its recipe")).to_have_count(0)
        assert not switch.is_checked()
        shot(page, "fast-03-off")


def compare(page, tab: str, name: str, natural: bool = False) -> None:
    """Open a comparison tab, move its slider and check the two images line up (at 100%: one
    image pixel per screen pixel)."""
    page.get_by_role("tab", name=tab).click()
    panel = page.locator('[role="tabpanel"]:visible')
    stage = panel.locator(".bd-stage")
    stage.wait_for()
    panel.locator(".bd-range").fill("25")
    page.wait_for_timeout(300)
    sizes = panel.locator(".bd-stage img").evaluate_all(
        "imgs => imgs.map(i => [i.naturalWidth, i.naturalHeight, i.getBoundingClientRect().width])")
    assert sizes[0][:2] == sizes[1][:2] and sizes[0][0] > 0, "before and after at the same size"
    if natural:
        assert abs(sizes[1][2] - sizes[1][0]) < 1, "100%: one image pixel per screen pixel"
    clips = panel.locator(".bd-stage img").evaluate_all("imgs => imgs.map(i => i.style.clipPath)")
    assert clips == ["inset(0px 75% 0px 0px)", "inset(0px 0px 0px 25%)"]
    panel.scroll_into_view_if_needed()
    shot(page, name)


def test_lemur_on_white_edge_at_100_shows_fur_without_the_green(server, browser, lemur_path):
    """The lemur (white fur against green leaves) on the default colour, #ffffff: the Studio's
    Edge at 100% shows an outline no greener than the fur well inside it (issues 21 and 22)."""
    from scipy import ndimage

    from core.masks.segment import automatic_mask

    url, _, data = server
    with session(browser) as page:
        page.goto(url)
        upload(page, lemur_path)
        page.get_by_text("Corrected mask: this is what will be kept").wait_for()
        page.get_by_test_id("stRadioGroup").get_by_text("Colour", exact=True).click()  # #ffffff unless changed
        page.get_by_role("button", name="Generate").click()
        page.get_by_text(re.compile(r"Generation \d+ done: ran ")).wait_for()
        page.get_by_role("tab", name="Edge at 100%").click()
        panel = page.locator('[role="tabpanel"]:visible')
        panel.locator(".bd-stage").wait_for()
        panel.locator(".bd-range").fill("0")  # all "after"
        page.wait_for_timeout(300)
        panel.scroll_into_view_if_needed()
        shot(page, "11-lemur-on-white-edge-100")
        caption = panel.get_by_text(re.compile(r"1:1 pixels at x \d+-\d+, y \d+-\d+")).inner_text()
        x0, x1, y0, y1 = map(int, re.search(r"x (\d+)-(\d+), y (\d+)-(\d+)", caption).groups())
        shown = image_at(page, panel.locator(".bd-stage img").nth(1), dtype=float)  # while the page is open
    mask = np.asarray(automatic_mask(Image.open(lemur_path).convert("RGB")))[y0:y1, x0:x1]
    assert shown.shape[:2] == mask.shape
    green = shown[..., 1] - (shown[..., 0] + shown[..., 2]) / 2
    depth = ndimage.distance_transform_edt(mask > 0)
    outline, inside = (mask > 0) & (depth <= 15), depth > 25
    assert green[outline].mean() <= green[inside].mean() + 1.5, (green[outline].mean(), green[inside].mean())


def test_two_photos_in_a_row_then_a_file_that_is_not_a_photo(server, browser, lemur_path, tmp_path):
    """The second photo of a session (12 MP, a phone's) replaces the first on the canvas and in
    the generation; a file that is not a photo leaves no photo active to generate from."""
    url, _, data = server
    coffee = photo_file(tmp_path, "coffee_4000.jpg", (4000, 3000), "coffee")
    with session(browser) as page:
        page.goto(url)
        upload(page, lemur_path)
        page.get_by_text("Working on: lemur.png (680x440)").wait_for()
        page.locator("canvas.dc-canvas").first.wait_for()
        upload(page, coffee)
        page.get_by_text("Working on: coffee_4000.jpg (4000x3000)").wait_for()
        deadline = time.monotonic() + 60
        # shown at 540x405, drawn with 3 times as many pixels across (sharp when zoomed in)
        while page.locator("canvas.dc-canvas").first.evaluate("c => [c.width, c.height]") != [1620, 1215]:
            assert time.monotonic() < deadline, "the canvas kept the first photo's shape"
            page.wait_for_timeout(250)
        page.wait_for_timeout(1000)
        shown = canvas_background(page)
        expected = np.asarray(Image.open(coffee).resize((1620, 1215)))
        assert correlation(shown, expected) > 0.8, "the canvas does not show the second photo"
        shot(page, "21-second-photo")
        page.get_by_role("button", name="Generate").click()
        page.get_by_text(re.compile(r"Generation \d+ done")).wait_for()
        generation_id = int(re.search(r"Generation (\d+) done", page.get_by_text(re.compile(r"Generation \d+ done")).inner_text())[1])
        view = generation(data, generation_id)
        result = np.asarray(Image.open(view.results[0].path).convert("RGB"))
        assert result.shape == (3000, 4000, 3), "the generation ran on the first photo"
        subject = np.asarray(Image.open(view.output("mask").path)) == 255
        assert subject.mean() > 0.05 and np.array_equal(result[subject], np.asarray(Image.open(coffee).convert("RGB"))[subject]), \
            "the subject's pixels are not the second photo's"
        shot(page, "22-second-photo-result")

        (tmp_path / "holiday.jpg").write_bytes(b"this is not a photo at all")
        upload(page, tmp_path / "holiday.jpg")
        page.get_by_text("This file cannot be used as a photo:").wait_for()
        page.locator('[data-testid="stCode"]').filter(has_text="holiday.jpg is not an image").wait_for()
        page.get_by_text("Upload a photo to start").wait_for()
        assert page.get_by_role("button", name="Generate").count() == 0, "Generate would run on the previous photo"
        assert page.locator("canvas.dc-canvas").count() == 0
        shot(page, "23-not-a-photo")


def test_strokes_stay_when_the_brush_size_changes_and_on_the_next_photo(server, browser, lemur_path, tmp_path):
    """Issue 21: PageUp five times on Brush size after a stroke (the canvas's updates overlap, and
    Streamlit cleaned the canvas up: the stroke vanished from it, and the next stroke dropped it
    from the mask too); and the same stroke painted on the next photo (it was taken for the
    previous photo's stale drawing: never applied, Undo disabled)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect

    url = server[0]
    second = tmp_path / "lemur-again.png"
    second.write_bytes(lemur_path.read_bytes())  # the same size: the same stroke is the same path
    with session(browser) as page:
        page.goto(url)
        upload(page, lemur_path)
        page.get_by_text("Working on: lemur.png").wait_for()
        canvas = page.locator("canvas.dc-canvas").first
        canvas.wait_for()
        page.wait_for_timeout(1000)
        box = canvas.bounding_box()
        before = image_at(page, preview(page))

        def stroke(y: float) -> None:
            src = preview(page).get_attribute("src")
            start = (box["x"] + box["width"] * 0.04, box["y"] + box["height"] * y)
            drag(page, [(start[0] + i * box["width"] * 0.012, start[1]) for i in range(21)])
            try:
                page.wait_for_function("src => document.querySelector('[data-testid=\"stImage\"] img').src !== src",
                                       arg=src, timeout=30_000)
            except PlaywrightTimeout:
                pytest.fail("the stroke was drawn but the mask never changed")

        def kept(y: float) -> float:
            """How much of the stroke at height ``y`` the corrected mask keeps (0 to 1)."""
            shown = image_at(page, preview(page))
            row = round(shown.shape[0] * y)
            band = np.abs(shown - before)[row - 2:row + 3, round(shown.shape[1] * 0.06):round(shown.shape[1] * 0.25)]
            return float((band.sum(axis=2) > 30).mean())

        stroke(0.12)
        assert kept(0.12) > 0.8
        upload(page, second)
        page.get_by_text("Working on: lemur-again.png").wait_for()
        deadline = time.monotonic() + 30
        while painted_pixels(page):
            assert time.monotonic() < deadline, "the first photo's stroke stayed on the canvas"
            page.wait_for_timeout(250)
        expect(page.get_by_role("button", name="Undo")).to_be_disabled()
        page.wait_for_timeout(1000)
        before = image_at(page, preview(page))
        stroke(0.12)  # the first photo's stroke, exactly
        expect(page.get_by_role("button", name="Undo")).to_be_enabled()
        assert kept(0.12) > 0.8, "the stroke was drawn but not applied"
        shot(page, "24-same-stroke-on-the-next-photo")

        painted = painted_pixels(page)
        slider = page.locator('[data-testid="stSlider"]').filter(has_text="Brush size")
        for key, size in (("PageUp", "90"), ("PageDown", "30"), ("PageUp", "90"), ("PageDown", "30")):
            slider.get_by_role("slider").focus()
            for _ in range(5):
                slider.get_by_role("slider").press(key)
            slider.get_by_text(size, exact=True).wait_for()
            page.wait_for_timeout(1500)
            assert painted_pixels(page) == painted, f"the stroke vanished from the canvas ({key} to {size})"
        stroke(0.4)
        shot(page, "25-stroke-after-brush-size")
        assert kept(0.12) > 0.8 and kept(0.4) > 0.8, "a stroke dropped from the mask"


def test_phone_canvas_fits_and_paints_with_touch(server, browser, lemur_path):
    """A 390x844 phone: the canvas fits the screen's width, sits on the first screen, and a finger
    stroke paints the mask."""
    with session(browser, **PHONE) as page:
        page.goto(server[0])
        upload(page, lemur_path)
        page.get_by_text("Corrected mask: this is what will be kept").wait_for()
        canvas = page.locator("canvas.dc-canvas").first
        deadline = time.monotonic() + 30
        while canvas.bounding_box()["width"] > 390 - 2 * 16:
            assert time.monotonic() < deadline, "the canvas is wider than the phone's screen"
            page.wait_for_timeout(250)
        page.wait_for_timeout(1000)
        box = canvas.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390 and box["y"] + box["height"] <= 844, box
        # drawn with the photo's 680 pixels across (sharp when zoomed in), scaled down to fit
        assert canvas.evaluate("c => c.width") == 680 and round(box["width"]) < 390
        shot(page, "30-phone")
        before = image_at(page, preview(page))
        src = preview(page).get_attribute("src")
        cdp = page.context.new_cdp_session(page)
        y = box["y"] + box["height"] * 0.12
        points = [(box["x"] + box["width"] * (0.05 + 0.015 * i), y + i * 0.5) for i in range(16)]
        cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": points[0][0], "y": points[0][1]}]})
        for x, py in points[1:]:
            cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": py}]})
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
        wait_new_preview(page, src)
        assert painted_pixels(page) > 0
        after = image_at(page, preview(page))
        changed = np.abs(after - before).sum(axis=2) > 30
        assert changed.mean() > 0.003, "the finger stroke did not change the mask"
        ys, xs = np.nonzero(changed)
        assert ys.mean() < after.shape[0] * 0.3 and xs.mean() < after.shape[1] * 0.6
        shot(page, "31-phone-touch-stroke")


def view_of(page) -> dict:
    """The canvas's zoom and pan as its frame reports them (zoom, then the pan in frame px)."""
    frame = page.locator(".bd-frame")
    return {k: float(frame.get_attribute(f"data-{k}")) for k in ("zoom", "pan-x", "pan-y")}


def changed_where(before: np.ndarray, after: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows, columns) of the preview's pixels a stroke changed (the preview is at the canvas's size)."""
    return np.nonzero(np.abs(after - before).sum(axis=2) > 30)


def stroke_lands(changed, row: float, x0: float, x1: float, width: float) -> None:
    """The pixels a horizontal stroke changed lie along canvas row ``row`` from ``x0`` to ``x1``,
    about ``width`` canvas px wide: where the zoomed photo showed it, not where the unzoomed one would."""
    ys, xs = changed
    assert len(ys), "the stroke did not change the mask"
    assert abs(np.median(ys) - row) < 2.5, (np.median(ys), row)
    assert ys.min() > row - width / 2 - 3 and ys.max() < row + width / 2 + 3, (ys.min(), ys.max(), row, width)
    assert xs.min() > x0 - width / 2 - 3 and xs.max() < x1 + width / 2 + 3, (xs.min(), xs.max(), x0, x1)
    assert xs.min() < x0 + 3 and xs.max() > x1 - 3, (xs.min(), xs.max(), x0, x1)


def test_zoom_and_pan_paint_where_the_zoomed_photo_shows_it(server, browser, lemur_path):
    """Issue 21, what people reach for: the wheel zooms at the pointer, Move and Space pan, and a
    Remove stroke painted while zoomed changes the mask at the photo's pixels that were under it,
    as fine as the zoom (the brush keeps its size on the screen); panning paints nothing; Fit
    shows the whole photo; the soft brush fades from its middle to its edge in the mask, and
    Undo takes it back; at the whole photo, the wheel turned down scrolls the page."""
    from playwright.sync_api import expect

    with session(browser, viewport={"width": 1400, "height": 1100}) as page:
        page.goto(server[0])
        upload(page, lemur_path)
        page.get_by_text("Corrected mask: this is what will be kept").wait_for()
        frame = page.locator(".bd-frame")
        page.locator("canvas.dc-canvas").first.wait_for()
        page.get_by_role("radio", name="Remove", exact=True).click()
        page.wait_for_timeout(1500)
        box = frame.bounding_box()
        w, h = box["width"], box["height"]
        assert (w, h) == (540, 349)  # the 680x440 lemur, fitted
        shot(page, "80-zoom-fit")

        # the wheel over a point zooms twice in around it: that point stays under the pointer
        page.mouse.move(box["x"] + w * 0.5, box["y"] + h * 0.6)
        page.mouse.wheel(0, -math.log(2) / 0.0015)
        deadline = time.monotonic() + 10
        while abs(view_of(page)["zoom"] - 2) > 1e-6:
            assert time.monotonic() < deadline, view_of(page)
            page.wait_for_timeout(100)
        view = view_of(page)
        # (the mouse moves to whole pixels: the frame's fractional position is rounded)
        assert view["pan-x"] == pytest.approx(-w * 0.5, abs=1) and view["pan-y"] == pytest.approx(-h * 0.6, abs=1)
        expect(page.locator(".bd-level")).to_have_text("200%")

        def paint(row: float, start: float, end: float) -> tuple[np.ndarray, np.ndarray]:
            """A stroke along the frame's row ``row`` (a fraction of its height) from ``start`` to
            ``end`` (of its width); returns what it changed in the preview."""
            before = image_at(page, preview(page))
            src = preview(page).get_attribute("src")
            drag(page, [(box["x"] + w * (start + (end - start) * i / 20), box["y"] + h * row) for i in range(21)])
            wait_new_preview(page, src)
            page.wait_for_timeout(500)
            return changed_where(before, image_at(page, preview(page)))

        def on_canvas(view: dict, fx: float, fy: float) -> tuple[float, float]:
            """The canvas point under the frame's point (fx, fy) (fractions of its size) at ``view``:
            worked out here, not read from the page."""
            return (w * fx - view["pan-x"]) / view["zoom"], (h * fy - view["pan-y"]) / view["zoom"]

        expected = dict(view)
        x0, row = on_canvas(expected, 0.3, 0.5)
        x1, _ = on_canvas(expected, 0.7, 0.5)
        stroke_lands(paint(0.5, 0.3, 0.7), row, x0, x1, width=30 / 2)
        shot(page, "81-zoomed-stroke")

        # Move: a drag pans and paints nothing
        painted = painted_pixels(page)
        page.get_by_role("button", name="Move", exact=True).click()
        drag(page, [(box["x"] + w * (0.5 - 0.02 * i), box["y"] + h * 0.5) for i in range(11)])
        expected["pan-x"] -= w * 0.2
        assert view_of(page) == pytest.approx(expected, abs=1)
        expected = view_of(page)
        page.get_by_role("button", name="Move", exact=True).click()
        # Space held: the same
        page.mouse.move(box["x"] + w * 0.5, box["y"] + h * 0.5)
        page.keyboard.down("Space")
        drag(page, [(box["x"] + w * 0.5, box["y"] + h * (0.5 + 0.02 * i)) for i in range(6)])
        page.keyboard.up("Space")
        expected["pan-y"] += h * 0.1
        assert view_of(page) == pytest.approx(expected, abs=1)
        expected = view_of(page)
        page.wait_for_timeout(1000)
        assert painted_pixels(page) == painted, "panning painted"
        x0, row = on_canvas(expected, 0.25, 0.3)
        x1, _ = on_canvas(expected, 0.6, 0.3)
        stroke_lands(paint(0.3, 0.25, 0.6), row, x0, x1, width=30 / 2)
        shot(page, "82-panned-stroke")

        page.get_by_role("button", name="Fit", exact=True).click()
        assert view_of(page) == {"zoom": 1, "pan-x": 0, "pan-y": 0}
        expect(page.get_by_role("button", name="Fit", exact=True)).to_be_disabled()
        shot(page, "83-fit-after-strokes")

        # the soft brush, at 100%: its stroke fades in the mask from its middle to its edge
        page.get_by_role("radio", name="Soft", exact=True).click()
        page.wait_for_timeout(1000)
        before = image_at(page, preview(page))
        src = preview(page).get_attribute("src")
        y = round(h * 0.8)
        drag(page, [(box["x"] + w * (0.35 + 0.015 * i), box["y"] + y) for i in range(21)])
        wait_new_preview(page, src)
        page.wait_for_timeout(500)
        change = np.abs(image_at(page, preview(page)) - before).sum(axis=2)[:, round(w * 0.5)]
        middle = int(np.argmax(change))
        assert abs(middle - y) <= 2 and change[middle] > 60
        assert 0.15 * change[middle] < change[middle - 9] < 0.85 * change[middle], change[middle - 16:middle + 17]
        assert 0.15 * change[middle] < change[middle + 9] < 0.85 * change[middle], change[middle - 16:middle + 17]
        assert change[middle - 18] < 0.1 * change[middle] and change[middle + 18] < 0.1 * change[middle]
        shot(page, "84-soft-stroke")
        page.get_by_role("button", name="Undo").click()
        page.wait_for_timeout(1500)
        assert np.abs(image_at(page, preview(page)) - before).sum(axis=2).max() <= 30, "Undo left the soft stroke"

        # the whole photo shown, the wheel turned down over it scrolls the page, as anywhere else
        page.mouse.move(box["x"] + w * 0.5, box["y"] + h * 0.5)
        page.mouse.wheel(0, 300)
        page.wait_for_timeout(800)
        assert view_of(page)["zoom"] == 1 and frame.bounding_box()["y"] < box["y"] - 100


def test_phone_pinch_zooms_without_painting_and_a_finger_paints_where_it_touches(server, browser, lemur_path):
    """A 390x844 phone: two fingers spread apart zoom in (the first finger down a moment before
    the second paints nothing), and a finger stroke then lands where the zoomed photo showed it."""
    with session(browser, **PHONE) as page:
        page.goto(server[0])
        upload(page, lemur_path)
        page.get_by_text("Corrected mask: this is what will be kept").wait_for()
        frame = page.locator(".bd-frame")
        deadline = time.monotonic() + 30
        while frame.bounding_box()["width"] > 390 - 2 * 16:
            assert time.monotonic() < deadline, "the canvas is wider than the phone's screen"
            page.wait_for_timeout(250)
        page.get_by_role("radio", name="Remove", exact=True).click()
        page.wait_for_timeout(1500)
        box = frame.bounding_box()
        w, h = box["width"], box["height"]
        frame.scroll_into_view_if_needed()
        box = frame.bounding_box()
        cdp = page.context.new_cdp_session(page)

        def touch(kind: str, *points) -> None:
            cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": [
                {"x": box["x"] + w * fx, "y": box["y"] + h * fy, "id": i} for i, (fx, fy) in enumerate(points)]})

        before = image_at(page, preview(page))
        touch("touchStart", (0.4, 0.5))
        page.wait_for_timeout(30)
        touch("touchStart", (0.4, 0.5), (0.6, 0.5))
        for i in range(1, 11):
            touch("touchMove", (0.4 - 0.01 * i, 0.5), (0.6 + 0.01 * i, 0.5))  # 0.2 of the width apart to 0.4
        touch("touchEnd")
        page.wait_for_timeout(1500)
        view = view_of(page)
        assert view["zoom"] == pytest.approx(2, abs=0.02)
        assert (w * 0.5 - view["pan-x"]) / view["zoom"] == pytest.approx(w * 0.5, abs=1)  # the middle stays
        assert painted_pixels(page) == 0, "the pinch painted"
        assert np.abs(image_at(page, preview(page)) - before).sum(axis=2).max() <= 30
        shot(page, "85-phone-pinched")

        src = preview(page).get_attribute("src")
        touch("touchStart", (0.3, 0.45))
        for i in range(1, 16):
            touch("touchMove", (0.3 + 0.025 * i, 0.45))
        touch("touchEnd")
        wait_new_preview(page, src)
        page.wait_for_timeout(500)
        shown = image_at(page, preview(page))
        canvas_w = shown.shape[1]
        scale = canvas_w / w  # the preview is drawn at the canvas's size
        x0 = (w * 0.3 - view["pan-x"]) / view["zoom"] * scale
        x1 = (w * 0.675 - view["pan-x"]) / view["zoom"] * scale
        row = (h * 0.45 - view["pan-y"]) / view["zoom"] * scale
        stroke_lands(changed_where(before, shown), row, x0, x1, width=30 / view["zoom"] * scale)
        shot(page, "86-phone-zoomed-stroke")
        page.get_by_role("button", name="Fit", exact=True).click()
        assert view_of(page)["zoom"] == 1
        shot(page, "87-phone-fit")


def test_colour_job_finishes_while_another_sessions_ai_job_runs(server, browser, lemur_path):
    """Two people: one starts a long AI job, the other a colour job, which is done while the AI
    job still runs; a second AI job shows its place in the AI queue."""
    url, _, data = server
    with session(browser) as first, session(browser) as second:
        for page in (first, second):
            page.goto(url)
            upload(page, lemur_path)
            page.get_by_text("Corrected mask: this is what will be kept").wait_for()
        first.get_by_text("AI scene", exact=True).click()
        first.get_by_text("Advanced settings").click()
        steps = first.locator('[data-testid="stSlider"]').filter(has_text="Steps").get_by_role("slider")
        steps.focus()
        steps.press("End")  # 150 steps: minutes here
        first.get_by_label("Describe the new background", exact=True).fill("a long walk on a beach")
        first.get_by_role("button", name="Generate").click()
        first.get_by_text(re.compile(r"generate: step \d+ of 150 · .* so far")).wait_for()
        bar = first.locator('[data-testid="stProgressBarTrack"] > div').evaluate("b => getComputedStyle(b).backgroundColor")
        assert bar == "rgb(197, 57, 72)", "the progress bar in the theme's red, as the buttons"
        ai_id = running(data)

        started = time.monotonic()
        second.get_by_role("button", name="Generate").click()
        done = second.get_by_text(re.compile(r"Generation \d+ done"))
        done.wait_for(timeout=60_000)
        latency = time.monotonic() - started
        colour_id = int(re.search(r"Generation (\d+) done", done.inner_text())[1])
        assert generation(data, ai_id).status == "running", "the colour job waited for the AI job"
        colour = generation(data, colour_id)
        waited = (colour.started_at - colour.created_at).total_seconds()
        print(f"colour job while an AI job runs: waited {waited:.2f} s in the queue, {latency:.1f} s click to result")
        assert waited < 5
        shot(first, "40-ai-job-running")
        shot(second, "41-colour-done-meanwhile")

        second.get_by_text("AI scene", exact=True).click()
        second.get_by_label("Describe the new background", exact=True).fill("a harbour")
        second.get_by_role("button", name="Generate").click()
        second.get_by_text(re.compile(r"Waiting in the AI queue: 1 job ahead")).wait_for()
        shot(second, "42-second-ai-job-queued")
        second.get_by_role("button", name="Cancel").click()
        first.get_by_role("button", name="Cancel").click()
        first.get_by_text(re.compile(r"was cancelled")).wait_for()
        second.get_by_text(re.compile(r"was cancelled")).wait_for()


def test_studio_shows_the_preview_changing_step_by_step(server, browser, lemur_path):
    """An AI job with the tiny models and 150 steps: under the progress bar the job view shows the
    estimate after the latest step, the photo composited over it, updated in place (one image,
    its step in the caption); two moments a few steps apart show different pictures; Cancel stops
    the job and the preview goes with it."""
    from core.masks.segment import automatic_mask

    url, _, _ = server
    with session(browser) as page:
        page.goto(url)
        upload(page, lemur_path)
        page.get_by_text("Corrected mask: this is what will be kept").wait_for()
        page.get_by_text("AI scene", exact=True).click()
        page.get_by_text("Advanced settings").click()
        steps = page.locator('[data-testid="stSlider"]').filter(has_text="Steps").get_by_role("slider")
        steps.focus()
        steps.press("End")  # 150 steps: a long job, time enough to watch it form
        page.get_by_label("Describe the new background", exact=True).fill("a misty forest")
        page.get_by_role("button", name="Generate").click()
        live = page.locator('[data-testid="stImage"]').filter(has_text="a quick preview of the background")
        caption = re.compile(r"Step (\d+) of 150: a quick preview of the background as it forms")

        def shown_step() -> int:
            return int(caption.search(live.inner_text())[1])

        live.wait_for()
        first_step = shown_step()
        first = image_at(page, live.locator("img"))
        shot(page, "50-live-preview-first")
        deadline = time.monotonic() + 120
        while shown_step() < first_step + 5:
            assert time.monotonic() < deadline, "the preview did not move on"
            page.wait_for_timeout(200)
        assert live.count() == 1, "the preview updates in place"
        later_step = shown_step()
        later = image_at(page, live.locator("img"))
        shot(page, "51-live-preview-later")
        print(f"live preview: step {first_step} then step {later_step}")
        assert first.shape == later.shape == (248, 384, 3)  # the photo's shape, 384 px long
        assert np.abs(first - later).mean() > 2, "the preview changes as the background forms"
        photo = Image.open(lemur_path).convert("RGB")
        alpha = np.asarray(automatic_mask(photo, "u2netp").resize((384, 248), Image.Resampling.BILINEAR))
        expected = np.asarray(photo.resize((384, 248), Image.Resampling.BILINEAR), dtype=np.int16)
        subject, background = alpha == 255, alpha == 0
        assert subject.mean() > 0.1 and background.mean() > 0.1
        for shown in (first, later):  # the subject is the photo's (as a JPEG), the background the estimate's
            assert np.abs(shown - expected)[subject].mean() < 6
            assert np.abs(shown - expected)[background].mean() > 20
        page.get_by_role("button", name="Cancel").click()
        page.get_by_text(re.compile(r"was cancelled")).wait_for()
        assert live.count() == 0


def test_click_selection_adds_and_removes_a_region(server, browser, lemur_path, tiny_sam, one_torch_thread,
                                                   synthetic_set):
    """Click mode with a (tiny, random) Segment Anything: a click on the background adds the
    region SAM finds there to the mask, exactly as core.masks.click_select.combine says; the same
    click in Remove mode takes it out again; Undo takes the last selection back. (SAM runs here
    with one thread, as in the server: a random SAM has logits at 0 on a pixel or two, and a
    different summation order flips them.)"""
    from core.masks.click_select import combine, select_region
    from core.masks.segment import automatic_mask

    photo = Image.open(lemur_path).convert("RGB")
    auto = automatic_mask(photo)

    def blocks(pixels: np.ndarray) -> np.ndarray:  # 6x6 means: the preview is a JPEG, the region a random speckle
        h, w = (pixels.shape[0] // 6) * 6, (pixels.shape[1] // 6) * 6
        return pixels[:h, :w].reshape(h // 6, 6, w // 6, 6, 3).mean(axis=(1, 3))

    def mask_shown_is(page, expected: Image.Image, what: str) -> None:
        deadline = time.monotonic() + 30
        while True:
            shown = image_at(page, preview(page))
            predicted = np.asarray(brush.mask_overlay(photo, expected, (shown.shape[1], shown.shape[0])), dtype=np.int16)
            differs = (np.abs(blocks(shown) - blocks(predicted)).max(axis=2) > 12).mean()
            if differs < 0.01:
                return
            assert time.monotonic() < deadline, f"{what}: the mask shown is not combine's ({differs:.3f} differ)"
            page.wait_for_timeout(250)

    def generated_mask(page, after: int = 0) -> tuple[int, np.ndarray]:
        """Generate; (the new generation's id, the mask it recorded: exact, full size)."""
        page.get_by_role("button", name="Generate").click()
        done = re.compile(r"Generation (\d+) done")
        deadline = time.monotonic() + WAIT_MS / 1000
        while not [t for t in page.get_by_text(done).all_inner_texts() if int(done.search(t)[1]) > after]:
            assert time.monotonic() < deadline, "the generation did not finish"
            page.wait_for_timeout(250)
        view = generation(server[2], int(done.search(page.get_by_text(done).first.inner_text())[1]))
        assert view.user_mask_sha256, "a corrected mask is sent as the user's"
        return view.id, np.asarray(Image.open(view.output("mask").path))

    with session(browser) as page:
        page.goto(server[0])
        upload(page, lemur_path)
        page.get_by_text("Corrected mask: this is what will be kept").wait_for()
        page.get_by_role("radio", name="Click", exact=True).click()
        page.get_by_text("Click on a part of the photo").wait_for()
        canvas = page.locator("canvas.dc-canvas").first
        box = canvas.bounding_box()
        at = (box["width"] * 0.1, box["height"] * 0.15)  # top-left background: not subject
        page.mouse.click(box["x"] + at[0], box["y"] + at[1])
        listed = page.get_by_text(re.compile(r"1\. added the region at \((\d+), (\d+)\)"))
        point = tuple(int(v) for v in re.search(r"at \((\d+), (\d+)\)", listed.inner_text()).groups())
        clicked = (at[0] * photo.width / box["width"], at[1] * photo.height / box["height"])
        assert abs(point[0] - clicked[0]) <= 1.5 and abs(point[1] - clicked[1]) <= 1.5, (point, clicked)
        assert np.asarray(auto)[point[1], point[0]] == 0
        region = select_region(photo, points=[point], model_id=tiny_sam, device="cpu")
        added = combine(auto, region, "add")
        mask_shown_is(page, added, "add")
        deadline = time.monotonic() + 30
        while painted_pixels(page):  # the click's mark is taken off the canvas: it is no brush stroke
            assert time.monotonic() < deadline, "the click's mark stayed on the canvas"
            page.wait_for_timeout(250)
        shot(page, "50-click-add")

        page.get_by_role("radio", name="Remove", exact=True).click()
        page.wait_for_timeout(500)
        page.mouse.click(box["x"] + at[0], box["y"] + at[1])
        page.get_by_text(re.compile(r"2\. removed the region at")).wait_for()
        removed = combine(added, region, "remove")
        mask_shown_is(page, removed, "remove")
        shot(page, "51-click-remove")
        first_id, used = generated_mask(page)
        assert np.array_equal(used, np.asarray(removed)), "the generation used another mask"
        in_region = np.asarray(region) >= 128
        assert in_region.mean() > 0.01 and (np.asarray(removed)[in_region] == 0).all(), "remove takes the region out"
        assert np.array_equal(np.asarray(removed)[~in_region], np.asarray(auto)[~in_region]), "outside: as before"

        page.get_by_role("button", name="Undo").click()  # back to the added region
        mask_shown_is(page, added, "undo")
        assert np.array_equal(generated_mask(page, first_id)[1], np.asarray(added))
        page.get_by_role("radio", name="Box", exact=True).click()
        page.get_by_text("Drag a box around an object").wait_for()
        shot(page, "52-box-tool")

        # the areas the automatic mask was unsure about: outlined and numbered, flipped by a click
        upload(page, synthetic_set / "plush_clock.png")
        page.get_by_text(re.compile(r"The cut-out was unsure about \d+ area")).wait_for()
        page.wait_for_timeout(1000)
        outline = (np.abs(canvas_background(page).astype(int) - brush.OUTLINE_RGB).max(axis=2) < 40).mean()
        assert outline > 0.002, "the unsure areas are not outlined on the photo"
        src = preview(page).get_attribute("src")
        page.get_by_role("button", name=re.compile(r"^Area 1: dropped")).click()
        page.get_by_role("button", name=re.compile(r"^Area 1: kept")).wait_for()
        wait_new_preview(page, src)
        shot(page, "53-unsure-area-kept")


@contextmanager
def recording_hub():
    """A stand-in for the Hugging Face hub on a loopback port (HF_ENDPOINT): answers 404 to
    everything and records what was asked, so a test sees whether anything tried to download."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    asked: list[str] = []

    class Hub(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            asked.append(self.path)
            self.send_error(404)

        do_HEAD = do_GET

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", asked
    finally:
        server.shutdown()


def test_a_click_without_segment_anything_says_so_once_and_downloads_nothing(browser, lemur_path, tmp_path):
    """Issue 21: a click with Segment Anything's weights missing (and a network allowed: no
    HF_HUB_OFFLINE) shows the one warning that names the model and the command that fetches it;
    nothing is downloaded on the way (a second warning used to quote the download's failure:
    "download failed: LocalEntryNotFoundError: ... Name or service not known")."""
    from playwright.sync_api import expect

    with recording_hub() as (hub, asked), \
            streamlit_app(tmp_path / "data", free_port(), "no-sam.log", HF_HUB_OFFLINE="", HF_ENDPOINT=hub,
                          BACKDROP_SAM_MODEL="nobody/not-downloaded-sam") as (url, _), session(browser) as page:
        page.goto(url)
        upload(page, lemur_path)
        page.get_by_text("Corrected mask: this is what will be kept").wait_for()
        page.get_by_role("radio", name="Click", exact=True).click()
        warning = page.locator('[data-testid="stAlertContentWarning"]')
        warning.filter(has_text="not on this machine").wait_for()
        canvas = page.locator("canvas.dc-canvas").first
        box = canvas.bounding_box()
        page.mouse.click(box["x"] + box["width"] * 0.1, box["y"] + box["height"] * 0.5)
        page.wait_for_timeout(4000)  # the click's run, and the one after it
        shot(page, "64-click-without-segment-anything")
        texts = warning.all_inner_texts()
        assert len(texts) == 1 and "nobody/not-downloaded-sam" in texts[0] and "models fetch" in texts[0], texts
        for raw in ("download failed", "LocalEntryNotFoundError", "Error:", "Errno"):
            expect(page.get_by_text(raw)).to_have_count(0)
        assert page.locator('[data-testid="stException"]').count() == 0
    assert asked == [], f"a download was attempted: {asked[:3]}"


def test_messages_name_the_command_that_works(server, browser, lemur_path):
    """Missing weights: each listed with the command that fetches them from the app's folder, what
    to do in a paragraph of its own, and no sentence that does not apply; the Models page refuses
    a folder that does not exist and shows only commands in its command block."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    url, _, data = server

    def save(page, inpaint: str, depth: str) -> None:  # through the sidebar: the session (and its photo) stays
        page.get_by_role("link", name="Models").click()
        page.get_by_text("Depth ControlNet (id or folder)").wait_for()
        fields = page.locator('[data-testid="stTextInput"] input')
        fields.nth(1).fill(inpaint)
        fields.nth(1).press("Tab")  # each value sent (a rerun) before the button is pressed
        fields.nth(3).fill(depth)
        fields.nth(3).press("Tab")
        for _ in range(3):  # a press that lands while a rerun replaces the page is pressed again
            page.get_by_role("button", name="Save settings").click()
            try:
                page.get_by_text(re.compile(r"Settings saved|there is no folder")).first.wait_for(timeout=20_000)
                return
            except PlaywrightTimeout:
                continue

    def ai_box(page, kind: str):
        page.get_by_role("link", name="Studio").click()
        page.get_by_text("AI scene", exact=True).click()
        box = page.locator(f'[data-testid="stAlertContent{kind}"]').filter(has_text="weights are not on this machine")
        box.wait_for()
        return box

    with session(browser) as page:
        page.goto(url)
        upload(page, lemur_path)
        page.get_by_text("Corrected mask: this is what will be kept").wait_for()
        save(page, "/no/such/inpainting-folder", "")
        page.get_by_text(re.compile(r"there is no folder '/no/such/inpainting-folder'")).wait_for()
        assert page.get_by_text("Settings saved").count() == 0 and not (data / "settings.json").exists()
        shot(page, "60-models-refuses-missing-folder")
        try:
            save(page, "nobody/not-downloaded-inpaint", "nobody/not-downloaded-depth")
            page.get_by_text("Settings saved").wait_for()
            block = page.locator('[data-testid="stCode"]').first.inner_text().strip().splitlines()
            # the two chosen here among the other missing ones (the fast-mode LoRA, the step preview's TAESD)
            assert {".venv/bin/backdrop models fetch nobody/not-downloaded-depth",
                    ".venv/bin/backdrop models fetch nobody/not-downloaded-inpaint"} <= set(block)
            assert all(line.startswith(".venv/bin/backdrop models fetch ") for line in block), block
            shot(page, "61-models-commands")

            box = ai_box(page, "Warning")
            assert box.locator("li").all_inner_texts() == [
                "Inpainting model: nobody/not-downloaded-inpaint, to fix: .venv/bin/backdrop models fetch "
                "nobody/not-downloaded-inpaint"]
            assert box.locator("p").last.inner_text().startswith("Run the command in a terminal in the app's folder")
            assert page.get_by_role("button", name="Generate").is_disabled()
            shot(page, "62-studio-missing-weights")

            save(page, "", "nobody/not-downloaded-depth")  # the inpainting model back: only depth missing
            page.get_by_text("Settings saved").wait_for()
            box = ai_box(page, "Info")
            assert box.locator("li").all_inner_texts() == [
                "Depth estimator: nobody/not-downloaded-depth, to fix: .venv/bin/backdrop models fetch "
                "nobody/not-downloaded-depth"]
            assert "Depth-control strength to 0" in box.locator("p").last.inner_text()
            assert "Colour, gradient" not in box.inner_text()
            shot(page, "63-studio-no-depth")
        finally:  # the other tests' defaults back (the environment's tiny models)
            (data / "settings.json").unlink(missing_ok=True)


def test_improve_prompt_proposes_and_the_user_edits_and_uses_it(server, browser, lemur_path, tiny_models,
                                                                tiny_prompt_lm):
    """Short words in the prompt box, Improve prompt: the assistant's proposal (the tiny random
    model's words, without the deny-list's names) in a box of its own, the prompt box untouched;
    edited and used, it becomes the prompt."""
    from playwright.sync_api import expect

    from core.prompting.assistant import propose
    from core.prompting.denylist import DenyList

    url, _, data = server
    (data / "prompt-denylist.txt").write_text("# brands\nnike\n")
    expected = propose("a Nike shoe on a beach", tiny_prompt_lm, "cpu", DenyList.parse("nike"))
    try:
        with session(browser) as page:
            page.goto(url)
            upload(page, lemur_path)
            page.get_by_text("Corrected mask: this is what will be kept").wait_for()
            page.locator("canvas.dc-canvas").first.wait_for()  # the canvas has reported its width: no rerun pending
            page.get_by_text("AI scene", exact=True).click()
            prompt = page.get_by_label("Describe the new background", exact=True)
            prompt.fill("a Nike shoe on a beach")
            page.get_by_role("button", name="Improve prompt").click()
            proposal = page.get_by_label("Proposed prompt: edit it, then use it")
            proposal.wait_for()
            expect(proposal).to_have_value(expected.text)
            expect(prompt).to_have_value("a Nike shoe on a beach")  # a proposal, not a rewrite
            page.locator(".st-key-studio_proposal_box").get_by_text(re.compile("Taken out by the deny-list: Nike")).wait_for()
            page.locator(".st-key-studio_proposal_box").scroll_into_view_if_needed()
            shot(page, "70-improve-prompt-proposal")
            edited = "on wet sand at golden hour, " + " ".join(expected.text.split()[:6])
            proposal.fill(edited)
            page.get_by_role("button", name="Use this prompt").click()
            expect(prompt).to_have_value(edited)
            expect(page.get_by_label("Proposed prompt: edit it, then use it")).to_have_count(0)
            prompt.scroll_into_view_if_needed()
            shot(page, "71-improve-prompt-used")

            # a generation the command line ran with --enhance-prompt: History shows both prompts
            gid = enhanced_generation(data, lemur_path, tiny_models["inpaint"], tiny_prompt_lm)
            page.goto(f"{url}/history?id={gid}")
            page.get_by_text(f"Generation #{gid}").wait_for()
            page.get_by_text("Prompt as it ran, written by the prompt assistant from the prompt above").wait_for()
            page.locator('[data-testid="stCode"]').filter(has_text=expected.text).wait_for()
            page.get_by_text("Taken out by the deny-list: Nike").wait_for()
            page.get_by_text("Prompt as it ran, written by").scroll_into_view_if_needed()
            shot(page, "72-history-prompt-as-typed-and-as-it-ran")
    finally:
        (data / "prompt-denylist.txt").unlink()


def enhanced_generation(data: Path, lemur_path, inpaint_model: str, prompt_model: str) -> int:
    """What `backdrop replace -b ai --prompt "a Nike shoe on a beach" --enhance-prompt` records,
    in the server's data folder (its own models, one step)."""
    from core.request import GenerationRequest
    from storage import service
    from storage.db import Database

    database = Database(None, data)
    try:
        request = GenerationRequest(background="ai", prompt="a Nike shoe on a beach", enhance_prompt=True,
                                    prompt_model=prompt_model, inpaint_model=inpaint_model, steps=1, control_scale=0.0,
                                    device="cpu")
        mask = Image.new("L", (680, 440), 0)
        mask.paste(255, (200, 100, 480, 440))
        gid, _ = service.generate_and_record(lemur_path.read_bytes(), request, mask, db=database)
        return gid
    finally:
        database.dispose()


def choose(page, label: str, option: str) -> None:
    """Pick ``option`` in the select box labelled ``label`` (a tap on a touch screen). A press
    that lands while the page reruns opens nothing (seen under load): it is pressed again."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    select = page.locator('[data-testid="stSelectbox"]').filter(has_text=label).first.locator('[role="combobox"]')
    wanted = page.get_by_role("option", name=option)
    touch = page.context.pages[0].evaluate("() => navigator.maxTouchPoints > 0")
    for _ in range(4):
        select.tap() if touch else select.click()
        try:
            wanted.wait_for(timeout=15_000)
            break
        except PlaywrightTimeout:
            continue
    wanted.click()


def framing_preview(page, caption: str):
    """The Studio's framing preview: the image shown above ``caption``."""
    figure = page.locator('[data-testid="stImage"]').filter(has_text=caption)
    figure.wait_for()
    return figure.locator("img").first


def test_framing_preview_and_a_marketplace_square_on_desktop_and_phone(server, browser, lemur_path):
    """Issue 23 in the browser: choosing a size preset shows, before generating, the canvas with
    the photo placed on it (outlined), the subject's box and the new area; the marketplace
    square then generates a 2000x2000 image on white. On a phone the preview fits the screen."""
    url, _, data = server
    with session(browser) as page:
        page.goto(url)
        upload(page, lemur_path)
        page.get_by_text("Corrected mask: this is what will be kept").wait_for()
        page.get_by_text("Output: the photo's own size (680x440).").wait_for()
        choose(page, "Size", "Marketplace square on white")
        image = framing_preview(page, "Canvas 2000x2000; subject 85% of the canvas")
        shown = image_at(page, image)
        assert shown.shape[0] == shown.shape[1], "the preview is the square canvas"
        orange = (np.abs(shown - np.array([255, 136, 0])) < 40).all(axis=2)
        ys, xs = np.nonzero(orange)
        side = shown.shape[0]
        assert abs(max(xs.max() - xs.min(), ys.max() - ys.min()) / side - 0.85) < 0.02, "the subject's box at 85%"
        assert abs((xs.min() + xs.max()) / 2 / side - 0.5) < 0.02 and abs((ys.min() + ys.max()) / 2 / side - 0.5) < 0.02
        image.scroll_into_view_if_needed()
        shot(page, "60-framing-preview-desktop")
        page.get_by_role("button", name="Generate").click()
        done = page.get_by_text(re.compile(r"Generation \d+ done"))
        done.wait_for()
        view = generation(data, int(re.search(r"Generation (\d+) done", done.inner_text())[1]))
        result = Image.open(view.results[0].path)
        assert result.size == (2000, 2000) and np.asarray(result)[5, 5].tolist() == [255, 255, 255]
        page.get_by_role("tab", name="Result").scroll_into_view_if_needed()
        shot(page, "61-marketplace-square-result")

    with session(browser, **PHONE) as page:
        page.goto(url)
        upload(page, lemur_path)
        page.get_by_text("Corrected mask: this is what will be kept").wait_for()
        choose(page, "Size", "Story 9:16")
        image = framing_preview(page, "Canvas 1080x1920")
        image.scroll_into_view_if_needed()
        page.wait_for_timeout(500)
        box = image.bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390, box
        assert abs(box["height"] / box["width"] - 1920 / 1080) < 0.03, "the preview keeps the canvas's shape"
        shot(page, "62-framing-preview-phone")
