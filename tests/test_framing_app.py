"""Size and placement in the app (AppTest, no browser): the size preset select fills the
framing fields (and the marketplace's white background), the Studio previews the framing on
the photo before generating, a generation is made at the canvas's size, a remix brings its
framing back, and the Batch page applies one framing to every photo."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from app_pages import framing
from core.look.framing import frame_for
from core.request import GenerationRequest
from test_app import app, data_dir, generate_button, pressable, upload_lemur, wait_done  # noqa: F401 - data_dir: the fixture


def test_size_preset_fills_the_form_and_the_studio_previews_it(data_dir, lemur_path):
    from storage import history

    at = upload_lemur(app("studio"), lemur_path)
    assert any("the photo's own size" in c.value for c in at.caption)  # the default: nothing to preview
    at.radio(key="studio_f_kind").set_value("gradient").run()
    at.selectbox(key="studio_f_size_preset").set_value("marketplace-square").run()
    assert not at.exception, at.exception
    state = at.session_state
    assert (state["studio_f_canvas"], state["studio_f_fill"], state["studio_f_anchor_kind"]) == ("2000x2000", 0.85,
                                                                                                  "center")
    assert at.radio(key="studio_f_kind").value == "color" and state["studio_f_color_colour"] == "#ffffff"
    captions = [caption for element in at.get("image") for caption in element.captions]
    assert any("Canvas 2000x2000; subject 85% of the canvas" in c for c in captions), captions
    generate_button(at).click().run()
    view = wait_done(at, state["studio_job"])
    assert not at.exception, at.exception  # the result's views: before and after on the canvas
    assert Image.open(view.results[0].path).size == (2000, 2000)
    assert view.request["canvas"] == "2000x2000" and view.record["canvas"] == [2000, 2000]

    shown = app("history")  # the History's views of a framed result: before and after on its canvas
    shown.button(key=f"history_open_{view.id}").click().run()
    assert not shown.exception, shown.exception

    at.selectbox(key="studio_f_anchor_kind").set_value("position").run()
    at.slider(key="studio_f_anchor_x").set_value(0.3).run()
    assert state["studio_f_anchor"] == "0.3,0.5"
    assert history.get(view.id).request["anchor"] == "center"


def test_preview_image_shows_the_canvas_and_the_subject_box(lemur_path):
    photo = Image.open(lemur_path).convert("RGB")
    mask = Image.new("L", photo.size, 0)
    mask.paste(255, (100, 50, 300, 350))
    request = GenerationRequest(canvas="16:9@1920", fill=0.5, anchor="0.3,0.5")
    frame = frame_for(request, photo.size, mask)
    image = np.asarray(framing.preview_image(photo, mask, frame, side=400)).astype(int)
    assert image.shape == (225, 400, 3)
    assert (image[0] == framing.CANVAS_LINE).all() and (image[:, 0] == framing.CANVAS_LINE).all()
    orange = (image == framing.BOX_LINE).all(axis=-1)
    ys, xs = np.nonzero(orange)
    assert abs((xs.min() + xs.max()) / 2 - 0.3 * 400) <= 2 and abs(ys.max() - ys.min() - 0.5 * 225) <= 3
    assert "new area" in framing.caption(frame, request) or frame.new_area == 0


def test_batch_page_applies_one_framing_to_every_photo(data_dir, lemur_path, astronaut):
    at = app("batch")
    photo = io.BytesIO()
    astronaut.resize((300, 300)).save(photo, format="PNG")
    at.file_uploader(key="batch_uploads").set_value([("lemur.png", lemur_path.read_bytes(), "image/png"),
                                                     ("astronaut.png", photo.getvalue(), "image/png")]).run()
    at.selectbox(key="batch_f_size_preset").set_value("feed-portrait").run()
    assert at.session_state["batch_f_anchor_kind"] == "bottom"
    pressable(at, "batch_start").click().run()
    assert not at.exception, at.exception
    for job in at.session_state["batch_jobs"]:
        view = wait_done(at, job["id"])
        assert view.status == "done" and view.request["canvas"] == "1080x1350" and view.request["anchor"] == "bottom"
        assert Image.open(view.results[0].path).size == (1080, 1350)
        assert view.record["subject_box"][3] == pytest.approx(1350 - 0.06 * 1080, abs=0.01)  # on the bottom margin


def test_a_framed_results_before_is_the_photo_where_it_went(lemur_path):
    """Before / after of a framed result: the photo on the result's canvas at the recorded
    place, the new area hatched, so the slider compares the same places."""
    photo = Image.open(lemur_path).convert("RGB")
    frame = frame_for(GenerationRequest(canvas="16:9"), photo.size, None)
    before = framing.on_canvas(photo, frame)
    x0, y0, x1, y1 = frame.covered
    assert before.size == frame.canvas and (x0, x1 - x0, y1 - y0) == (frame.offset[0], 680, 440)
    assert np.array_equal(np.asarray(before)[y0:y1, x0:x1], np.asarray(photo))
    assert set(map(tuple, np.asarray(before)[:, 0])) <= set(framing.NEW_AREA)
