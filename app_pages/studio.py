"""Studio: upload a photo, check and fix the automatic mask (a brush; clicks and boxes that
Segment Anything turns into regions; the regions the automatic mask was unsure about, flipped),
pick a background and the output's size and placement (previewed on the photo), generate,
compare, download.

Everything the user made to the photo (its masks, selections, brush drawing, undo) is one
MaskEditor (core.masks.editor) in session state, not widget state, so it survives switching to
another page and back; this page draws it and calls it. A new photo replaces all of it in one
step, and its upload counts as loaded only then: Streamlit stops a run when the next one starts
(an uploader sends its file more than once), and the run that follows loads the photo again
instead of skipping it.
"""

from __future__ import annotations

import streamlit as st

from app_pages import (browser, cutout_now, form, framing, job_view, press, prompt_assistant, results, settings_png,
                       ui)
from core.errors import BackdropError
from core.masks import brush
from core.masks.editor import MaskEditor
from core.models.slots import SAM_MODEL

state = st.session_state
CANVAS_KEY = "studio_canvas"
FORM = "studio_f_"
TOOLS = {"brush": "Brush", "click": "Click", "box": "Box"}
MODES = {"add": "Add", "remove": "Remove"}
EDGES = {"hard": "Hard", "soft": "Soft"}
MARK_STYLE = {"click": dict(drawing_mode="point", stroke_width=2, point_display_radius=6),
              "box": dict(drawing_mode="rect", stroke_width=2)}
PHOTO_KEYS = ("studio_job", press.press_state_key("studio_generate"))  # what goes with a photo besides the editor


def editor() -> MaskEditor:
    """This session's mask editor (one for the session: the canvas's state outlives a photo)."""
    if "studio_editor" not in state:
        state.studio_editor = MaskEditor()
    return state.studio_editor


# ---------------------------------------------------------------- the photo

def set_photo(data: bytes, name: str, upload_id: str | None, mask=None, parent: int | None = None) -> None:
    """A new photo (``mask``, ``parent``: a recorded generation's): decode it and find its
    automatic mask, then replace everything the previous photo left (``upload_id`` marks the
    upload as loaded only then)."""
    with st.spinner("Finding the subject..."):
        editor().open(data, name, ui.settings()["segmenter"], mask=mask, parent=parent)
    for key in PHOTO_KEYS:
        state.pop(key, None)
    state.update(studio_upload_id=upload_id, studio_upload_error=None)


def forget_photo() -> None:
    editor().close()
    for key in PHOTO_KEYS:
        state.pop(key, None)


def photo_section() -> None:
    limit = st.get_option("server.maxUploadSize")
    upload = st.file_uploader(
        f"Photo (JPEG, PNG or WebP, up to {limit} MB)", type=["jpg", "jpeg", "png", "webp"], key="studio_upload"
    )
    if upload is not None and upload.file_id != state.get("studio_upload_id"):
        try:
            set_photo(upload.getvalue(), upload.name, upload.file_id)
        except BackdropError as error:  # the previous photo goes too: nothing must run on it by mistake
            forget_photo()
            state.update(studio_upload_id=upload.file_id, studio_upload_error=str(error))
    photo = editor().photo
    if upload is not None and state.get("studio_upload_error"):
        ui.user_error("This file cannot be used as a photo:", state.studio_upload_error)  # it names the file
    elif photo is not None:
        # the file's name is the user's text: plain text, never Markdown (it could hold links)
        st.text(f"Working on: {editor().name} ({photo.width}x{photo.height})")


def open_generation(generation_id: int, parent: int | None) -> None:
    """Load a recorded generation's photo, mask and settings into the Studio; ``parent``: what
    is generated next is recorded as its child."""
    from storage.service import rerun_inputs

    inputs = rerun_inputs(generation_id, user=ui.current_user())
    set_photo(inputs.image, f"generation {generation_id}", state.get("studio_upload_id"), inputs.mask, parent)
    form.prefill(FORM, inputs.request, inputs.picture)


def open_remix() -> None:
    """History's Remix put a generation id here: its photo, mask and settings, as the parent of
    what is generated next."""
    generation_id = state.pop("studio_remix")
    open_generation(generation_id, parent=generation_id)


def open_from_address(text: str) -> None:
    """A reload (a new session) of ``?job=N``: generation N's photo, mask and settings come back
    with its progress or its result."""
    from storage.history import NotFound, get

    if editor().photo is not None:
        return
    try:
        view = get(int(text), user=ui.current_user())
        open_generation(view.id, parent=view.parent_id)
    except (ValueError, NotFound, BackdropError):
        del st.query_params["job"]
        ui.user_error("The address names a generation you cannot open here (deleted, not yours, or not a "
                      "generation's number):", text, box=st.warning)
        return
    state.studio_job = view.id


# ---------------------------------------------------------------- the canvas

def find_region(photo, kind: str, target: tuple):
    """The region Segment Anything finds at a click (kind "point") or in a box."""
    from core.masks.click_select import select_region

    settings = ui.settings()
    with st.spinner("Selecting..."):
        return select_region(photo, points=[target] if kind == "point" else (), box=target if kind == "box" else None,
                             model_id=settings[SAM_MODEL.name], device=settings["device"],
                             registry=job_view.model_registry())


