"""The Streamlit app's logic through streamlit.testing's AppTest (no browser): each page, the
brush-mask arithmetic, settings persistence. The canvas is an unknown element here, so brush
strokes are handed to the Studio's mask editor as the canvas would return them (``paint``)."""

from __future__ import annotations

import datetime as dt
import io
import json
import zipfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from storage import settings as user_settings
from core.masks import brush
from app_pages import job_view, ui
from app_pages.press import Press, press_state_key
from test_brush import strokes

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "streamlit_app.py")
WHITE = (255, 255, 255)


def pressable(at, key: str):
    """A button drawn by app_pages.press.press (each drawing of it has its own key inside ``key``)."""
    (button,) = [b for b in at.button if (b.key or "").startswith(f"{key}__")]
    return button


def generate_button(at):
    return pressable(at, "studio_generate")


def editor(at):
    """The Studio's mask editor (core.masks.editor.MaskEditor) in this session."""
    return at.session_state["studio_editor"]


def paint(at, pixels: np.ndarray, objects: list[dict] | None = None) -> None:
    """Brush strokes as the canvas returns them (its objects, and their pixels as RGBA), then a run."""
    editor(at).canvas_returned({"objects": [{"type": "path"}] if objects is None else objects}, pixels)
    at.run()


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """One data folder for the module: the app's worker is one per process (st.cache_resource)
    and keeps the database it started with."""
    patch = pytest.MonkeyPatch()
    folder = tmp_path_factory.mktemp("app-data")
    patch.setenv("BACKDROP_DATA_DIR", str(folder))
    patch.delenv("BACKDROP_DATABASE_URL", raising=False)
    job_view.workers.clear()
    yield folder
    job_view.workers().stop(timeout=30)
    job_view.workers.clear()
    patch.undo()


def app(page: str | None = None):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=60).run()
    if page:
        at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, at.exception
    return at


def upload_lemur(at, lemur_path):
    at.file_uploader(key="studio_upload").set_value(("lemur.png", lemur_path.read_bytes(), "image/png")).run()
    assert not at.exception, at.exception
    return at


def wait_done(at, generation_id: int, timeout: float = 40):
    from storage import history

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        view = history.get(generation_id)
        if view.status not in ("queued", "running"):
            at.run()
            return view
        time.sleep(0.2)
    raise AssertionError(f"generation {generation_id} still {view.status} after {timeout} s")


# ---------------------------------------------------------------- pure functions

def test_batch_dir_argument():
    assert ui.batch_dir_argument(["--batch-dir", "/photos"]) == "/photos"
    assert ui.batch_dir_argument(["--batch-dir=/p q"]) == "/p q"
    assert ui.batch_dir_argument(["--other"]) is None


def test_settings_precedence_atomic_write_and_damaged_file(tmp_path, monkeypatch):
    monkeypatch.setenv("BACKDROP_INPAINT_MODEL", "env/inpaint")
    monkeypatch.delenv("BACKDROP_DEVICE", raising=False)
    assert user_settings.load_settings(tmp_path)["inpaint_model"] == "env/inpaint"
    assert user_settings.load_settings(tmp_path)["device"] == "auto"
    saved = user_settings.save_settings({"inpaint_model": "mine/inpaint", "device": "cpu"}, tmp_path)
    assert saved["inpaint_model"] == "mine/inpaint" and saved["device"] == "cpu"
    assert json.loads((tmp_path / "settings.json").read_text()) == {"device": "cpu", "inpaint_model": "mine/inpaint"}
    assert [p.name for p in tmp_path.iterdir()] == ["settings.json"]  # no temporary file left
    assert user_settings.save_settings({"inpaint_model": ""}, tmp_path)["inpaint_model"] == "env/inpaint"
    with pytest.raises(Exception, match="device must be one of"):
        user_settings.save_settings({"device": "tpu"}, tmp_path)
    with pytest.raises(Exception, match="unknown setting"):
        user_settings.save_settings({"colour": "red"}, tmp_path)
    (tmp_path / "settings.json").write_text("{not json")
    assert user_settings.load_settings(tmp_path)["device"] == "auto"


# ---------------------------------------------------------------- pages

def test_studio_brush_corrects_the_mask_and_the_result(data_dir, lemur_path):
    from storage import history

    at = upload_lemur(app(), lemur_path)
    photo = editor(at).photo
    auto = np.asarray(editor(at).auto_mask)
    assert auto.shape == (photo.height, photo.width)
    assert (auto == 255).mean() > 0.2 and (auto == 0).mean() > 0.2  # a real subject and background
    assert len(at.get("image")) == 1  # the corrected-mask preview
    size = brush.display_size(*photo.size)
    # add a block of the top-left background, erase a block of the subject's centre
    sx, sy = photo.width / size[0], photo.height / size[1]
    add_box = (0, 0, 40, 40)
    cx, cy = np.argwhere(auto == 255).mean(axis=0)[::-1] / (sx, sy)
    erase_box = (int(cx) - 10, int(cy) - 10, int(cx) + 10, int(cy) + 10)
    assert auto[5, 5] == 0 and auto[int(cy * sy), int(cx * sx)] == 255
    paint(at, strokes(size, add_box, erase_box))
    mask = np.asarray(editor(at).mask())
    assert mask[5, 5] == 255 and mask[int(cy * sy), int(cx * sx)] == 0

    at.radio(key="studio_f_kind").set_value("color").run()
    at.color_picker(key="studio_f_color_colour").set_value("#ff0000").run()
    assert not generate_button(at).disabled
    generate_button(at).click().run()
    generation_id = at.session_state["studio_job"]
    view = wait_done(at, generation_id)
    assert view.status == "done", view.error
    assert view.user_mask_sha256  # the corrected mask was sent and recorded
    result = np.asarray(Image.open(view.results[0].path).convert("RGB"))
    original = np.asarray(photo)
    assert tuple(result[5, 5]) == tuple(original[5, 5])  # added by the brush: the photo kept
    assert tuple(result[int(cy * sy), int(cx * sx)]) == (255, 0, 0)  # erased: the red background
    assert any(s.value.startswith(f"Generation {generation_id} done") for s in at.success)
    labels = [b.label for b in at.get("download_button") if "studio_now" not in b.proto.id]  # the result's
    assert labels == ["Download result PNG", "Cut-out PNG (transparent)", "Mask PNG"]
    assert history.get(generation_id).background_kind == "color"


