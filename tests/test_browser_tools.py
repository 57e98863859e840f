"""The tools issue 21 asked for, in Chromium on a desktop and on a 390x844 phone (the harness of
test_browser.py): the cut-out and the mask downloaded while the mask is fixed, before any
Generate; the Batch page's result thumbnails; and settings read back from a dropped PNG.
Screenshots go to test-artifacts/browser/tools/."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest
from PIL import Image

from test_browser import (CHROMIUM, CHROMIUM_ARGS, PHONE, SHOTS, drag, free_port, image_at, painted_pixels, preview,
                          session, streamlit_app, upload, wait_new_preview)

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(not __import__("pathlib").Path(CHROMIUM).exists(),
                                 reason="Debian's chromium is not installed (scripts/system-deps.sh installs it)")]

TOOL_SHOTS = SHOTS / "tools"
DEVICES = {"desktop": {}, "phone": PHONE}


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    """The app with no AI weights (none of these tools needs them); yields (url, data folder)."""
    data = tmp_path_factory.mktemp("tools-data")
    with streamlit_app(data, free_port(), "streamlit-tools.log") as (url, _):
        yield url, data


@pytest.fixture(scope="module")
def chromium():
    from playwright.sync_api import sync_playwright

    TOOL_SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


def shot(page, name: str, full_page: bool = False) -> None:
    page.mouse.move(1, 1)
    page.wait_for_timeout(500)  # let the last rerun paint
    page.screenshot(path=str(TOOL_SHOTS / f"{name}.png"), full_page=full_page)


def generations(data) -> int:
    from storage import history
    from storage.db import Database

    database = Database(None, data)
    try:
        return history.count_generations(db=database)
    finally:
        database.dispose()


def stroke(page, device: str) -> None:
    """One Add stroke across the photo's top-left background: a mouse drag, or a finger."""
    canvas = page.locator("canvas.dc-canvas").first
    canvas.scroll_into_view_if_needed()
    page.wait_for_timeout(500)
    box = canvas.bounding_box()
    points = [(box["x"] + box["width"] * (0.04 + 0.012 * i), box["y"] + box["height"] * (0.15 + 0.004 * i))
              for i in range(21)]
    src = preview(page).get_attribute("src")
    if device == "phone":
        cdp = page.context.new_cdp_session(page)
        cdp.send("Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": points[0][0], "y": points[0][1]}]})
        for x, y in points[1:]:
            cdp.send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]})
        cdp.send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})
    else:
        drag(page, points)
    wait_new_preview(page, src)
    assert painted_pixels(page) > 0


def download(page, name: str, folder) -> Image.Image:
    button = page.get_by_role("button", name=name)
    button.scroll_into_view_if_needed()
    with page.expect_download() as info:
        button.click()
    path = folder / info.value.suggested_filename
    info.value.save_as(path)
    image = Image.open(path)
    image.load()
    return image


@pytest.mark.parametrize("device", DEVICES)
def test_cutout_and_mask_download_before_generate(app_server, chromium, lemur_path, tmp_path, device):
    """Upload, paint one stroke, download: the cut-out is the full-size RGBA cut-out the pipeline
    would make from that mask (stroke included), and nothing was generated."""
    from app_pages.cutout_now import cutout_png
    from core.imaging import load_image
    from core.masks.segment import automatic_mask

    url, data = app_server
    with session(chromium, **DEVICES[device]) as page:
        page.goto(url)
        upload(page, lemur_path)
        page.get_by_text("Corrected mask: this is what will be kept").wait_for()
        page.locator("canvas.dc-canvas").first.wait_for()
        stroke(page, device)
        page.get_by_role("button", name="Cut-out PNG (transparent)").scroll_into_view_if_needed()
        shot(page, f"{device}-01-cutout-buttons-under-the-mask")
        cut = download(page, "Cut-out PNG (transparent)", tmp_path)
        mask = download(page, "Mask PNG", tmp_path)
    photo = load_image(lemur_path.read_bytes())
    assert cut.mode == "RGBA" and cut.size == photo.size and mask.mode == "L" and mask.size == photo.size
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lemur-cutout.png", "lemur-mask.png"]
    alpha = np.asarray(cut.getchannel("A"))
    assert np.array_equal(alpha, np.asarray(mask))
    auto = np.asarray(automatic_mask(photo))
    added = (alpha == 255) & (auto == 0)
    assert added.sum() > 500, "the stroke is in the cut-out"
    ys, xs = np.nonzero(added)
    assert xs.mean() < photo.width * 0.5 and ys.mean() < photo.height * 0.4  # where it was painted
    expected = Image.open(__import__("io").BytesIO(cutout_png(photo, mask, spill_removal=True)))
    assert np.array_equal(np.asarray(cut), np.asarray(expected)), "the pipeline's cut-out, spill removed"
    assert generations(data) == 0, "nothing was generated"


