"""Studio: upload a photo, check and fix the automatic mask (a brush; clicks and boxes that
Segment Anything turns into regions; the regions the automatic mask was unsure about, flipped),
pick a background, generate, compare, download.

Everything the user made (photo, masks, selections, brush drawing, last job) lives in
``studio_*`` session keys, not in widget state, so it survives switching to another page and
back. A new photo replaces all of it in one step, and its upload counts as loaded only then:
Streamlit stops a run when the next one starts (an uploader sends its file more than once), and
the run that follows loads the photo again instead of skipping it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np
import streamlit as st
from PIL import Image
from streamlit_drawable_canvas import st_canvas

from app_pages import browser, results, ui
from core.masks import brush
from core.errors import BackdropError
from core.imaging import load_image
from core.masks.segment import analyse_mask
from core.models.slots import SAM_MODEL

state = st.session_state
CANVAS_KEY = "studio_canvas"
FORM = "studio_f_"
TOOLS = {"brush": "Brush", "click": "Click", "box": "Box"}
MODES = {"add": "Add", "remove": "Remove"}
MARK_STYLE = {"click": dict(drawing_mode="point", stroke_width=2, point_display_radius=6),
              "box": dict(drawing_mode="rect", stroke_width=2)}
PHOTO_KEYS = ("studio_photo", "studio_photo_bytes", "studio_photo_name", "studio_photo_sha", "studio_analysis",
              "studio_auto_mask", "studio_decided_mask", "studio_base_mask", "studio_mask", "studio_decisions",
              "studio_selections", "studio_actions", "studio_redo", "studio_parent", "studio_job", "studio_notice",
              ui.press_state_key("studio_generate"))


@dataclass(frozen=True)
class Selection:
    """One click or box: the region Segment Anything found there, added to or removed from the mask."""

    mode: str
    target: tuple
    region: Image.Image


# ---------------------------------------------------------------- the photo

def set_photo(data: bytes, name: str, upload_id: str | None) -> None:
    """A new photo: decode it and find its automatic mask, then replace everything the previous
    photo left in one step (``upload_id`` marks the upload as loaded only then)."""
    photo = load_image(data, what=name)
    with st.spinner("Finding the subject..."):
        analysis = analyse_mask(photo, ui.settings()["segmenter"])
    forget_photo()
    state.update(
        studio_photo=photo, studio_photo_bytes=data, studio_photo_name=name,
        studio_photo_sha=hashlib.sha256(data).hexdigest(), studio_analysis=analysis, studio_auto_mask=analysis.mask,
        studio_decided_mask=analysis.mask, studio_base_mask=analysis.mask, studio_decisions={}, studio_selections=[],
        studio_actions=[], studio_redo=[], studio_parent=None, studio_job=None, studio_upload_id=upload_id,
        studio_upload_error=None,
    )
    reset_drawing()


def forget_photo() -> None:
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
    if upload is not None and state.get("studio_upload_error"):
        ui.user_error("This file cannot be used as a photo:", state.studio_upload_error)  # it names the file
    elif state.get("studio_photo") is not None:
        # the file's name is the user's text: plain text, never Markdown (it could hold links)
        st.text(f"Working on: {state.studio_photo_name} ({state.studio_photo.width}x{state.studio_photo.height})")


def open_generation(generation_id: int) -> None:
    """Load a recorded generation's photo, mask and settings into the Studio."""
    from storage.service import rerun_inputs

    inputs = rerun_inputs(generation_id, user=ui.current_user())
    set_photo(inputs.image, f"generation {generation_id}", state.get("studio_upload_id"))
    if inputs.mask is not None:
        state.studio_decided_mask = state.studio_base_mask = inputs.mask
    ui.prefill(FORM, inputs.request, inputs.picture)


def open_remix() -> None:
    """History's Remix put a generation id here: its photo, mask and settings, as the parent of
    what is generated next."""
    generation_id = state.pop("studio_remix")
    open_generation(generation_id)
    state.studio_parent = generation_id


def open_from_address(text: str) -> None:
    """A reload (a new session) of ``?job=N``: generation N's photo, mask and settings come back
    with its progress or its result."""
    from storage.history import NotFound, get

    if state.get("studio_photo") is not None:
        return
    try:
        view = get(int(text), user=ui.current_user())
        open_generation(view.id)
    except (ValueError, NotFound, BackdropError):
        del st.query_params["job"]
        st.warning(f"The address names generation {text}, which you cannot open here (deleted, or not yours).")
        return
    state.update(studio_parent=view.parent_id, studio_job=view.id)


