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
