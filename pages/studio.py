"""Studio: upload a photo, check and fix the automatic mask with a brush, pick a background,
generate, download.

Everything the user made (photo, masks, brush drawing, last job) lives in ``studio_*`` session
keys, not in widget state, so it survives switching to another page and back.
"""

import hashlib

import streamlit as st
from streamlit_drawable_canvas import st_canvas

from core import brush
from core.errors import BackdropError
from core.imaging import load_image
from core.segment import automatic_mask
from pages import ui

state = st.session_state
CANVAS_KEY = "studio_canvas"
FORM = "studio_f_"


def set_photo(data: bytes, name: str) -> None:
    """A new photo: decode it, compute its automatic mask, forget the previous drawing."""
    photo = load_image(data, what=name)
    with st.spinner("Finding the subject..."):
        auto = automatic_mask(photo, ui.settings()["segmenter"])
    state.update(
        studio_photo=photo, studio_photo_bytes=data, studio_photo_name=name,
        studio_photo_sha=hashlib.sha256(data).hexdigest(), studio_auto_mask=auto, studio_base_mask=auto,
        studio_parent=None, studio_job=None,
    )
    reset_drawing()


def reset_drawing(objects: list | None = None) -> None:
    """Replace the canvas content. The nonce makes each reset a new initial drawing, which the
    canvas reloads even when the objects are the same as an earlier reset's."""
    state.studio_nonce = state.get("studio_nonce", 0) + 1
    state.studio_drawing = {"objects": objects or [], "backdrop_nonce": state.studio_nonce}
    state.studio_canvas_init = state.studio_drawing
    if not objects:
        state.studio_strokes = None


def undo() -> None:
    objects = list((state.get("studio_drawing") or {}).get("objects", []))
    reset_drawing(objects[:-1])


def clear() -> None:
    reset_drawing()


def reset_to_automatic() -> None:
    state.studio_base_mask = state.studio_auto_mask
    reset_drawing()


def open_remix() -> None:
    """History's Remix put a generation id here: load its photo, mask and settings."""
    from storage.service import rerun_inputs

    generation_id = state.pop("studio_remix")
    inputs = rerun_inputs(generation_id, user=ui.current_user())
    set_photo(inputs.image, f"generation {generation_id}")
    if inputs.mask is not None:
        state.studio_base_mask = inputs.mask
    ui.prefill(FORM, inputs.request, inputs.picture)
    state.studio_parent = generation_id


def photo_section() -> None:
    limit = st.get_option("server.maxUploadSize")
    upload = st.file_uploader(
        f"Photo (JPEG, PNG or WebP, up to {limit} MB)", type=["jpg", "jpeg", "png", "webp"], key="studio_upload"
    )
    if state.get("studio_photo") is not None and upload is None:
        # the file's name is the user's text: plain text, never Markdown (it could hold links)
        st.text(f"Working on: {state.studio_photo_name} ({state.studio_photo.width}x{state.studio_photo.height})")
    if upload is not None and upload.file_id != state.get("studio_upload_id"):
        state.studio_upload_id = upload.file_id
        try:
            set_photo(upload.getvalue(), upload.name)
        except BackdropError as error:
            ui.user_error("This file cannot be used as a photo:", f"{upload.name}: {error}")