# ---------------------------------------------------------------- edits: brush, clicks, regions, undo

def reset_drawing(objects: list | None = None, stale: str | None = None) -> None:
    """Replace the canvas content. The nonce makes each reset a new initial drawing, which the
    canvas reloads even when the objects are the same as an earlier reset's. Until it has, the
    canvas still returns what it held before (``stale``, by default the last value read): that
    value is ignored."""
    state.studio_nonce = state.get("studio_nonce", 0) + 1
    state.studio_drawing = {"objects": objects or [], "backdrop_nonce": state.studio_nonce}
    state.studio_canvas_init = state.studio_drawing
    state.studio_stale = stale or state.get("studio_seen")
    if not objects:
        state.studio_strokes = None


def strokes() -> list[dict]:
    return brush.marks(state.get("studio_drawing"))[0]


def rebuild_base() -> None:
    """The mask the brush paints on: the automatic mask (with the user's region decisions), then
    every selection in order."""
    base = state.studio_decided_mask
    for selection in state.studio_selections:
        base = _combine(base, selection.region, selection.mode)
    state.studio_base_mask = base


def _combine(base, region, mode):
    from core.masks.click_select import combine

    return combine(base, region, mode)


def record(action: str) -> None:
    state.studio_actions.append(action)
    state.studio_redo = []


def undo() -> None:
    """Take back the last stroke or selection (Undo, Ctrl+Z)."""
    if not state.get("studio_actions"):
        return
    if state.studio_actions.pop() == "select":
        state.studio_redo.append(("select", state.studio_selections.pop()))
        rebuild_base()
    else:
        objects = strokes()
        if objects:
            state.studio_redo.append(("stroke", objects.pop()))
            reset_drawing(objects)


def redo() -> None:
    """Put back what Undo took (Redo, Ctrl+Shift+Z)."""
    if not state.get("studio_redo"):
        return
    kind, item = state.studio_redo.pop()
    state.studio_actions.append(kind)
    if kind == "select":
        state.studio_selections.append(item)
        rebuild_base()
    else:
        reset_drawing(strokes() + [item])


def clear() -> None:
    state.studio_actions = [a for a in state.studio_actions if a != "stroke"]
    state.studio_redo = []
    reset_drawing()


def reset_to_automatic() -> None:
    state.update(studio_decisions={}, studio_selections=[], studio_actions=[], studio_redo=[],
                 studio_decided_mask=state.studio_auto_mask, studio_base_mask=state.studio_auto_mask)
    reset_drawing()


def flip_region(index: int) -> None:
    """Keep a region the automatic mask dropped, or drop one it kept."""
    analysis = state.studio_analysis
    decisions = dict(state.studio_decisions)
    decisions[index] = not decisions.get(index, analysis.regions[index].kept)
    state.studio_decisions = decisions
    state.studio_decided_mask = analyse_mask(state.studio_photo, ui.settings()["segmenter"], decisions).mask
    rebuild_base()


def select(mark: dict, canvas_size: tuple[int, int]) -> None:
    """A click or a box on the canvas: the region Segment Anything finds there joins the mask (Add)
    or leaves it (Remove)."""
    from core.masks.click_select import select_region

    kind, target = brush.mark_target(mark, state.studio_photo.size, canvas_size)
    mode = state.get("studio_mode") or "add"
    settings = ui.settings()
    try:
        with st.spinner("Selecting..."):
            region = select_region(state.studio_photo, points=[target] if kind == "point" else (),
                                   box=target if kind == "box" else None, model_id=settings[SAM_MODEL.name],
                                   device=settings["device"], registry=ui.model_registry())
    except BackdropError as error:
        state.studio_notice = str(error)
        return
    state.studio_notice = None
    state.studio_selections.append(Selection(mode, (kind, target), region))
    record("select")
    rebuild_base()


def _fingerprint(drawing: dict | None) -> str:
    objects = (drawing or {}).get("objects", [])
    return hashlib.sha1(json.dumps(objects, sort_keys=True, default=str).encode()).hexdigest()


def canvas_sent() -> None:
    """The canvas sent a new drawing (a callback: it runs before the page, so the canvas is drawn
    after this): each click or box on it becomes a selection and is taken off the canvas."""
    drawing = ((state.get(CANVAS_KEY) or {}).get("drawing") or {}).get("raw")
    painted, marks = brush.marks(drawing)
    if not marks:
        return
    for mark in marks:
        select(mark, state.studio_canvas_size)
    reset_drawing(painted, stale=_fingerprint(drawing))


