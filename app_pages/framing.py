"""Size and placement in the background form: the size presets (core.look.framing.SIZE_PRESETS),
the framing fields' widgets (canvas, fill, anchor, margin: declared in core.request), and the
Studio's preview of where the photo and its subject go on the canvas before anything is
generated. ``preview_image`` is plain PIL, tested without a browser.
"""

from __future__ import annotations

import streamlit as st
from PIL import Image, ImageDraw

from core.errors import InputError
from core.look.framing import ANCHORS, SIZE_PRESETS, Frame, anchor_spec, frame_for, parse_anchor, subject_box
from core.request import FIELD

PREVIEW_SIDE = 420  # px: the preview's longer side
NEW_AREA = ((236, 238, 242), (218, 222, 230))  # the hatching that stands for "new area"
CANVAS_LINE = (20, 24, 32)
BOX_LINE = (255, 136, 0)
POSITION = "position"  # the anchor choice that shows the X and Y sliders


def anchor_keys(prefix: str) -> tuple[str, str, str]:
    return f"{prefix}anchor_kind", f"{prefix}anchor_x", f"{prefix}anchor_y"


def prefill_anchor(prefix: str, anchor: str) -> None:
    """The anchor's widgets showing ``anchor`` (a stored request's; set before they are drawn)."""
    kind, x, y = anchor_keys(prefix)
    value = parse_anchor(anchor)
    if isinstance(value, str):
        st.session_state[kind] = value
    else:
        st.session_state.update({kind: POSITION, x: value[0], y: value[1]})


def _apply_size_preset(prefix: str, background_keys) -> None:
    """The chosen size preset's values into the framing widgets (and its background, if it has
    one, into the background's): like a prompt preset, it only fills the form."""
    from core.look.backgrounds import Background

    name = st.session_state.get(f"{prefix}size_preset")
    if name not in SIZE_PRESETS:
        return
    preset = SIZE_PRESETS[name]
    state = st.session_state
    state.update({f"{prefix}canvas": preset.canvas, f"{prefix}fill": preset.fill, f"{prefix}margin": preset.margin})
    prefill_anchor(prefix, preset.anchor)
    if preset.background:
        background = Background.parse(preset.background)
        state[f"{prefix}kind"] = background.kind
        for key, colour in zip(background_keys(prefix, background.declared), background.colors):
            state[key] = "#%02x%02x%02x" % colour


def size_section(prefix: str, field_widget, background_keys) -> str:
    """The size preset select and the framing fields' widgets; returns the anchor as the
    request writes it. ``field_widget`` draws one field from its declaration (app_pages.form),
    ``background_keys(prefix, kind)`` names a kind's colour pickers' keys."""
    state = st.session_state
    st.selectbox("Size", [""] + list(SIZE_PRESETS), key=f"{prefix}size_preset", persist_state="session",
                 format_func=lambda n: SIZE_PRESETS[n].label if n else "(none - set below)",
                 on_change=_apply_size_preset, args=(prefix, background_keys),
                 help="  \n".join(f"**{p.label}**: {p.hint}" for p in SIZE_PRESETS.values()))
    with st.expander("Canvas, subject size and position"):
        field_widget(prefix, FIELD["canvas"])
        field_widget(prefix, FIELD["fill"])
        kind, x, y = anchor_keys(prefix)
        if kind not in state:  # first drawn: the base request's anchor
            prefill_anchor(prefix, state.get(f"{prefix}anchor", FIELD["anchor"].default))
        choices = {**ANCHORS, POSITION: "At a position (X, Y)"}
        st.selectbox(FIELD["anchor"].label, list(choices), key=kind, format_func=choices.get, persist_state="session",
                     help=FIELD["anchor"].help)
        anchor = state[kind]
        if anchor == POSITION:
            state.setdefault(x, 0.5)
            state.setdefault(y, 0.5)
            left, right = st.columns(2)
            left.slider("Across (0 left, 1 right)", 0.0, 1.0, step=0.05, key=x, persist_state="session")
            right.slider("Down (0 top, 1 bottom)", 0.0, 1.0, step=0.05, key=y, persist_state="session")
            anchor = anchor_spec((state[x], state[y]))
        field_widget(prefix, FIELD["margin"])
    state[f"{prefix}anchor"] = anchor  # not a widget's: what the form and the preview read
    return anchor


