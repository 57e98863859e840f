"""A finished generation as people judge it: its variants as a gallery with the chosen one
marked; the chosen one fitted to the page (transparency on a checkerboard), before and after
with a slider, and the subject's edge at 100%; its full-resolution downloads. The Studio and
History show results with ``show_outputs``.
"""

from __future__ import annotations

import io

import streamlit as st
from PIL import Image

from app_pages import browser
from app_pages.compare import card, edge_window, on_checkerboard

FIT_WIDTH = 1200  # px: the fitted views are sent at most this wide (the downloads are full size)


def show_outputs(view, key: str) -> None:
    """The variants of a finished generation, the chosen one's views and the downloads."""
    results = view.results
    if not results:
        st.info("This generation has no result images.")
        return
    chosen = min(st.session_state.get(f"{key}_chosen_{view.id}", 0), len(results) - 1)
    if len(results) > 1:
        gallery(view, key, chosen)
    output = results[chosen]
    whole, sliding, edge = st.tabs(["Result", "Before / after", "Edge at 100%"])
    with whole:
        st.image(_fitted(str(output.path)), width="stretch", caption=f"Variant {output.index + 1} ({output.width}x{output.height})"
                 + (", transparent: shown on a checkerboard" if _has_alpha(str(output.path)) else ""))
    framed = _frame(view)
    before, after = _urls(_pair(str(_input_path(view)), str(output.path), None, framed), f"{key}_compare")
    with sliding:
        browser.compare(before, after, key=f"{key}_compare", caption="drag to compare")
    mask = view.output("cutout") if framed is not None else view.output("mask")  # where the subject went
    if mask is not None:
        with Image.open(mask.path) as image:
            box = edge_window(image.getchannel("A") if framed is not None else image)
        before, after = _urls(_pair(str(_input_path(view)), str(output.path), box, framed), f"{key}_edge")
        with edge:
            browser.compare(before, after, key=f"{key}_edge", natural=True,
                            caption=f"1:1 pixels at x {box[0]}-{box[2]}, y {box[1]}-{box[3]}")
    downloads(view, output, key)
    colour_match_look(view)
    for warning in view.warnings:  # may quote the prompt: plain text, never Markdown
        st.text(f"Warning: {warning}")


def gallery(view, key: str, chosen: int) -> None:
    """Every variant as a card of one size; the chosen one is marked, the others can be chosen."""
    columns = st.columns(min(len(view.results), 4))
    for i, output in enumerate(view.results):
        with columns[i % len(columns)], st.container(border=True):
            st.image(_card(str(output.path)), width="stretch")
            if i == chosen:
                st.markdown(f":material/check_circle: **Variant {i + 1}: chosen**")
            else:
                st.button(f"Choose variant {i + 1}", key=f"{key}_choose_{view.id}_{i}", width="stretch",
                          on_click=st.session_state.__setitem__, args=(f"{key}_chosen_{view.id}", i))


def downloads(view, output, key: str) -> None:
    extras = [(o.kind, o) for o in (view.output("cutout"), view.output("mask")) if o is not None]
    with st.container(horizontal=True, gap="small"):
        st.download_button(
            "Download result PNG", output.path.read_bytes(),
            file_name=f"backdrop-{view.id}-result-{output.index + 1}.png", mime="image/png",
            key=f"{key}_dl_result", on_click="ignore", icon=":material/download:",
            help=f"Variant {output.index + 1} at full resolution ({output.width}x{output.height})",
        )
        for kind, extra in extras:
            label = "Cut-out PNG (transparent)" if kind == "cutout" else "Mask PNG"
            st.download_button(
                label, extra.path.read_bytes(), file_name=f"backdrop-{view.id}-{kind}.png",
                mime="image/png", key=f"{key}_dl_{kind}", on_click="ignore", icon=":material/download:",
            )


def colour_match_look(view) -> None:
    """Colour match changes the subject's pixels: show the first result beside the subject as
    photographed, so the user sees exactly what it did."""
    from core.look.harmony import as_photographed

    harmony = view.request.get("harmony", 0)
    cut = view.output("cutout")
    if not harmony or not view.results or cut is None:
        return
    with Image.open(view.results[0].path) as result, Image.open(cut.path) as cutout:
        before = as_photographed(result, cutout)
        after = result.convert("RGB")
    st.caption(f"Colour match {harmony:g} changed the subject's pixels: before and after")
    left, right = st.columns(2)
    left.image(before, caption="Subject as photographed", width="stretch")
    right.image(after, caption="With colour match", width="stretch")


def _input_path(view):
    from storage.db import get_database

    return get_database().images.path(view.input_sha256)


def _has_alpha(path: str) -> bool:
    with Image.open(path) as image:
        return "A" in image.getbands()


@st.cache_data(max_entries=16, show_spinner=False)
def _fitted(path: str) -> bytes:
    """A result at most FIT_WIDTH wide, transparency on a checkerboard, as JPEG (stored images
    never change: a path is a content hash)."""
    with Image.open(path) as image:
        image.thumbnail((FIT_WIDTH, FIT_WIDTH * 4), Image.Resampling.LANCZOS)
        return _jpeg(on_checkerboard(image))


@st.cache_data(max_entries=64, show_spinner=False)
def _card(path: str) -> bytes:
    with Image.open(path) as image:
        return _jpeg(card(image))


def _frame(view) -> tuple | None:
    """Where the generation put the photo on its canvas (core.look.framing's record), as the
    arguments of a Frame; None when it kept the photo's size and place."""
    record = view.record or {}
    if "canvas" not in record:
        return None
    size = record.get("input_size")
    return (tuple(size), tuple(record["canvas"]), record["subject_scale"], tuple(record["photo_offset"]))


@st.cache_data(max_entries=16, show_spinner=False)
def _pair(photo_path: str, result_path: str, box: tuple[int, int, int, int] | None,
          framed: tuple | None = None) -> tuple[tuple[bytes, str], ...]:
    """(before, after) as (encoded image, MIME type), of the same size: the photo as the
    pipeline saw it (upright, sRGB; placed on the canvas as ``framed`` says, the new area
    hatched) and the result; both fitted to FIT_WIDTH, or cut to ``box`` at full resolution. A
    transparent result stays transparent (PNG): the slider shows a checkerboard behind it."""
    from app_pages.framing import on_canvas
    from core.imaging import load_image, to_rgb
    from core.look.framing import Frame

    with open(photo_path, "rb") as stream:
        before = to_rgb(load_image(stream.read()))
    if framed is not None:
        before = on_canvas(before, Frame(*framed))
    with Image.open(result_path) as result:
        after = result.copy()
    if box is not None:
        before, after = before.crop(box), after.crop(box)
    elif after.width > FIT_WIDTH:
        size = (FIT_WIDTH, max(1, round(after.height * FIT_WIDTH / after.width)))
        before, after = (im.resize(size, Image.Resampling.LANCZOS) for im in (before, after))
    if before.size != after.size:
        before = before.resize(after.size, Image.Resampling.LANCZOS)
    return (_jpeg(before), "image/jpeg"), ((_png(after), "image/png") if "A" in after.getbands()
                                          else (_jpeg(after), "image/jpeg"))


def _urls(pair: tuple[tuple[bytes, str], ...], where: str) -> tuple[str, str]:
    """The URLs the browser fetches a pair from: by URL, not inside the page's messages."""
    (before, before_type), (after, after_type) = pair
    return (browser.media_url(before, before_type, f"{where}.before"),
            browser.media_url(after, after_type, f"{where}.after"))


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()