def read_canvas(result) -> None:
    """Take what the canvas sent: new strokes (recorded for Undo) and their pixels."""
    drawing = result.json_data
    seen = _fingerprint(drawing)
    stale = seen == state.get("studio_stale")
    state.studio_seen = seen
    if drawing is None or stale or result.image_data is None:  # None: a fresh canvas that has sent nothing yet
        return
    painted, marks = brush.marks(drawing)
    if marks:  # made selections in canvas_sent; the canvas is being redrawn without them
        return
    for _ in range(len(painted) - len(strokes())):
        record("stroke")
    state.studio_drawing = {**state.studio_drawing, "objects": painted}
    state.studio_strokes = result.image_data


def fit_drawing(size: tuple[int, int]) -> None:
    """The canvas follows the screen's width: when its size changes, the drawing scales with it."""
    before = state.get("studio_canvas_size")
    state.studio_canvas_size = size
    if before and before != size and strokes():
        reset_drawing(brush.scale_drawing({"objects": strokes()}, size[0] / before[0])["objects"])


# ---------------------------------------------------------------- the mask section

def mask_section() -> None:
    photo = state.studio_photo
    left, right = st.columns([3, 2])
    with left:
        available, shortcut = browser.studio_helper("studio_browser", CANVAS_KEY, f"{FORM}prompt", "studio_generate",
                                                    brush.CANVAS_MAX_WIDTH)
        if shortcut == "undo":
            undo()
        elif shortcut == "redo":
            redo()
        size = brush.display_size(*photo.size, max_w=available)
        fit_drawing(size)
        if CANVAS_KEY not in state:  # a fresh canvas (first view, or back from another page)
            state.studio_canvas_init = state.get("studio_drawing") or {"objects": []}
        tool = state.setdefault("studio_tool", "brush")
        mode = state.setdefault("studio_mode", "add")
        brush_size = state.setdefault("studio_brush_size", 30)
        style = MARK_STYLE.get(tool, dict(drawing_mode="freedraw", stroke_width=brush_size))
        result = st_canvas(
            stroke_color=brush.stroke_color("add" if mode == "add" else "erase") if tool == "brush" else "#ffcc00",
            fill_color="rgba(255, 204, 0, 0.25)", background_image=overlay_jpeg(size), width=size[0], height=size[1],
            initial_drawing=state.studio_canvas_init, return_image_data=True, key=CANVAS_KEY, on_change=canvas_sent,
            **style,
        )
        read_canvas(result)
        tools()
    corrected = brush.corrected_mask(state.studio_base_mask, state.get("studio_strokes"))
    state.studio_mask = corrected
    with right:
        st.caption("Corrected mask: this is what will be kept")
        st.image(brush.mask_overlay(photo, corrected, size), width="stretch")
        regions_panel()


def tools() -> None:
    """Under the canvas, in rows that wrap on a phone: tool, add/remove, brush size, undo/redo."""
    tool = state.studio_tool
    with st.container(horizontal=True, vertical_alignment="bottom", gap="small"):
        st.segmented_control("Tool", list(TOOLS), key="studio_tool", format_func=TOOLS.get, persist_state="session",
                             required=True, help="Brush: paint. Click: Segment Anything finds the part you click. "
                                                 "Box: it finds the object inside the box you drag.")
        st.segmented_control("Mode", list(MODES), key="studio_mode", format_func=MODES.get, persist_state="session",
                             required=True, help="Add to the subject (kept) or remove from it (replaced)")
        if tool == "brush":
            st.slider("Brush size", 4, 120, key="studio_brush_size", persist_state="session", width=180)
    with st.container(horizontal=True, gap="small"):
        actions = state.get("studio_actions") or []
        st.button("Undo", on_click=undo, icon=":material/undo:", key="studio_undo", disabled=not actions,
                  help="Take back the last stroke or selection (Ctrl+Z)")
        st.button("Redo", on_click=redo, icon=":material/redo:", key="studio_redo_btn",
                  disabled=not state.get("studio_redo"), help="Ctrl+Shift+Z")
        st.button("Clear", on_click=clear, icon=":material/ink_eraser:", key="studio_clear",
                  help="Remove all brush strokes")
        st.button("Reset to automatic", on_click=reset_to_automatic, icon=":material/restart_alt:",
                  key="studio_reset", help="Remove all strokes and selections: back to the automatic mask")
    if tool == "brush":
        st.caption("Paint on the photo: green adds to the subject, red removes. Tinted = background.")
    else:
        st.caption("Click on a part of the photo: Segment Anything finds it, and it joins the subject or leaves it."
                   if tool == "click" else "Drag a box around an object: it joins the subject or leaves it.")
        sam_status()
    if state.get("studio_notice"):
        st.warning(state.studio_notice)
    if state.get("studio_selections"):
        st.caption("Selections (Undo takes the last back): " + "; ".join(
            f"{i + 1}. {'added' if sel.mode == 'add' else 'removed'} the region "
            + (f"at ({sel.target[1][0]}, {sel.target[1][1]})" if sel.target[0] == "point"
               else "in the box ({}, {}, {}, {})".format(*sel.target[1]))
            for i, sel in enumerate(state.studio_selections)))


