"""Several people using the app at once, each in their own Chromium session (Playwright's async
API: one event loop drives every browser page concurrently). Used by tests/test_load.py and
bench/load_bench.py.

Each user opens the Studio, uploads a photo of their own (the lemur with a few pixels of their
own, so every user's photo has its own sha256), presses Generate as soon as the corrected mask
shows and the button has stopped moving (some double-click it), waits for "Generation N done", then reloads the page, which must
show generation N again. What comes back, per user: the generation the page showed, the seconds
from the press to the result, and what went wrong.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from tests.test_browser import CHROMIUM, CHROMIUM_ARGS as BROWSER_ARGS

CHROMIUM_ARGS = [*BROWSER_ARGS, "--disable-dev-shm-usage"]  # 8 pages at once: /dev/shm may be small
DONE = re.compile(r"Generation (\d+) done")


@dataclass
class Outcome:
    user: int
    photo_sha256: str
    double_click: bool
    generation: int | None = None
    seconds: float | None = None  # from the press of Generate to the result on the page
    error: str | None = None
    reloaded: bool = False  # after a reload, the page showed the same generation's result


def user_photos(source: Path, folder: Path, users: int) -> list[Path]:
    """One PNG per user: ``source`` with user ``i``'s own mark in its top-left corner."""
    folder.mkdir(parents=True, exist_ok=True)
    photo = Image.open(source).convert("RGB")
    paths = []
    for i in range(users):
        own = photo.copy()
        own.putpixel((i, 0), (255, 0, i))
        path = folder / f"user{i}.png"
        own.save(path)
        paths.append(path)
    return paths


async def one_user(browser, url: str, user: int, photo: Path, double_click: bool, timeout_s: float,
                   shots: Path | None) -> Outcome:
    outcome = Outcome(user, hashlib.sha256(photo.read_bytes()).hexdigest(), double_click)
    context = await browser.new_context(viewport={"width": 1400, "height": 1800})
    context.set_default_timeout(timeout_s * 1000)
    page = await context.new_page()
    try:
        await page.goto(url)
        await page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(str(photo))
        await page.get_by_text("Corrected mask: this is what will be kept").wait_for()
        button = page.get_by_role("button", name="Generate")
        await settled(button)
        await page.evaluate("""() => { window.__clicks = [];
            document.addEventListener('click', e => window.__clicks.push(
                (e.target.closest('button') || e.target).outerHTML.slice(0, 80)), true); }""")
        pressed = time.monotonic()
        await (button.dblclick() if double_click else button.click())
        done = page.get_by_text(DONE)
        await done.wait_for()
        outcome.seconds = time.monotonic() - pressed
        outcome.generation = int(DONE.search(await done.inner_text())[1])
        await page.locator('[data-testid="stImage"] img').last.wait_for()
        if shots is not None:
            await page.screenshot(path=str(shots / f"user{user}.png"))
        await page.reload()  # a new session at the same address: the same generation comes back
        await page.get_by_text(f"Generation {outcome.generation} done").wait_for()
        outcome.reloaded = True
    except Exception as error:  # noqa: BLE001 - one user's failure is that user's outcome
        outcome.error = f"{type(error).__name__}: {str(error).splitlines()[0]}"
        try:
            outcome.error += f"; clicks: {await page.evaluate('window.__clicks')}"
        except Exception:  # noqa: BLE001
            pass
        if shots is not None:
            await page.screenshot(path=str(shots / f"user{user}-failed.png"))
    finally:
        await context.close()
    return outcome


async def settled(locator, quiet_ms: int = 300, timeout_s: float = 60) -> None:
    """Wait until ``locator`` stays in place for ``quiet_ms``. Under load the Studio's elements
    above the Generate button (the canvas, the mask preview) take their size while it is already
    shown: measured with 8 sessions, it moved 782 -> 864 -> 940 -> 1208 px within 0.3 s of the
    mask showing, and a click sent meanwhile lands beside it (Playwright's own stability check
    compares two animation frames, which are slow then). A person sees the button move and
    clicks where it ends up."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        box = await locator.bounding_box()
        if box is not None and box == last:
            return
        last = box
        await locator.page.wait_for_timeout(quiet_ms)
    raise TimeoutError(f"the button kept moving for {timeout_s} s")


async def _run(url: str, photos: list[Path], double_clicks: set[int], timeout_s: float, shots: Path | None):
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            return await asyncio.gather(*(one_user(browser, url, i, photo, i in double_clicks, timeout_s, shots)
                                          for i, photo in enumerate(photos)))
        finally:
            await browser.close()


def run_users(url: str, photos: list[Path], double_clicks: set[int] = frozenset(), timeout_s: float = 180,
              shots: Path | None = None) -> list[Outcome]:
    """Every user at once; returns when each has a result or has failed (browsers closed)."""
    if shots is not None:
        shots.mkdir(parents=True, exist_ok=True)
    return asyncio.run(_run(url, photos, set(double_clicks), timeout_s, shots))


def rss_mb(pid: int) -> float:
    """A process's resident memory (VmRSS) in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")
