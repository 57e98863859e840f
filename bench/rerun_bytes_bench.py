"""What the Studio sends the browser for one rerun (issue 21): the bytes the page receives over
its WebSocket when the brush size changes, with a photo on the canvas, and again with a result
shown (its before/after and edge views). Streamlit re-sends a rerun's elements; a picture inside
one (the canvas's photo as a data URL, the comparison views' images) came with every rerun, or as
a reference to the browser's cached copy (the cache whose race froze the tab: test_soak.py).

    .venv/bin/python bench/rerun_bytes_bench.py [--app-root DIR] [--label NAME]

``--app-root``: the checkout whose app is measured (default: this one), e.g. a worktree of an
earlier commit for the figure before. Prints the medians and writes bench/results/rerun-bytes-*.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

COUNTER = """
(() => {
  const Native = window.WebSocket;
  window.__received = 0;
  window.WebSocket = class extends Native {
    addEventListener(type, listener, options) {
      if (type !== "message") return super.addEventListener(type, listener, options);
      return super.addEventListener(type, (event) => { window.__received += event.data.byteLength || 0; listener(event); },
                                    options);
    }
  };
})();
"""


def changes(page, count: int) -> list[int]:
    """Bytes received for each of ``count`` brush-size changes (up and down in turn)."""
    slider = page.locator('[data-testid="stSlider"]').filter(has_text="Brush size").get_by_role("slider")
    sizes = []
    for i in range(count):
        before = page.evaluate("window.__received")
        slider.focus()
        slider.press("PageUp" if i % 2 == 0 else "PageDown")
        page.wait_for_timeout(2500)
        sizes.append(page.evaluate("window.__received") - before)
    return sizes


def main() -> int:
    import os
    import subprocess

    from playwright.sync_api import sync_playwright

    from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, free_port, wait_healthy

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app-root", type=Path, default=ROOT)
    parser.add_argument("--label", default="now")
    parser.add_argument("--changes", type=int, default=6)
    args = parser.parse_args()
    lemur = ROOT / "tests" / "data" / "lemur" / "lemur.png"
    port = free_port()
    env = {**os.environ, "BACKDROP_DATA_DIR": tempfile.mkdtemp(), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(args.app_root)}
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "streamlit_app.py", "--server.port", str(port),
                               "--server.address", "127.0.0.1"], cwd=args.app_root, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    figures: dict = {"label": args.label,  # which checkout ran, in words (never a machine path)
                     "app_root": "this checkout" if args.app_root.resolve() == ROOT else "another worktree (--app-root)"}
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, server)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            context = browser.new_context(viewport={"width": 1400, "height": 2000})
            context.set_default_timeout(120_000)
            context.add_init_script(COUNTER)
            page = context.new_page()
            page.goto(url)
            page.locator('[data-testid="stFileUploaderDropzoneInput"]').first.set_input_files(str(lemur))
            page.get_by_text("Corrected mask: this is what will be kept").wait_for()
            page.wait_for_timeout(3000)
            figures["photo"] = changes(page, args.changes)
            page.get_by_role("button", name="Generate").click()
            page.get_by_text("done: ran").wait_for()
            page.wait_for_timeout(3000)
            figures["photo_and_result"] = changes(page, args.changes)
            browser.close()
    finally:
        server.terminate()
        server.wait(30)
    load = os.getloadavg()[0]
    figures["load_average"] = round(load, 2)
    for key in ("photo", "photo_and_result"):
        print(f"{args.label}: one brush-size change, {key.replace('_', ' ')}: median {statistics.median(figures[key]):.0f} "
              f"bytes (runs: {figures[key]})")
    print(f"load average {load:.2f}")
    out = ROOT / "bench" / "results" / f"rerun-bytes-{args.label}-{time.strftime('%Y%m%d-%H%M')}.json"
    out.write_text(json.dumps(figures, indent=1))
    print(f"wrote {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