def canvas_sent() -> None:
    """The canvas sent a new drawing (a callback: it runs before the page, so the canvas is drawn
    after this): each click or box on it becomes a selection and is taken off the canvas."""
    drawing = ((state.get(CANVAS_KEY) or {}).get("drawing") or {}).get("raw")
    editor().take_marks(drawing, state.get("studio_mode") or "add", find_region)


# ---------------------------------------------------------------- the mask section

def mask_section(edit: MaskEditor) -> None:
    photo = edit.photo
    left, right = st.columns([3, 2])
    with left:
        available, shortcut = browser.studio_helper("studio_browser", f"{FORM}prompt", "studio_generate",
                                                    brush.CANVAS_MAX_WIDTH)
        if shortcut == "undo":
            edit.undo()
        elif shortcut == "redo":
            edit.redo()
        size = brush.display_size(*photo.size, max_w=available)  # on the screen
        drawn = brush.canvas_size(photo.size, size)  # the canvas's own pixels (more: sharp when zoomed in)
        edit.fit(drawn)
        if CANVAS_KEY not in state:  # a fresh canvas (first view, or back from another page)
            edit.remount()
        tool = state.setdefault("studio_tool", "brush")
        mode = state.setdefault("studio_mode", "add")
        brush_size = state.setdefault("studio_brush_size", 30)
        soft = state.setdefault("studio_brush_edge", "hard") == "soft"
        style = MARK_STYLE.get(tool, dict(drawing_mode="freedraw", stroke_width=brush_size))
        result = browser.canvas(
            stroke_color=brush.stroke_color("add" if mode == "add" else "erase", soft) if tool == "brush" else "#ffcc00",
            fill_color="rgba(255, 204, 0, 0.25)", background=edit.canvas_background(drawn, drawn[0] / size[0]),
            width=drawn[0], height=drawn[1], shown=size, initial_drawing=edit.canvas, key=CANVAS_KEY,
            on_change=canvas_sent, view_key=edit.photo_sha, **style,
        )
        edit.canvas_returned(result.json_data, result.image_data)
        tools(edit)
    with right:
        st.caption("Corrected mask: this is what will be kept")
        st.image(brush.mask_overlay(photo, edit.mask(), size), width="stretch")
        # the form's spill setting (drawn below: on the first run, the one it will start from)
        spill = state.get(f"{FORM}spill_removal", form.form_base(FORM).spill_removal)
        cutout_now.buttons(photo, edit.mask(), edit.name, bool(spill), key="studio_now")
        regions_panel(edit)


def tools(edit: MaskEditor) -> None:
    """Under the canvas, in rows that wrap on a phone: tool, add/remove, the brush's edge and
    size, undo/redo."""
    tool = state.studio_tool
    with st.container(horizontal=True, vertical_alignment="bottom", gap="small"):
        st.segmented_control("Tool", list(TOOLS), key="studio_tool", format_func=TOOLS.get, persist_state="session",
                             required=True, help="Brush: paint. Click: Segment Anything finds the part you click. "
                                                 "Box: it finds the object inside the box you drag.")
        st.segmented_control("Mode", list(MODES), key="studio_mode", format_func=MODES.get, persist_state="session",
                             required=True, help="Add to the subject (kept) or remove from it (replaced)")
        if tool == "brush":
            st.segmented_control("Edge", list(EDGES), key="studio_brush_edge", format_func=EDGES.get,
                                 persist_state="session", required=True,
                                 help="Hard: the stroke sets the mask. Soft: it fades from its middle to its edge, "
                                      "for hair and fur (painted pale)")
            st.slider("Brush size", 4, 120, key="studio_brush_size", persist_state="session", width=180,
                      help="On the screen: zoomed in, the same size paints finer")
    with st.container(horizontal=True, gap="small"):
        st.button("Undo", on_click=edit.undo, icon=":material/undo:", key="studio_undo", disabled=not edit.can_undo,
                  help="Take back the last stroke or selection (Ctrl+Z)")
        st.button("Redo", on_click=edit.redo, icon=":material/redo:", key="studio_redo_btn",
                  disabled=not edit.can_redo, help="Ctrl+Shift+Z")
        st.button("Clear", on_click=edit.clear, icon=":material/ink_eraser:", key="studio_clear",
                  help="Remove all brush strokes")
        st.button("Reset to automatic", on_click=edit.reset, icon=":material/restart_alt:",
                  key="studio_reset", help="Remove all strokes and selections: back to the automatic mask")
    if tool == "brush":
        st.caption("Paint on the photo: green adds to the subject, red removes (pale: the soft brush). "
                   "Tinted = background. Zoom with the mouse wheel, two fingers or + and -; Move, Space or "
                   "the middle button moves the zoomed photo.")
    else:
        st.caption("Click on a part of the photo: Segment Anything finds it, and it joins the subject or leaves it."
                   if tool == "click" else "Drag a box around an object: it joins the subject or leaves it.")
        if sam_status() and edit.notice:  # without the model, its warning is the one that says why
            st.warning(edit.notice)
    if edit.selections:
        st.caption("Selections (Undo takes the last back): " + "; ".join(
            f"{i + 1}. {'added' if sel.mode == 'add' else 'removed'} the region "
            + (f"at ({sel.target[1][0]}, {sel.target[1][1]})" if sel.target[0] == "point"
               else "in the box ({}, {}, {}, {})".format(*sel.target[1]))
            for i, sel in enumerate(edit.selections)))