def test_drawing_survives_page_switch_and_undo_clear_reset(data_dir, lemur_path):
    at = upload_lemur(app(), lemur_path)
    size = brush.display_size(*editor(at).photo.size)
    drawing = {"objects": [{"type": "Path", "id": 1}, {"type": "Path", "id": 2}]}
    paint(at, strokes(size, add_box=(0, 0, 30, 30)), drawing["objects"])
    at.radio(key="studio_f_kind").set_value("ai").run()
    at.text_area(key="studio_f_prompt").set_value("a quiet harbour").run()
    changed = np.asarray(editor(at).mask()).copy()
    for page in ("history", "batch", "models", "studio"):
        at.switch_page(f"app_pages/{page}.py").run()
        assert not at.exception, at.exception
    assert at.radio(key="studio_f_kind").value == "ai"  # the form is kept too
    assert at.text_area(key="studio_f_prompt").value == "a quiet harbour"
    assert np.array_equal(np.asarray(editor(at).mask()), changed)
    assert editor(at).canvas["objects"] == drawing["objects"]  # handed back to the canvas

    at.button(key="studio_undo").click().run()
    init = editor(at).canvas
    assert init["objects"] == [{"type": "Path", "id": 1}]
    at.button(key="studio_clear").click().run()
    assert editor(at).canvas["objects"] == []
    assert editor(at).canvas["backdrop_nonce"] != init["backdrop_nonce"]
    assert np.array_equal(np.asarray(editor(at).mask()), np.asarray(editor(at).auto_mask))

    photo = editor(at).photo
    editor(at).select("add", ("box", (0, 0, photo.width, photo.height)), Image.new("L", photo.size, 255))
    at.run()
    assert np.asarray(editor(at).mask()).min() == 255
    at.button(key="studio_reset").click().run()
    assert np.array_equal(np.asarray(editor(at).mask()), np.asarray(editor(at).auto_mask))


def test_ai_option_explains_missing_weights_other_kinds_work(data_dir, lemur_path, monkeypatch, tmp_path):
    missing = tmp_path / "no-such-inpaint-model"
    monkeypatch.setenv("BACKDROP_INPAINT_MODEL", str(missing))
    at = upload_lemur(app(), lemur_path)
    at.radio(key="studio_f_kind").set_value("ai").run()
    warning = " ".join(w.value for w in at.warning)
    assert "cannot run" in warning and str(missing) in warning and "inpaint" in warning
    assert generate_button(at).disabled
    for kind in ("color", "gradient", "blur", "transparent"):
        at.radio(key="studio_f_kind").set_value(kind).run()
        assert not generate_button(at).disabled, kind
        assert not at.warning


def test_missing_controlnet_only_warns_as_the_pipeline_runs_without_it(data_dir, lemur_path, monkeypatch, tiny_models,
                                                                        tmp_path):
    monkeypatch.setenv("BACKDROP_INPAINT_MODEL", str(tiny_models["inpaint"]))
    monkeypatch.setenv("BACKDROP_DEPTH_MODEL", str(tiny_models["depth"]))
    monkeypatch.setenv("BACKDROP_CONTROLNET_MODEL", str(tmp_path / "no-controlnet"))
    at = upload_lemur(app(), lemur_path)
    at.radio(key="studio_f_kind").set_value("ai").run()
    assert not at.warning and "without depth control" in " ".join(i.value for i in at.info)
    assert not generate_button(at).disabled