def sam_status() -> None:
    """Without Segment Anything's weights, say which and how to get them (the brush still works)."""
    from core.models.slots import explain_missing, status_row

    row = status_row("sam", ui.settings()[SAM_MODEL.name])
    if not row["present"]:
        st.warning(explain_missing([row]), icon=":material/block:")


def regions_panel() -> None:
    """The large areas the automatic mask was unsure about (outlined and numbered on the photo),
    each kept or dropped as a whole: one click flips it."""
    analysis = state.studio_analysis
    if not analysis.regions:
        return
    st.caption(f"The cut-out was unsure about {len(analysis.regions)} area(s), outlined in yellow on the photo. "
               "Each was kept or dropped as a whole: click to change it.")
    for region in analysis.regions:
        kept = state.studio_decisions.get(region.index, region.kept)
        verb = "drop it" if kept else "keep it"
        st.button(f"Area {region.index + 1}: {'kept' if kept else 'dropped'} "
                  f"({round(region.confidence * 100)}% sure it is subject), {verb}",
                  key=f"studio_region_{region.index}", on_click=flip_region, args=(region.index,),
                  icon=":material/flip:")


def overlay_jpeg(size: tuple[int, int]) -> bytes:
    """The canvas background (photo with the base mask's tint, unsure regions outlined), encoded
    once per mask."""
    key = (state.studio_photo_sha, id(state.studio_base_mask), size)
    if state.get("studio_overlay_key") != key:
        import io

        analysis = state.studio_analysis
        image = brush.outline_regions(brush.mask_overlay(state.studio_photo, state.studio_base_mask, size),
                                      analysis.labels, len(analysis.regions))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        state.studio_overlay_key, state.studio_overlay = key, buffer.getvalue()
    return state.studio_overlay


def user_mask():
    """The mask to send: None when it is the automatic one (the pipeline then computes and
    records it as automatic, with the segmenter's name), whatever was drawn and undone before."""
    mask = state.studio_mask
    return None if np.array_equal(np.asarray(mask), np.asarray(state.studio_auto_mask)) else mask


# ---------------------------------------------------------------- background, generation, results

def generate_section() -> None:
    form, output = st.columns([2, 3])
    with form:
        if state.get(f"{FORM}base") is not None and state.get("studio_parent"):
            st.caption(f"Models and device as in generation #{state.studio_parent}.")
            st.button("Use the Models page's defaults", key="studio_forget_base", on_click=ui.forget_base, args=(FORM,))
        request, picture, reason = ui.background_form(FORM, ui.form_base(FORM))
        if reason:
            st.caption(f"Cannot generate yet: {reason}.")
        generate = ui.press("Generate", "studio_generate", type="primary", disabled=request is None,
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


def submit(generate: ui.Press, request, picture: bytes | None, reason: str | None) -> None:
    """Generate was pressed: queue the job, or say why not. The inputs are read first: once the
    job is queued, nothing may touch session state before the press is settled."""
    if request is None:
        generate.settle(error=f"Generate was pressed but cannot run: {reason}.")
        return
    photo, mask, parent, user = state.studio_photo_bytes, user_mask(), state.get("studio_parent"), ui.current_user()
    try:
        job = ui.submit(request, photo, mask, parent, picture=picture, user=user)
    except BackdropError as error:
        generate.settle(error=str(error))
    else:
        generate.settle(outcome=job)


def job_panel(generation_id: int) -> None:
    from storage.lifecycle import UNFINISHED, Status
    from storage.progress import finished_text

    view = ui.workers().queue.get(generation_id, user=ui.current_user())
    if view.status in UNFINISHED:
        ui.job_progress(generation_id, key="studio")
    elif view.status == Status.DONE:
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
if state.get("studio_photo") is None:
    st.query_params.pop("job", None)
    st.info("Upload a photo to start: the subject is cut out automatically, then you choose a new background.")
else:
    mask_section()
    st.divider()
    generate_section()