def sam_status() -> bool:
    """Whether Segment Anything's weights are here; without them, say which and how to get them
    (the brush still works)."""
    from core.models.slots import explain_missing, status_row

    row = status_row("sam", ui.settings()[SAM_MODEL.name])
    if not row["present"]:
        st.warning(explain_missing([row]), icon=":material/block:")
    return row["present"]


def regions_panel(edit: MaskEditor) -> None:
    """The large areas the automatic mask was unsure about (outlined and numbered on the photo),
    each kept or dropped as a whole: one click flips it."""
    regions = edit.analysis.regions
    if not regions:
        return
    st.caption(f"The cut-out was unsure about {len(regions)} area(s), outlined in yellow on the photo. "
               "Each was kept or dropped as a whole, by whether it touches the subject and looks like it or like "
               "the background beside it: click to change it.")
    for region in regions:
        kept = edit.region_kept(region.index)
        verb = "drop it" if kept else "keep it"
        where = "touches the subject" if region.attached else "apart from the subject"
        st.button(f"Area {region.index + 1}: {'kept' if kept else 'dropped'} "
                  f"({round(region.confidence * 100)}% sure it is subject, {where}), {verb}",
                  key=f"studio_region_{region.index}", on_click=edit.flip, args=(region.index,),
                  icon=":material/flip:")


# ---------------------------------------------------------------- background, generation, results

def generate_section() -> None:
    form_column, output = st.columns([2, 3])
    with form_column:
        settings_png.section(FORM, "studio_settings_png")
        parent = editor().parent
        if state.get(f"{FORM}base") is not None and parent:
            st.caption(f"Models and device as in generation #{parent}.")
            st.button("Use the Models page's defaults", key="studio_forget_base", on_click=form.forget_base,
                      args=(FORM,))
        base = form.form_base(FORM)
        request, picture, reason = form.background_form(
            FORM, base, under_prompt=lambda: prompt_assistant.section(FORM, base, parent))
        framing.preview(FORM, editor().photo, editor().mask())
        if reason:
            st.caption(f"Cannot generate yet: {reason}.")
        generate = press.press("Generate", "studio_generate", type="primary", disabled=request is None,
                               icon=":material/auto_awesome:",
                               help="Enter in the prompt box does the same (Shift+Enter: a new line)"
                               if state.get(f"{FORM}kind") == "ai" else None)
        if generate.pending:
            submit(generate, request, picture, reason)
        generate.take_outcome(lambda job: state.__setitem__("studio_job", job))
        if generate.error:
            st.error(generate.error)
    with output:
        if state.get("studio_job"):
            st.query_params["job"] = str(state.studio_job)  # a reload comes back to it
            job_panel(state.studio_job)
        else:
            st.query_params.pop("job", None)


def submit(generate: press.Press, request, picture: bytes | None, reason: str | None) -> None:
    """Generate was pressed: queue the job, or say why not. The inputs are read first: once the
    job is queued, nothing may touch session state before the press is settled."""
    if request is None:
        generate.settle(error=f"Generate was pressed but cannot run: {reason}.")
        return
    edit = editor()
    photo, mask, parent, user = edit.photo_bytes, edit.sent_mask(), edit.parent, ui.current_user()
    try:
        job = job_view.submit(request, photo, mask, parent, picture=picture, user=user)
    except BackdropError as error:
        generate.settle(error=str(error))
    else:
        generate.settle(outcome=job)


def job_panel(generation_id: int) -> None:
    from storage.lifecycle import UNFINISHED, Status
    from storage.progress import finished_text

    view = job_view.workers().queue.get(generation_id, user=ui.current_user())
    if view.status in UNFINISHED:
        job_view.job_progress(generation_id, key="studio")
    elif view.status == Status.DONE:
        if view.cancel_requested:  # asked to stop after its last look: it could not
            st.warning(job_view.TOO_LATE.format(id=generation_id, ran=finished_text(view)))
        else:
            st.success(f"Generation {generation_id} done: {finished_text(view)}.")
        results.show_outputs(view, key="studio")
    elif view.status == Status.CANCELLED:
        st.info(f"Generation {generation_id} was cancelled.")
    else:
        st.error(f"Generation {generation_id} failed:")
        st.code(view.error or "", language=None, wrap_lines=True)


st.title("Studio")
address = ui.address_on_arrival("studio", "job")  # read before a remix: the Studio's own address follows
if state.get("studio_remix"):
    open_remix()
elif address is not None:
    open_from_address(address)
photo_section()
if editor().photo is None:
    st.query_params.pop("job", None)
    st.info("Upload a photo to start: the subject is cut out automatically, then you choose a new background.")
else:
    mask_section(editor())
    st.divider()
    generate_section()