def test_history_detail_rerun_remix_favourite_delete(data_dir, lemur_path):
    from core.request import GenerationRequest
    from storage import history

    prompt = "<b>bold</b> **not markdown** <script>alert(1)</script>"
    request = GenerationRequest(background="gradient:#102030,#a0b0c0", prompt=prompt, seed=7)
    at = app("history")
    generation_id = job_view.submit(request, lemur_path.read_bytes(), user=None)
    wait_done(at, generation_id)
    at.text_input(key="history_search").set_value("not markdown").run()
    assert any(t.value.startswith(f"#{generation_id} ") for t in at.text)
    at.button(key=f"history_open_{generation_id}").click().run()
    assert not at.exception, at.exception
    assert [c.value for c in at.code][:1] == [prompt]  # shown verbatim as text
    assert not any("<b>" in m.value or "not markdown" in m.value for m in at.markdown)
    parameters = next(d.value for d in at.dataframe if "parameter" in d.value.columns)
    assert parameters.loc[parameters["parameter"] == "Background", "value"].item() == "gradient:#102030,#a0b0c0"
    assert parameters.loc[parameters["parameter"] == "Seed", "changed"].item()

    at.button(key="history_fav_toggle").click().run()
    assert history.get(generation_id).favourite
    pressable(at, "history_rerun").click().run()
    child = at.session_state["history_selected"]
    assert child != generation_id and history.get(child).parent_id == generation_id
    child_view = wait_done(at, child)
    assert child_view.status == "done"
    first = np.asarray(Image.open(history.get(generation_id).results[0].path))
    assert np.array_equal(np.asarray(Image.open(child_view.results[0].path)), first)  # same request, same image

    at.button(key="history_delete").click().run()
    assert history.get(child)  # asked, not yet deleted
    pressable(at, "history_delete_yes").click().run()
    with pytest.raises(history.NotFound):
        history.get(child)

    at.button(key=f"history_open_{generation_id}").click().run()
    pressable(at, "history_remix").click().run()
    assert not at.exception, at.exception
    assert editor(at).parent == generation_id
    assert at.radio(key="studio_f_kind").value == "gradient"
    assert at.color_picker(key="studio_f_gradient_top").value == "#102030"
    assert at.session_state["studio_f_prompt"] == prompt


def test_batch_uploads_and_server_folder(data_dir, lemur_path, astronaut, tmp_path, monkeypatch):
    from storage import history

    folder = tmp_path / "photos"
    folder.mkdir()
    astronaut.save(folder / "astronaut.png")
    (folder / "notes.txt").write_text("not a photo")
    monkeypatch.setattr("sys.argv", ["streamlit_app.py", "--batch-dir", str(folder)])
    at = app("batch")
    assert at.checkbox(key="batch_use_dir").label.startswith("Include the 1 photo(s)")
    at.file_uploader(key="batch_uploads").set_value([("lemur.png", lemur_path.read_bytes(), "image/png")]).run()
    at.radio(key="batch_f_kind").set_value("transparent").run()
    pressable(at, "batch_start").click().run()
    jobs = at.session_state["batch_jobs"]
    assert [j["name"] for j in jobs] == ["lemur.png", "astronaut.png"]
    for job in jobs:
        assert wait_done(at, job["id"]).status == "done"
    at.run()
    assert not at.exception, at.exception
    assert [b.label for b in at.get("download_button")] == ["Download results (zip)"]
    view = history.get(jobs[0]["id"])
    assert Image.open(view.results[0].path).mode == "RGBA"  # transparent background kept
    done = [(job["name"], history.get(job["id"])) for job in jobs] + [("lemur.jpg", view)]
    with zipfile.ZipFile(io.BytesIO(history.results_zip(done))) as archive:
        assert archive.namelist() == ["lemur.png", "astronaut.png", f"lemur-{view.id}.png"]
        assert archive.read("lemur.png") == view.results[0].path.read_bytes()


def test_models_page_shows_slots_and_saves_settings(data_dir, monkeypatch, tiny_models):
    monkeypatch.setenv("BACKDROP_DEPTH_MODEL", str(tiny_models["depth"]))
    at = app("models")
    table = at.dataframe[0].value
    assert list(table["slot"]) == ["Cut-out model", "Inpainting model", "Depth ControlNet", "Depth estimator",
                                   "Fast-mode LoRA", "Tiny autoencoder", "Click-selection model", "Prompt assistant",
                                   "Step-preview model"]
    assert table.loc[table["slot"] == "Depth estimator", "present"].item() == "yes"
    assert any("runs on cpu, precision float32" in t.value for t in at.text)
    assert any(i.value.startswith("Cut-out model: u2netp is used (the best installed); better, not installed: "
                                  "birefnet-general, fetched with `") for i in at.info)
    at.text_input[1].set_value(str(tiny_models["inpaint"]))
    next(t for t in at.text_input if t.label.startswith("Click-selection model")).set_value("facebook/sam-vit-base")
    lora, device = at.selectbox
    assert lora.options == ["LCM-LoRA SD1.5", "Hyper-SD SD1.5 4-step", "TCD SD1.5"]  # the recipe table
    lora.set_value("h1t/TCD-SD15-LoRA")
    device.set_value("cpu")
    at.button[0].click().run()
    assert not at.exception, at.exception
    saved = json.loads((data_dir / "settings.json").read_text())
    assert saved["inpaint_model"] == str(tiny_models["inpaint"]) and saved["device"] == "cpu"
    assert saved["sam_model"] == "facebook/sam-vit-base" and saved["fast_lora"] == "h1t/TCD-SD15-LoRA"
    table = at.dataframe[0].value
    assert table.loc[table["slot"] == "Click-selection model", "model"].item() == "facebook/sam-vit-base"
    assert table.loc[table["slot"] == "Inpainting model", "present"].item() == "yes"
    assert at.success
    saved = (data_dir / "settings.json").read_text()
    at.text_input[1].set_value("/no/such/inpainting-folder")  # a typo'd folder is refused, nothing saved
    at.button[0].click().run()
    assert any("there is no folder '/no/such/inpainting-folder'" in e.value for e in at.error) and not at.success
    assert (data_dir / "settings.json").read_text() == saved
    (data_dir / "settings.json").unlink()



