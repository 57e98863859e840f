"""The Studio canvas's zoom and pan (app_pages/canvas_view.js), run by Node: where a point of the
screen lands on the canvas (and so on the photo) at a zoom and a pan, and how wheel, buttons and
pinch move the view. The browser test (tests/test_browser.py) paints through it in Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

VIEW = Path(__file__).resolve().parent.parent / "app_pages" / "canvas_view.js"
NODE = shutil.which("node")

def run(script: str):
    """``script``'s ``result`` (JSON), with canvas_view.js's exports in scope."""
    assert NODE, "Node.js is needed (scripts/system-deps.sh installs the nodejs package)"
    program = f"import * as v from {json.dumps(VIEW.as_uri())};\n{script}\nconsole.log(JSON.stringify(result));"
    out = subprocess.run([NODE, "--input-type=module", "-e", program], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_a_point_on_the_screen_lands_where_the_zoomed_photo_shows_it():
    """At zoom 3 panned by (-400, -150) on a 540x360 canvas, the frame's point (270, 180) shows
    canvas point ((270 + 400) / 3, (180 + 150) / 3); on a 2160x1440 photo that is 4 times as far."""
    result = run("const result = [v.toCanvas({z: 3, x: -400, y: -150}, 270, 180), v.toCanvas(v.FIT, 12, 34)];")
    assert result[0] == {"x": pytest.approx(670 / 3), "y": pytest.approx(110)}
    assert result[1] == {"x": 12, "y": 34}  # fitted: one frame pixel is one canvas pixel
    photo = (result[0]["x"] * 2160 / 540, result[0]["y"] * 1440 / 360)
    assert photo == (pytest.approx(893.33, abs=0.01), pytest.approx(440))


def test_zooming_keeps_the_point_under_the_pointer_and_the_photo_over_the_frame():
    result = run("""
        const w = 540, h = 360;
        const wheel = v.zoomAt(v.FIT, 2, 100, 50, w, h);           // the wheel over (100, 50)
        const centre = v.zoomAt(v.zoomAt(v.FIT, v.STEP, w / 2, h / 2, w, h), 2, w / 2, h / 2, w, h);
        const corner = v.zoomAt(v.FIT, 4, 0, 0, w, h);
        const tooFar = v.zoomAt(v.FIT, 50, 270, 180, w, h);
        const back = v.zoomAt({z: 4, x: -1000, y: -700}, 0.5, 10, 10, w, h);
        const panned = v.clamp({z: 2, x: 100, y: -5000}, w, h);
        const result = {wheel, under: v.toCanvas(wheel, 100, 50), centre, corner, tooFar, back, panned};""")
    assert result["wheel"] == {"z": 2, "x": -100, "y": -50}
    assert result["under"] == {"x": 100, "y": 50}  # the same canvas point under the pointer
    assert result["centre"] == {"z": pytest.approx(2), "x": pytest.approx(-270), "y": pytest.approx(-180)}
    assert result["corner"] == {"z": 4, "x": 0, "y": 0}
    assert result["tooFar"]["z"] == 8  # at most 800%
    assert result["back"] == {"z": 1, "x": 0, "y": 0}  # never smaller than the frame: the whole photo
    assert result["panned"] == {"z": 2, "x": 0, "y": -360}  # the photo's edge stops at the frame's


def test_two_fingers_zoom_by_their_spread_and_move_the_photo_with_their_midpoint():
    result = run("""
        const w = 390, h = 260;
        const from = [{x: 150, y: 130}, {x: 250, y: 130}];   // 100 px apart around (200, 130)
        const to = [{x: 100, y: 100}, {x: 300, y: 100}];     // 200 px apart around (200, 100)
        const view = v.pinch(v.FIT, from, to, w, h);
        const result = {view, under: v.toCanvas(view, 200, 100)};""")
    assert result["view"]["z"] == 2
    assert result["under"] == {"x": pytest.approx(200), "y": pytest.approx(130)}  # what was between them
