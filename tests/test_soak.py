"""One tab, a long session (issue 21): 40 uploads and 200 widget changes in one Chromium tab,
with no "Connection error".

The freeze it guards against: Streamlit's forward-message cache. The browser keeps a copy of
each large message (10 kB or more) and drops a copy unused for two finished runs; with each rerun
request it lists the copies it holds, and the server sends a message it lists as a reference to
that copy. A run that finishes after the browser asked (its "finished" still on the way) drops a
copy the reference is already on its way to: "Failed to process a Websocket message. Error: Cached
ForwardMsg MISS", every widget disabled. The Studio re-sent large messages on every rerun (the
canvas with its photo inside, about 43 kB, different for each tool, mode and brush size), so
changing the tool from Click to Box to Brush quickly re-sent the Brush canvas as such a reference.
The window is the time the browser takes to read the server's messages: the test delays every
message the page receives by DELAY_MS (a slow link, a busy phone), which widens it to the whole
delay, and changes the tool inside it.

Also measured: the bytes the page receives for one change of the brush size, once a photo is on
the canvas (before: the canvas's photo came with every rerun).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, SHOTS, free_port, streamlit_app

UPLOADS = 40
CHANGES_PER_UPLOAD = 5
DELAY_MS = 600
ARTIFACTS = SHOTS.parent / "soak"
# Every message the page receives reaches Streamlit's code DELAY_MS late, in order; counts bytes.
SLOW_LINK = """
(() => {
  const Native = window.WebSocket;
  window.__received = 0;
  window.WebSocket = class extends Native {
    addEventListener(type, listener, options) {
      if (type !== "message") return super.addEventListener(type, listener, options);
      return super.addEventListener(type, (event) => {
        window.__received += event.data.byteLength || 0;
        setTimeout(() => listener(event), %d);
      }, options);
    }
  };
})();
"""

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.soak,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")]


def photos(folder: Path, count: int) -> list[Path]:
    """``count`` different photos (scikit-image's, turned and sized differently)."""
    from skimage import data

    sources = ("astronaut", "coffee", "chelsea", "rocket", "cat", "immunohistochemistry")
    made = []
    for i in range(count):
        image = Image.fromarray(getattr(data, sources[i % len(sources)])()).convert("RGB")
        path = folder / f"photo-{i:02d}.jpg"
        image.rotate(i * 7 % 20).resize((600 + 4 * i, 450)).save(path, quality=90)
        made.append(path)
    return made


def test_forty_uploads_and_two_hundred_changes_in_one_tab(tmp_path):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    figures: dict = {"uploads": 0, "changes": 0, "delay_ms": DELAY_MS, "bytes_per_brush_size_change": []}
    with streamlit_app(tmp_path / "data", free_port(), "soak.log") as (url, _), sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1400, "height": 1600})
        context.set_default_timeout(90_000)
        context.add_init_script(SLOW_LINK % DELAY_MS)
        page = context.new_page()
        page.on("console", lambda message: errors.append(message.text)
                if "ForwardMsg" in message.text or "Websocket" in message.text else None)
        page.goto(url)
        page.get_by_text("Upload a photo to start").wait_for()
        started = time.monotonic()

        def alive() -> None:
            assert not errors and page.get_by_text("Connection error").count() == 0, \
                f"after {figures['uploads']} uploads and {figures['changes']} changes: {errors[:1]}"

        def tool(name: str, wait_ms: int) -> None:
            alive()
            page.get_by_role("radio", name=name, exact=True).click()
            figures["changes"] += 1
            page.wait_for_timeout(wait_ms)

        try:
            for i, photo in enumerate(photos(tmp_path, UPLOADS)):
                page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(str(photo))
                page.get_by_text(f"Working on: {photo.name}").wait_for()
                figures["uploads"] += 1
                page.wait_for_timeout(2 * DELAY_MS)
                # Click, then Box, then Brush while Box's run is finished but not yet read: Brush's
                # canvas is the one shown two finished runs before
                tool("Click", 3 * DELAY_MS)
                tool("Box", DELAY_MS // 2)
                tool("Brush", 2 * DELAY_MS)
                slider = page.locator('[data-testid="stSlider"]').filter(has_text="Brush size").get_by_role("slider")
                for key in ("PageUp", "PageDown"):
                    alive()
                    before = page.evaluate("window.__received")
                    slider.focus()
                    slider.press(key)
                    figures["changes"] += 1
                    page.wait_for_timeout(3 * DELAY_MS)
                    figures["bytes_per_brush_size_change"].append(page.evaluate("window.__received") - before)
            figures["seconds"] = round(time.monotonic() - started)
            page.wait_for_timeout(2000)
            alive()

            # the tab still works: a stroke reaches the mask
            preview = page.locator('[data-testid="stImage"] img').first
            src = preview.get_attribute("src")
            box = page.locator("canvas.dc-canvas").first.bounding_box()
            page.mouse.move(box["x"] + box["width"] * 0.1, box["y"] + box["height"] * 0.1)
            page.mouse.down()
            for step in range(1, 15):
                page.mouse.move(box["x"] + box["width"] * (0.1 + step * 0.02), box["y"] + box["height"] * 0.1)
            page.mouse.up()
            page.wait_for_function("src => document.querySelector('[data-testid=\"stImage\"] img').src !== src", arg=src)
            page.screenshot(path=str(ARTIFACTS / "soak-stroke-after.png"))
        finally:
            page.screenshot(path=str(ARTIFACTS / "soak-end.png"))
            (ARTIFACTS / "figures.json").write_text(json.dumps(figures, indent=1))
            browser.close()
    sizes = figures["bytes_per_brush_size_change"]
    print(f"\nsoak: {figures['uploads']} uploads, {figures['changes']} changes in {figures['seconds']} s; "
          f"bytes received per brush-size change: median {int(np.median(sizes))}, most {max(sizes)}")
    assert figures["uploads"] == UPLOADS and figures["changes"] == UPLOADS * CHANGES_PER_UPLOAD
    assert max(sizes) < 30_000, "a rerun re-sends a picture (the canvas with its photo was 43 kB alone)"