def test_unreadable_upload_is_refused_with_a_message(data_dir):
    at = app()
    at.file_uploader(key="studio_upload").set_value(("holiday.png", b"not an image at all", "image/png")).run()
    assert not at.exception, at.exception
    assert at.error and any("holiday.png" in c.value for c in at.code)  # the name as plain text
    assert editor(at).photo is None and editor(at).photo_bytes is None  # nothing half-loaded kept
    assert any("Upload a photo to start" in i.value for i in at.info)


def test_cancel_stops_a_running_ai_generation(data_dir, lemur_path, tiny_models, monkeypatch):
    from storage import history

    for slot, var in (("inpaint", "BACKDROP_INPAINT_MODEL"), ("controlnet", "BACKDROP_CONTROLNET_MODEL"),
                      ("depth", "BACKDROP_DEPTH_MODEL")):
        monkeypatch.setenv(var, str(tiny_models[slot]))
    at = upload_lemur(app(), lemur_path)
    at.radio(key="studio_f_kind").set_value("ai").run()
    assert not at.warning  # the tiny models are present: nothing to explain
    at.text_area(key="studio_f_prompt").set_value("a beach").run()
    at.slider(key="studio_f_steps").set_value(150).run()
    generate_button(at).click().run()
    generation_id = at.session_state["studio_job"]
    deadline = time.monotonic() + 60
    while history.get(generation_id).progress_stage != "generate" and time.monotonic() < deadline:
        time.sleep(0.2)
    at.run()
    assert at.button(key="studio_cancel")  # the progress panel offers to cancel
    at.button(key="studio_cancel").click().run()
    view = wait_done(at, generation_id)
    assert view.status == "cancelled" and view.progress_step < 150
    assert any("was cancelled" in i.value for i in at.info)


def test_cancel_stops_a_running_12_mp_colour_generation(data_dir):
    """Issue 21: Cancel a few seconds into a 12 MP colour job: it said "Stopping at the next
    step..." for 8 s, then "done" (only the AI steps looked at the flag). The stages, the
    composite and the encoding of each image look at it now."""
    from skimage import data

    from storage import history

    photo = io.BytesIO()
    Image.fromarray(data.coffee()).resize((4000, 3000), Image.Resampling.BICUBIC).save(photo, format="JPEG", quality=90)
    at = app()
    at.file_uploader(key="studio_upload").set_value(("coffee.jpg", photo.getvalue(), "image/jpeg")).run()
    assert not at.exception, at.exception
    generate_button(at).click().run()
    generation_id = at.session_state["studio_job"]
    deadline = time.monotonic() + 60
    while history.get(generation_id).status != "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    at.run()
    at.button(key="studio_cancel").click().run()
    asked = time.monotonic()
    view = wait_done(at, generation_id)
    stopped = time.monotonic() - asked
    assert view.status == "cancelled", (view.status, view.progress_stage, stopped)
    assert view.outputs == [] and stopped < 5, stopped
    assert any(f"Generation {generation_id} was cancelled" in i.value for i in at.info)


def test_a_cancel_that_comes_too_late_is_said(data_dir, lemur_path, monkeypatch):
    """A cancel that lands after a job's last look (here: as its results are committed) cannot stop
    it: the Studio says the cancel came too late, not "done" as if nothing was asked."""
    from storage import history, lifecycle
    from streamlit.testing.v1 import AppTest

    finish = lifecycle.finish

    def cancelled_meanwhile(row):
        row.cancel_requested = True  # Cancel pressed while the last image was being written
        finish(row)

    monkeypatch.setattr(lifecycle, "finish", cancelled_meanwhile)
    generation_id = job_view.submit(ui.base_request().replace(background="color:#ff0000"), lemur_path.read_bytes(),
                                    user=None)
    deadline = time.monotonic() + 40
    while history.get(generation_id).status != "done" and time.monotonic() < deadline:
        time.sleep(0.1)
    monkeypatch.setattr(lifecycle, "finish", finish)
    assert history.get(generation_id).cancel_requested
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["job"] = str(generation_id)  # the Studio's address for this generation
    at.run()
    assert not at.exception, at.exception
    [warning] = [w.value for w in at.warning if "too late" in w.value]
    assert warning.startswith(f"The cancel came too late: generation {generation_id} had already finished its last step")
    assert not any(f"Generation {generation_id} done" in s.value for s in at.success)


def test_two_sessions_share_one_worker(data_dir, lemur_path, astronaut):
    from storage import history

    first, second = app(), app()
    assert job_view.workers() is job_view.workers()  # st.cache_resource: one worker per lane per process
    ids = [job_view.submit(ui.base_request().replace(background=f"color:#0000{i}0"), lemur_path.read_bytes(), user=None)
           for i in range(3)]
    ids.append(job_view.submit(ui.base_request().replace(background="blur"), astronaut, user=None))
    for generation_id in ids:
        assert wait_done(first, generation_id).status == "done"
    second.run()
    assert not first.exception and not second.exception
    assert {history.get(i).status for i in ids} == {"done"}


