"""The tools issue 21 asked for, through AppTest: the cut-out downloadable while the mask is
fixed (before any Generate), result thumbnails on the Batch page, and settings read back from a
PNG into the Studio's form. Their browser tests are in test_browser_tools.py."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from app_pages import cutout_now
from core.masks import brush
from test_app import app, data_dir, editor, generate_button, paint, pressable, upload_lemur, wait_done  # noqa: F401
from test_brush import strokes


def now_buttons(at) -> list[str]:
    return [b.label for b in at.get("download_button") if "studio_now" in b.proto.id]


def test_cutout_before_generate_is_the_cutout_a_generation_stores(data_dir, lemur_path):
    """The mask section offers the cut-out and the mask as soon as the photo is in, with the
    user's strokes; the cut-out is bit for bit the one a generation from that mask stores, with
    the form's spill removal on and off."""
    at = upload_lemur(app(), lemur_path)
    assert now_buttons(at) == ["Cut-out PNG (transparent)", "Mask PNG"]
    edit = editor(at)
    size = brush.display_size(*edit.photo.size)
    paint(at, strokes(size, add_box=(0, 0, 40, 40)))
    mask = edit.mask()
    assert np.asarray(mask)[5, 5] == 255 and np.asarray(edit.auto_mask)[5, 5] == 0  # the stroke is in it
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(cutout_now.mask_png(mask)))), np.asarray(mask))

    at.radio(key="studio_f_kind").set_value("color").run()
    for spill in (True, False):
        at.checkbox(key="studio_f_spill_removal").set_value(spill).run()
        now = Image.open(io.BytesIO(cutout_now.cutout_png(edit.photo, edit.mask(), spill)))
        assert now.mode == "RGBA" and now.size == edit.photo.size
        generate_button(at).click().run()
        view = wait_done(at, at.session_state["studio_job"])
        assert view.status == "done", view.error
        stored = Image.open(view.output("cutout").path)
        assert np.array_equal(np.asarray(now), np.asarray(stored)), f"spill removal {spill}"
    # with spill removal on, soft edge pixels were re-coloured: the two settings differ
    on = np.asarray(Image.open(io.BytesIO(cutout_now.cutout_png(edit.photo, edit.mask(), True))))
    off = np.asarray(Image.open(io.BytesIO(cutout_now.cutout_png(edit.photo, edit.mask(), False))))
    assert (on != off).any() and np.array_equal(on[..., 3], off[..., 3])


def test_an_empty_mask_offers_no_cutout(data_dir, lemur_path):
    at = upload_lemur(app(), lemur_path)
    size = brush.display_size(*editor(at).photo.size)
    paint(at, strokes(size, erase_box=(0, 0, size[0], size[1])))
    assert not np.asarray(editor(at).mask()).any()
    (cut,) = [b for b in at.get("download_button") if b.label == "Cut-out PNG (transparent)"]
    assert cut.proto.disabled
    assert any(c.value.startswith("The mask is empty") for c in at.caption)


def test_batch_shows_each_finished_result_small_without_decoding_it_again(data_dir, lemur_path, astronaut,
                                                                          monkeypatch):
    from storage import history
    from storage.db import get_database

    buffer = io.BytesIO()
    astronaut.save(buffer, format="PNG")
    at = app("batch")
    at.file_uploader(key="batch_uploads").set_value([("lemur.png", lemur_path.read_bytes(), "image/png"),
                                                     ("astronaut.png", buffer.getvalue(), "image/png")]).run()
    at.radio(key="batch_f_kind").set_value("transparent").run()
    pressable(at, "batch_start").click().run()
    jobs = at.session_state["batch_jobs"]
    for job in jobs:
        assert wait_done(at, job["id"]).status == "done"
    at.run()
    assert not at.exception, at.exception
    assert [t.value for t in at.text if t.value.startswith("#")] == [f"#{jobs[0]['id']} lemur.png",
                                                                       f"#{jobs[1]['id']} astronaut.png"]
    assert len(at.get("image")) == 2
    store = get_database().images
    for job in jobs:  # made from the store's thumbnail of the result, kept on disk
        result = history.get(job["id"]).output("result")
        assert store.thumbnail(result.sha256).exists()

    opened = []
    real_open = Image.open

    def recording_open(source, *args, **kwargs):
        if isinstance(source, (str, Path)):
            opened.append(Path(source))
        return real_open(source, *args, **kwargs)

    monkeypatch.setattr(Image, "open", recording_open)
    at.run()
    assert not at.exception, at.exception
    assert len(at.get("image")) == 2
    assert not [path for path in opened if store.root in path.parents], "a stored image was decoded on a rerun"