# ---------------------------------------------------------------- the Studio's preview

def preview_image(photo: Image.Image, mask: Image.Image, frame: Frame, side: int = PREVIEW_SIDE) -> Image.Image:
    """The canvas at most ``side`` px on its longer side: the photo where it goes, the new area
    hatched, the canvas outlined in dark and the subject's box in orange."""
    k = side / max(frame.canvas)
    size = (max(1, round(frame.canvas[0] * k)), max(1, round(frame.canvas[1] * k)))
    small = Frame(frame.photo, size, frame.scale * k, (frame.offset[0] * k, frame.offset[1] * k))
    out = _hatched(size)
    draw = ImageDraw.Draw(out)
    x0, y0, x1, y1 = small.covered
    if x1 > x0 and y1 > y0:
        placed = small.place(photo.convert("RGB"), resample=Image.Resampling.BILINEAR)
        out.paste(placed.crop((x0, y0, x1, y1)), (x0, y0))
    box = subject_box(mask)
    if box is not None:
        bx0, by0, bx1, by1 = small.to_canvas(box)
        draw.rectangle([bx0, by0, bx1 - 1, by1 - 1], outline=BOX_LINE, width=2)
    draw.rectangle([0, 0, size[0] - 1, size[1] - 1], outline=CANVAS_LINE, width=2)
    return out


def caption(frame: Frame, request) -> str:
    """One line saying what the preview shows, in numbers."""
    width, height = frame.canvas
    parts = [f"Canvas {width}x{height}"]
    if request.fill > 0:
        parts.append(f"subject {request.fill:.0%} of the canvas")
    parts.append("the photo's own scale" if not frame.resampled else f"scaled x{frame.scale:.2f}")
    if frame.new_area > 0.0005:
        parts.append(f"new area {frame.new_area:.0%} (hatched)")
    return "; ".join(parts) + ". Orange: the subject's box."


def on_canvas(photo: Image.Image, frame: Frame) -> Image.Image:
    """The photo where a generation put it on its canvas, the new area hatched: the "before" of
    a framed result, so the slider compares the same places."""
    out = _hatched(frame.canvas)
    x0, y0, x1, y1 = frame.covered
    if x1 > x0 and y1 > y0:
        out.paste(frame.place(photo.convert("RGB")).crop((x0, y0, x1, y1)), (x0, y0))
    return out


def _hatched(size: tuple[int, int], spacing: int = 12) -> Image.Image:
    out = Image.new("RGB", size, NEW_AREA[0])
    draw = ImageDraw.Draw(out)
    for start in range(-size[1], size[0], spacing):
        draw.line([(start, size[1]), (start + size[1], 0)], fill=NEW_AREA[1], width=max(2, spacing // 3))
    return out


def form_framing(prefix: str):
    """A request holding the form's framing values (the rest default), or the InputError that
    says what is wrong with them."""
    from core.look.framing import FRAMING_FIELDS
    from core.request import GenerationRequest

    try:
        return GenerationRequest(**{name: st.session_state[f"{prefix}{name}"] for name in FRAMING_FIELDS})
    except InputError as error:
        return error


def preview(prefix: str, photo: Image.Image, mask: Image.Image) -> None:
    """The Studio's framing preview for the form's framing values (or why there is none); the
    photo's own size says so in a line."""
    request = form_framing(prefix)
    try:
        if isinstance(request, InputError):
            raise request
        frame = frame_for(request, photo.size, mask)
    except InputError as error:
        st.caption(f"No framing preview: {error}")
        return
    if frame.identity:
        st.caption(f"Output: the photo's own size ({photo.width}x{photo.height}).")
        return
    st.image(preview_image(photo, mask, frame), caption=caption(frame, request), width="stretch")