def test_history_paging_filters_and_export(data_dir, lemur_path):
    from core.request import GenerationRequest
    from storage import history

    ids = [history.create(GenerationRequest(background="blur", prompt=f"paged {i}"), lemur_path.read_bytes(),
                          status="failed") for i in range(14)]
    at = app("history")
    at.selectbox(key="history_kind").set_value("blur").run()
    at.multiselect(key="history_status").set_value(["failed"]).run()
    assert any(c.value.startswith("14 generation(s); page 1 of 2") for c in at.caption)
    assert f"#{ids[-1]} Blurred original · failed" in [t.value for t in at.text]  # newest first
    at.button(key="history_next").click().run()
    assert any(c.value.startswith("14 generation(s); page 2 of 2") for c in at.caption)
    assert f"#{ids[0]} Blurred original · failed" in [t.value for t in at.text]
    at.text_input(key="history_search").set_value("paged 13").run()
    assert any(c.value.startswith("1 generation(s); page 1 of 1") for c in at.caption)
    # one click exports (the zip is made when the button is clicked), and only what is listed
    assert [b.label for b in at.get("download_button")] == ["Export 1 generation as a zip"]
    at.checkbox(key="history_fav").check().run()  # a filter that matches nothing says so, offers no export
    assert [i.value for i in at.info] == ["No generation matches these filters: change or clear them to see more."]
    assert not at.get("download_button")
    at.checkbox(key="history_fav").uncheck().run()
    at.text_input(key="history_search").set_value("").run()
    at.date_input(key="history_from").set_value(dt.date.today() + dt.timedelta(days=1)).run()
    assert any(c.value.startswith("0 generation(s)") for c in at.caption) and not at.get("download_button")
    at.date_input(key="history_from").set_value(dt.date.today()).run()
    at.date_input(key="history_to").set_value(dt.date.today()).run()
    assert any(c.value.startswith("14 generation(s)") for c in at.caption)
    assert [b.label for b in at.get("download_button")] == ["Export 14 generations as a zip"]