def form_values(at) -> dict:
    from app_pages.form import FORM_FIELDS

    return {name: at.session_state[f"studio_f_{name}"] for name in ["kind", *(f.name for f in FORM_FIELDS)]
            if f"studio_f_{name}" in at.session_state}


def drop_settings(at, name: str, data: bytes):
    at.file_uploader(key="studio_settings_png").set_value((name, data, "image/png")).run()
    assert not at.exception, at.exception
    return at


def test_a_dropped_a1111_png_fills_the_form_and_a_bad_one_changes_nothing(data_dir, lemur_path):
    from test_png_settings import CLASSIC, UNKNOWN_SAMPLER, png

    at = upload_lemur(app(), lemur_path)
    at.radio(key="studio_f_kind").set_value("ai").run()
    at.text_area(key="studio_f_prompt").set_value("my own words").run()
    at.slider(key="studio_f_harmony").set_value(0.3).run()
    before = form_values(at)
    for name, data in (("notes.png", b"not an image"), ("plain.png", png()), ("photo.jpg", b"\xff\xd8\xff\xe0")):
        drop_settings(at, name, data)
        assert form_values(at) == before, name  # nothing in the form lost
        assert at.error[-1].value == "Nothing was filled in: the form is as it was."
        assert repr(name) in at.code[-1].value
    drop_settings(at, "cat.png", png({"parameters": CLASSIC}))
    assert at.text_area(key="studio_f_prompt").value.startswith("masterpiece, best quality, a cat")
    assert at.text_input(key="studio_f_negative_prompt").value == "lowres, bad anatomy, (worst quality:1.4)"
    assert (at.number_input(key="studio_f_seed").value, at.slider(key="studio_f_steps").value,
            at.slider(key="studio_f_guidance").value, at.selectbox(key="studio_f_scheduler").value) == (
        1234567890, 20, 7.0, "dpmpp")
    assert at.slider(key="studio_f_harmony").value == 0.3  # not in the file: as it was
    assert at.success[0].value == ("Filled in from AUTOMATIC1111's parameters text: prompt, negative prompt, "
                                   "background (AI scene), steps, guidance, seed, scheduler.")
    assert at.info[-1].value == "Filled in, but not quite as the file's maker ran it:"
    assert not [w for w in at.warning if w.value.startswith("Not understood")]
    assert "'DPM++ 2M Karras' became DPM++ 2M" in at.code[-1].value
    assert any(c.value.startswith("In the file but not Backdrop settings") and "Model hash" in c.value
               for c in at.caption)
    at.selectbox(key="studio_f_scheduler").set_value("ddim").run()
    drop_settings(at, "astronaut.png", png({"parameters": UNKNOWN_SAMPLER}))
    assert at.selectbox(key="studio_f_scheduler").value == "ddim"  # Heun: not understood, left as it was
    assert at.slider(key="studio_f_steps").value == 20  # 200 is out of range: left as it was
    assert at.text_area(key="studio_f_prompt").value == "portrait of an astronaut"
    assert at.warning[0].value == "Not understood, left as they were:"  # above the form's own
    assert "Sampler 'Heun' is not one Backdrop has" in at.code[-1].value


def test_a_dropped_backdrop_result_gives_back_its_request(data_dir, lemur_path):
    from storage import history

    at = upload_lemur(app(), lemur_path)
    at.radio(key="studio_f_kind").set_value("gradient").run()
    at.color_picker(key="studio_f_gradient_top").set_value("#102030").run()
    at.slider(key="studio_f_contact_shadow").set_value(0.45).run()
    at.checkbox(key="studio_f_spill_removal").set_value(False).run()
    generate_button(at).click().run()
    view = wait_done(at, at.session_state["studio_job"])
    assert view.status == "done", view.error
    made = form_values(at)
    at.session_state["studio_f_prompt"] = "typed since"  # (its box is shown for AI backgrounds)
    at.radio(key="studio_f_kind").set_value("color").run()
    at.slider(key="studio_f_contact_shadow").set_value(0.0).run()
    at.checkbox(key="studio_f_spill_removal").set_value(True).run()
    drop_settings(at, "result.png", history.get(view.id).output("result").path.read_bytes())
    # a gradient's request: its background and look come back; its prompt and seed are a form's
    # defaults, not the result's, so the prompt typed since stays
    assert form_values(at) == made | {"prompt": "typed since"}
    assert at.success[0].value == (f"Filled in from a Backdrop result, generation #{view.id}: the background and "
                                    "its edge, colour and shadow settings (the models and device stay this "
                                    "machine's).")
    generate_button(at).click().run()
    again = wait_done(at, at.session_state["studio_job"])
    assert again.request == view.request