@pytest.mark.parametrize("device", DEVICES)
def test_batch_shows_each_result_small(app_server, chromium, lemur_path, astronaut, tmp_path, device):
    from playwright.sync_api import expect

    from app_pages.compare import card
    from storage import history
    from storage.db import Database

    url, data = app_server
    second = tmp_path / "astronaut.png"
    astronaut.save(second)
    with session(chromium, **DEVICES[device]) as page:
        page.goto(f"{url}/batch")
        page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files([str(lemur_path), str(second)])
        page.get_by_text("Transparent", exact=True).click()
        page.get_by_role("button", name="Process 2 photo(s)").click()
        page.get_by_text("2 of 2 done").wait_for()
        pictures = page.locator('.st-key-batch_thumbs [data-testid="stImage"] img')
        expect(pictures).to_have_count(2, timeout=30_000)  # the last thumbnail may show a moment after the count
        page.wait_for_function("() => [...document.querySelectorAll('.st-key-batch_thumbs img')]"
                               ".every(i => i.complete && i.naturalWidth > 0)")
        labels = page.locator(".st-key-batch_thumbs").inner_text()
        ids = [int(n) for n in re.findall(r"#(\d+) ", labels)]
        assert re.findall(r"#\d+ (\S+)", labels) == ["lemur.png", "astronaut.png"] and len(ids) == 2
        boxes = [pictures.nth(i).bounding_box() for i in range(2)]
        width = page.viewport_size["width"]
        assert all(b["width"] <= 160 and b["x"] >= 0 and b["x"] + b["width"] <= width for b in boxes), boxes
        shown = [image_at(page, pictures.nth(i)) for i in range(2)]
        pictures.first.scroll_into_view_if_needed()
        shot(page, f"{device}-10-batch-thumbnails")
    database = Database(None, data)
    try:
        for generation_id, pixels in zip(ids, shown):
            result = history.get(generation_id, db=database).output("result")
            with Image.open(database.images.thumbnail(result.sha256)) as thumb:
                expected = np.asarray(card(thumb, (256, 192)), dtype=np.int16)
            assert pixels.shape == expected.shape and np.abs(pixels - expected).mean() < 3, "its own result"
    finally:
        database.dispose()
    assert abs(shown[0] - shown[1]).mean() > 10  # two different results


CLASSIC = """masterpiece, best quality, a cat sitting on a windowsill
Negative prompt: lowres, bad anatomy
Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1234567890, Size: 512x768, Model hash: 6ce0161689, \
Model: v1-5-pruned-emaonly, Version: v1.5.1"""


@pytest.mark.parametrize("device", DEVICES)
def test_settings_from_a_dropped_png_fill_the_form(app_server, chromium, lemur_path, tmp_path, device):
    from playwright.sync_api import expect
    from test_png_settings import png

    url, _ = app_server
    (tmp_path / "plain.png").write_bytes(png())
    (tmp_path / "cat.png").write_bytes(png({"parameters": CLASSIC}))
    with session(chromium, **DEVICES[device]) as page:
        page.goto(url)
        upload(page, lemur_path)
        page.get_by_text("Corrected mask: this is what will be kept").wait_for()
        page.get_by_text("AI scene", exact=True).click()
        prompt = page.get_by_label("Describe the new background", exact=True)
        prompt.fill("my own words")
        prompt.blur()
        page.wait_for_timeout(1500)
        dropzone = page.locator('.st-key-studio_settings_png [data-testid="stFileUploaderDropzoneInput"]')
        dropzone.set_input_files(str(tmp_path / "plain.png"))
        page.get_by_text("Nothing was filled in: the form is as it was.").wait_for()
        expect(page.get_by_text(re.compile("carries no settings to read"))).to_be_visible()
        expect(prompt).to_have_value("my own words")
        page.get_by_text("Nothing was filled in").scroll_into_view_if_needed()
        shot(page, f"{device}-20-settings-bad-file")
        dropzone.set_input_files(str(tmp_path / "cat.png"))
        page.get_by_text(re.compile("Filled in from AUTOMATIC1111's parameters text")).wait_for()
        expect(prompt).to_have_value("masterpiece, best quality, a cat sitting on a windowsill")
        expect(page.get_by_label("Avoid (negative prompt)", exact=True)).to_have_value("lowres, bad anatomy")
        expect(page.get_by_label("Seed", exact=True)).to_have_value("1234567890")
        expect(page.get_by_text(re.compile("'DPM\\+\\+ 2M Karras' became DPM\\+\\+ 2M"))).to_be_visible()
        page.get_by_text(re.compile("Filled in from")).scroll_into_view_if_needed()
        shot(page, f"{device}-21-settings-filled")
        page.get_by_text("Advanced settings").click()
        steps = page.locator('[data-testid="stSlider"]').filter(has_text="Steps")
        expect(steps.get_by_role("slider")).to_have_value("20")
        guidance = page.locator('[data-testid="stSlider"]').filter(has_text="Guidance")
        expect(guidance.get_by_role("slider")).to_have_value("7")
        steps.scroll_into_view_if_needed()
        time.sleep(0.3)
        shot(page, f"{device}-22-settings-advanced")