def mask_section() -> None:
    photo = state.studio_photo
    size = brush.display_size(*photo.size)
    tools = st.columns([2, 3, 1, 1, 2], vertical_alignment="bottom")
    mode = tools[0].segmented_control(
        "Brush", ["add", "erase"], key="studio_brush_mode", default="add", persist_state="session",
        format_func=lambda m: "Add" if m == "add" else "Erase",
        help="Add paints into the subject (kept), Erase paints into the background (replaced)",
    ) or "add"
    brush_size = tools[1].slider("Brush size", 4, 120, 30, key="studio_brush_size", persist_state="session")
    tools[2].button("Undo", on_click=undo, icon=":material/undo:", key="studio_undo")
    tools[3].button("Clear", on_click=clear, icon=":material/ink_eraser:", key="studio_clear",
                    help="Remove all brush strokes")
    tools[4].button("Reset to automatic", on_click=reset_to_automatic, icon=":material/restart_alt:",
                    key="studio_reset", help="Remove all strokes and go back to the automatic mask")

    if CANVAS_KEY not in state:  # a fresh canvas (first view, or back from another page)
        state.studio_canvas_init = state.get("studio_drawing") or {"objects": []}
    left, right = st.columns([3, 2])
    with left:
        result = st_canvas(
            stroke_width=brush_size, stroke_color=brush.stroke_color(mode), background_image=overlay_jpeg(size),
            width=size[0], height=size[1], drawing_mode="freedraw", initial_drawing=state.studio_canvas_init,
            return_image_data=True, key=CANVAS_KEY,
        )
        st.caption("Paint on the photo: green adds to the subject, red removes. Tinted = background.")
    if result.image_data is not None:
        state.studio_strokes = result.image_data
        state.studio_drawing = result.json_data
    corrected = brush.corrected_mask(state.studio_base_mask, state.get("studio_strokes"))
    state.studio_mask = corrected
    with right:
        st.caption("Corrected mask: this is what will be kept")
        st.image(brush.mask_overlay(photo, corrected, size), width="stretch")


def overlay_jpeg(size: tuple[int, int]) -> bytes:
    """The canvas background (photo with the base mask's tint), encoded once per mask."""
    key = (state.studio_photo_sha, id(state.studio_base_mask), size)
    if state.get("studio_overlay_key") != key:
        import io

        buffer = io.BytesIO()
        brush.mask_overlay(state.studio_photo, state.studio_base_mask, size).save(buffer, format="JPEG", quality=90)
        state.studio_overlay_key, state.studio_overlay = key, buffer.getvalue()
    return state.studio_overlay


def user_mask():
    """The mask to send: None when the user kept the automatic one unchanged (the pipeline then
    computes and records it as automatic)."""
    untouched = state.get("studio_strokes") is None and state.studio_base_mask is state.studio_auto_mask
    return None if untouched else state.studio_mask


def generate_section() -> None:
    form, output = st.columns([2, 3])
    with form:
        if state.get(f"{FORM}base") is not None and state.get("studio_parent"):
            st.caption(f"Models and device as in generation #{state.studio_parent}.")
            st.button("Use the Models page's defaults", key="studio_forget_base", on_click=ui.forget_base, args=(FORM,))
        request, picture, reason = ui.background_form(FORM, ui.form_base(FORM))
        if reason:
            st.caption(f"Cannot generate yet: {reason}.")
        if st.button("Generate", type="primary", disabled=request is None, key="studio_generate",
                     icon=":material/auto_awesome:"):
            try:
                state.studio_job = ui.submit(request, state.studio_photo_bytes, user_mask(), state.get("studio_parent"),
                                             picture=picture)
            except BackdropError as error:
                st.error(str(error))
    with output:
        if state.get("studio_job"):
            job_panel(state.studio_job)


def job_panel(generation_id: int) -> None:
    view = ui.worker().queue.get(generation_id, user=ui.current_user())
    if view.status in ("queued", "running"):
        ui.job_progress(generation_id, key="studio")
    elif view.status == "done":
        st.success(f"Generation {generation_id} done in {view.timings.get('total', 0):.1f} s.")
        ui.show_outputs(view, key="studio")
    elif view.status == "cancelled":
        st.info(f"Generation {generation_id} was cancelled.")
    else:
        st.error(f"Generation {generation_id} failed:")
        st.code(view.error or "", language=None, wrap_lines=True)


st.title("Studio")
if state.get("studio_remix"):
    open_remix()
photo_section()
if state.get("studio_photo") is None:
    st.info("Upload a photo to start: the subject is cut out automatically, then you choose a new background.")
else:
    mask_section()
    st.divider()
    generate_section()