def test_an_empty_history_says_so(data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("BACKDROP_DATA_DIR", str(tmp_path / "empty"))  # the page reads a history of its own
    at = app("history")
    assert [i.value for i in at.info] == ["Nothing here yet: generations made in the Studio or the Batch page appear here."]
    assert not at.get("download_button")


def test_uploaded_picture_as_background(data_dir, lemur_path, astronaut):
    from core.cache import get_cache
    from storage import history
    from storage.db import get_database

    cache = get_cache()
    cache.clear()
    at = upload_lemur(app(), lemur_path)
    assert cache.misses.get("mask") == 1  # computed at upload, for the overlay
    at.radio(key="studio_f_kind").set_value("image").run()
    assert generate_button(at).disabled  # no picture yet
    buffer = io.BytesIO()
    astronaut.save(buffer, format="PNG")
    at.file_uploader(key="studio_f_bg_upload").set_value(("space.png", buffer.getvalue(), "image/png")).run()
    assert not generate_button(at).disabled
    generate_button(at).click().run()
    view = wait_done(at, at.session_state["studio_job"])
    assert view.status == "done", view.error
    assert cache.misses.get("mask") == 1 and cache.hits.get("mask") == 1  # the job reused it
    assert view.request["background"] == "image" and view.background_sha256  # in the image store, by hash
    assert get_database().images.read(view.background_sha256) == buffer.getvalue()
    assert history.get(view.id).results


def test_colour_match_starts_at_zero_and_shows_before_and_after(data_dir, lemur_path, astronaut):
    """The subject promise: every background kind starts with colour match 0; a generation made
    with it on shows the result beside the subject as photographed."""
    at = upload_lemur(app(), lemur_path)
    for kind in ("color", "image", "ai", "gradient"):
        at.radio(key="studio_f_kind").set_value(kind).run()
        assert at.slider(key="studio_f_harmony").value == 0.0, kind
    at.slider(key="studio_f_harmony").set_value(0.8).run()
    generate_button(at).click().run()
    view = wait_done(at, at.session_state["studio_job"])
    assert view.status == "done" and view.request["harmony"] == 0.8
    assert any("changed the subject's pixels" in c.value for c in at.caption)
    captions = [caption for element in at.get("image") for caption in element.captions]
    assert "Subject as photographed" in captions and "With colour match" in captions


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ai", "image"])
def test_remix_and_rerun_round_trip_every_field(kind, data_dir, lemur_path, lemur_alpha, tiny_models, astronaut,
                                                tiny_prompt_lm, lora_hub):
    """A request with every field off its default, recorded, then remixed through the Studio's
    own code (History's Remix button, the prefilled form, Generate) and re-run through History's
    Re-run button: both submit exactly the stored request, models and device included."""
    from core.request import FIELDS, GenerationRequest
    from storage import history

    values = dict(
        background="ai" if kind == "ai" else "image", prompt="a (quiet:1.2) harbour at dawn", negative_prompt="boats",
        seed=123456, variants=2, fast=True, fast_lora="h1t/TCD-SD15-LoRA", steps=2, guidance=5.5, control_scale=0.35,
        scheduler="euler_a",
        quality_negative=False, mask_grow=9, spill_removal=False, refine_matting=True, harmony=0.3,
        contact_shadow=0.25, cast_shadow=0.4, shadow_angle=200.0, shadow_softness=0.9, segmenter="isnet-general-use",
        inpaint_model=str(tiny_models["inpaint"]), controlnet_model=str(tiny_models["controlnet"]),
        depth_model=str(tiny_models["depth"]), device="cpu", enhance_prompt=True, prompt_model=tiny_prompt_lm,
        canvas="3:2@300", fill=0.6, anchor="0.4,0.6", margin=0.08,
    )
    request = GenerationRequest(**values)
    # only the AI background has variants and reads a prompt: another kind records (and makes) one, unimproved
    assert all(getattr(request, spec.name) != spec.default for spec in FIELDS
               if kind == "ai" or spec.name not in ("variants", "enhance_prompt"))
    assert request.variants == (2 if kind == "ai" else 1) and request.enhance_prompt == (kind == "ai")
    picture = io.BytesIO()
    astronaut.resize((200, 150)).save(picture, format="PNG")
    picture = picture.getvalue() if kind == "image" else None
    gid = history.create(request, lemur_path.read_bytes(), Image.fromarray(lemur_alpha), status="done", picture=picture)

    at = app("history")
    at.button(key=f"history_open_{gid}").click().run()
    pressable(at, "history_remix").click().run()  # st.switch_page: the Studio runs with the remix
    assert not at.exception, at.exception
    at.switch_page("app_pages/studio.py").run()  # AppTest keeps its own idea of the page: follow the switch
    assert at.session_state["studio_f_shadow_softness"] == 0.9  # a field with no widget drawn until needed
    assert not generate_button(at).disabled, [c.value for c in at.caption] + [e.value for e in at.error]
    generate_button(at).click().run()
    assert at.session_state["studio_job"], [e.value for e in at.error] + [c.value for c in at.caption]
    remix = history.get(at.session_state["studio_job"])
    assert remix.parent_id == gid and remix.request == request.to_dict()
    assert remix.user_mask_sha256 == history.get(gid).user_mask_sha256
    assert remix.background_sha256 == history.get(gid).background_sha256
    wait_done(at, remix.id)

    at = app("history")
    at.button(key=f"history_open_{gid}").click().run()
    pressable(at, "history_rerun").click().run()
    rerun = history.get(at.session_state["history_selected"])
    assert rerun.parent_id == gid and rerun.request == request.to_dict()
    assert rerun.background_sha256 == history.get(gid).background_sha256
    wait_done(at, rerun.id)


def test_clear_and_reset_send_the_automatic_mask(data_dir, lemur_path):
    """After Clear the canvas still sends a drawing (an empty one); after Reset the selections are
    gone too: either way the mask is the automatic one again, and the generation is recorded with
    the cut-out model that made it, not as a user's mask."""
    at = upload_lemur(app(), lemur_path)
    size = brush.display_size(*editor(at).photo.size)
    paint(at, np.zeros((size[1], size[0], 4), np.uint8), [])  # what the canvas sends after Clear
    generate_button(at).click().run()
    view = wait_done(at, at.session_state["studio_job"])
    assert view.user_mask_sha256 is None and view.models["segmenter"]["id"] == "u2netp"

    paint(at, strokes(size, add_box=(0, 0, 30, 30)))
    generate_button(at).click().run()
    assert wait_done(at, at.session_state["studio_job"]).user_mask_sha256  # a real correction is sent
    at.button(key="studio_reset").click().run()
    generate_button(at).click().run()
    view = wait_done(at, at.session_state["studio_job"])
    assert view.user_mask_sha256 is None and view.models["segmenter"]["id"] == "u2netp"
    assert any(f"Generation {view.id} done: ran " in s.value for s in at.success)


def test_unsure_regions_flip_with_a_click(data_dir, synthetic_set):
    """A region the automatic mask dropped as a whole (the wall clock beside the teddy is unsure)
    is kept after one click on its button, and dropped again after another."""
    from core.masks.segment import analyse_mask

    photo = Image.open(synthetic_set / "plush_clock.png").convert("RGB")
    analysis = analyse_mask(photo)
    region = np.asarray(analysis.region_mask(0)) == 255
    assert not analysis.regions[0].kept
    at = app()
    at.file_uploader(key="studio_upload").set_value(
        ("plush_clock.png", (synthetic_set / "plush_clock.png").read_bytes(), "image/png")).run()
    button = at.button(key="studio_region_0")
    assert button.label.startswith("Area 1: dropped") and button.label.endswith("keep it")
    assert np.asarray(editor(at).mask())[region].mean() < 10  # dropped (soft only at its edge)
    button.click().run()
    assert editor(at).decisions == {0: True}
    assert np.asarray(editor(at).mask())[region].mean() > 245
    assert at.button(key="studio_region_0").label.startswith("Area 1: kept")
    at.button(key="studio_region_0").click().run()
    assert np.array_equal(np.asarray(editor(at).mask()), np.asarray(editor(at).auto_mask))


def test_click_tools_without_sam_weights_say_what_to_run(data_dir, lemur_path, monkeypatch):
    from core.models.hub import fetch_command

    monkeypatch.setenv("BACKDROP_SAM_MODEL", "nobody/no-such-sam")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    at = upload_lemur(app(), lemur_path)
    assert not at.warning
    at.session_state["studio_tool"] = "click"
    at.run()
    warning = " ".join(w.value for w in at.warning)
    assert f"`{fetch_command()} nobody/no-such-sam`" in warning and "The brush works without it" in warning


def test_a_cancelled_generation_shows_no_empty_timings(data_dir, lemur_path):
    from core.request import GenerationRequest
    from storage import history

    generation_id = history.create(GenerationRequest(background="ai", prompt="never ran"), lemur_path.read_bytes(),
                                   status="cancelled")
    at = app("history")
    at.button(key=f"history_open_{generation_id}").click().run()
    assert not at.exception, at.exception
    assert not [d for d in at.dataframe if "stage" in d.value.columns] and not at.json  # no empty table, no {}
    assert any("Nothing was recorded as run" in c.value for c in at.caption)


# ---------------------------------------------------------------- presses and reloads (issue 15)

def test_press_is_acted_on_once_and_survives_an_interrupted_run():
    """Press as the pages use it: a second click of the same drawing (a double click) is no
    second press; an outcome whose store was interrupted (Streamlit raises a RerunException on
    an access of session state when another rerun waits) stays for the next run."""
    from streamlit.runtime.scriptrunner_utils.exceptions import RerunException

    press = Press()
    drawn = press.token
    press.pressed(drawn)
    press.pressed(drawn)  # the double click's second click, from the drawing already used
    assert press.pending and press.token == drawn + 1
    press.settle(outcome=41)
    assert not press.pending

    def interrupted(_outcome):
        raise RerunException(None)

    with pytest.raises(RerunException):
        press.take_outcome(interrupted)
    kept = []
    assert press.take_outcome(kept.append) and kept == [41]
    assert not press.take_outcome(kept.append) and kept == [41]
    press.pressed(drawn)  # an old drawing again, after all that: still spent
    assert not press.pending
    press.pressed(press.token)
    assert press.pending and press.error is None


def test_generate_double_click_makes_one_job_and_a_reload_brings_it_back(data_dir, lemur_path):
    """Generate pressed twice through the same drawing makes one job; a new session (a reload)
    of the Studio's address (?job=N) shows that job's result with its photo and settings; an
    address naming a generation that does not exist says so."""
    from storage import history

    at = upload_lemur(app(), lemur_path)
    at.radio(key="studio_f_kind").set_value("gradient").run()
    before = history.count_generations()
    drawing = generate_button(at)
    drawing.click().run()
    # the double click's second click comes from the same drawing, after the first one's run
    at.session_state[press_state_key("studio_generate")].pressed(int(drawing.key.rsplit("__", 1)[1]))
    at.run()
    assert history.count_generations() == before + 1
    job = at.session_state["studio_job"]
    view = wait_done(at, job)
    assert at.query_params["job"] == str(job)

    reloaded = AppTestWithAddress(job=str(job))
    assert reloaded.session_state["studio_job"] == job
    assert reloaded.radio(key="studio_f_kind").value == "gradient"
    assert any(f"Generation {job} done" in s.value for s in reloaded.success), [s.value for s in reloaded.success]
    assert editor(reloaded).photo_sha == view.input_sha256

    missing = AppTestWithAddress(job="999999")
    assert any(w.value.startswith("The address names a generation you cannot open") for w in missing.warning)
    assert any(c.value == "999999" for c in missing.code), "the address, as text"
    assert "job" not in missing.query_params


def AppTestWithAddress(page: str | None = None, **params):  # noqa: N802 - reads as the session it makes
    """A new session (a reload) opened at an address with query parameters."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=60)
    for name, value in params.items():
        if value:
            at.query_params[name] = value
    at.run()
    if page:
        at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, at.exception
    return at


def test_results_reach_the_studio_after_a_page_switch(data_dir, lemur_path):
    at = upload_lemur(app(), lemur_path)
    generate_button(at).click().run()
    job = at.session_state["studio_job"]
    at.switch_page("app_pages/history.py").run()
    wait_done(at, job)
    at.switch_page("app_pages/studio.py").run()
    assert not at.exception, at.exception
    assert any(f"Generation {job} done" in s.value for s in at.success)


def test_history_and_batch_reopen_from_their_address(data_dir, lemur_path):
    """A reload of History's detail (?id=N) opens generation N again; of the Batch page
    (?jobs=...) shows that batch's queue again."""
    from core.request import GenerationRequest

    generation_id = job_view.submit(GenerationRequest(background="blur"), lemur_path.read_bytes(), user=None)
    at = app("history")
    wait_done(at, generation_id)
    at.button(key=f"history_open_{generation_id}").click().run()
    assert at.query_params["id"] == str(generation_id)
    reloaded = AppTestWithAddress(id=str(generation_id))
    reloaded.switch_page("app_pages/history.py").run()
    assert reloaded.session_state["history_selected"] == generation_id
    assert any(s.value == f"Generation #{generation_id}" for s in reloaded.subheader)

    batch = AppTestWithAddress(jobs=f"{generation_id},abc,999999")
    batch.switch_page("app_pages/batch.py").run()
    assert [job["id"] for job in batch.session_state["batch_jobs"]] == [generation_id]


def test_what_a_user_supplied_is_shown_as_text_never_as_markdown(data_dir, lemur_path):
    """The Studio's address (?job=) and a stored request's text reach the page as plain text: a
    Markdown link or image in them is never rendered (the browser would show the link and
    fetch the image from elsewhere)."""
    from sqlalchemy import update

    from core.request import GenerationRequest
    from storage import history
    from storage.db import get_database
    from storage.models import Generation

    def rendered_as_markdown(at) -> list[str]:
        return [e.value for kind in ("warning", "error", "info", "success", "markdown", "caption", "subheader", "title")
                for e in getattr(at, kind)]

    payload = "[text](http://elsewhere/phish) ![p](http://elsewhere/p.png)"
    at = AppTestWithAddress(job=payload)
    assert not any("elsewhere" in body for body in rendered_as_markdown(at)), rendered_as_markdown(at)
    assert any(payload in code.value for code in at.code), "the address is shown, as text"
    assert "job" not in at.query_params

    generation_id = history.create(GenerationRequest(prompt=payload), lemur_path.read_bytes())
    stored = {**GenerationRequest(prompt=payload).to_dict(), "device": "[x](http://elsewhere/device)"}
    with get_database().session() as session:
        session.execute(update(Generation).where(Generation.id == generation_id).values(request=stored))
    at = AppTestWithAddress("history", id=str(generation_id))
    assert not any("elsewhere" in body for body in rendered_as_markdown(at)), rendered_as_markdown(at)
    assert any("elsewhere/device" in code.value for code in at.code), "the stored request's error, as text"


def test_addresses_naming_ids_past_the_databases_range_open_nothing(data_dir):
    huge = str(2**64)
    for page, name in (("studio", "job"), ("history", "id"), ("batch", "jobs")):
        at = AppTestWithAddress(None if page == "studio" else page, **{name: huge})
        assert not at.exception, (page, at.exception)


@pytest.fixture
def tiny_ai_models(monkeypatch, tiny_models):
    """The tiny models as the saved default models (the device: auto, the CPU here)."""
    for variable, slot in (("BACKDROP_INPAINT_MODEL", "inpaint"), ("BACKDROP_CONTROLNET_MODEL", "controlnet"),
                           ("BACKDROP_DEPTH_MODEL", "depth")):
        monkeypatch.setenv(variable, str(tiny_models[slot]))
    monkeypatch.delenv("BACKDROP_DEVICE", raising=False)
    return tiny_models


def captions(at) -> str:
    return " | ".join(c.value for c in at.caption)


@pytest.mark.slow
def test_fast_switch_starts_on_on_a_cpu_with_the_lora_and_says_why(data_dir, lemur_path, tiny_ai_models, lora_hub):
    """On this CPU with the LoRA's weights here the Studio starts in fast mode and says why; a
    generation runs the recipe; one click on the switch makes the next one standard, and the
    switch then shows both modes' expected times from the finished jobs."""
    from storage import history

    at = upload_lemur(app(), lemur_path)
    at.radio(key="studio_f_kind").set_value("ai").run()
    switch = at.toggle(key="studio_f_fast")
    assert switch.value is True and "This computer has no GPU, so the Studio starts in fast mode" in captions(at)
    assert "Fast mode samples with its recipe (LCM-LoRA SD1.5: LCMScheduler, 4 steps, guidance 1;" in captions(at)
    at.text_area(key="studio_f_prompt").set_value("a beach").run()
    generate_button(at).click().run()
    fast = wait_done(at, at.session_state["studio_job"], timeout=120)
    assert fast.status == "done" and fast.request["fast"] is True, fast.error
    assert (fast.record["scheduler"], fast.record["steps"], fast.record["guided"]) == ("LCMScheduler", 4, False)

    at.toggle(key="studio_f_fast").set_value(False).run()
    at.slider(key="studio_f_steps").set_value(3).run()
    generate_button(at).click().run()
    standard = wait_done(at, at.session_state["studio_job"], timeout=120)
    assert standard.status == "done" and standard.request["fast"] is False and standard.record["steps"] == 3
    assert standard.record["guided"] is True and standard.record["fast_lora"] is None
    assert "Expected here: fast about" in captions(at) and "standard about" in captions(at)
    assert history.get(fast.id).request["fast"] is True  # what is stored stays as it ran


def test_fast_start_takes_the_tiny_autoencoder_too_when_taesd_is_here(data_dir, lemur_path, tiny_ai_models, lora_hub,
                                                                      tiny_taesd, monkeypatch):
    """On this CPU with the LoRA's and TAESD's weights here the Studio starts in fast mode with
    the tiny autoencoder, says what it costs, and one click turns it off; without TAESD's weights
    it starts off (tests/test_app.py's fast-switch test)."""
    monkeypatch.setenv("BACKDROP_TINY_VAE_MODEL", tiny_taesd)
    at = upload_lemur(app(), lemur_path)
    at.radio(key="studio_f_kind").set_value("ai").run()
    assert at.toggle(key="studio_f_fast").value is True
    tiny = at.checkbox(key="studio_f_tiny_vae")
    assert tiny.value is True and "tiny autoencoder (TAESD)" in captions(at) and "softer background" in captions(at)
    assert not generate_button(at).disabled and not at.warning
    at.checkbox(key="studio_f_tiny_vae").uncheck().run()
    assert at.checkbox(key="studio_f_tiny_vae").value is False and not generate_button(at).disabled


def test_without_the_lora_fast_mode_starts_off_and_says_what_to_fetch(data_dir, lemur_path, tiny_ai_models, tmp_path,
                                                                      monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    at = upload_lemur(app(), lemur_path)
    at.radio(key="studio_f_kind").set_value("ai").run()
    assert at.toggle(key="studio_f_fast").value is False and "no GPU" not in captions(at)
    assert not generate_button(at).disabled and not at.warning
    at.toggle(key="studio_f_fast").set_value(True).run()
    warning = " ".join(w.value for w in at.warning)
    assert "Fast mode cannot run" in warning and "models fetch latent-consistency/lcm-lora-sdv1-5" in warning
    assert "Turn Fast off" in warning and generate_button(at).disabled
