"""The Studio's *Settings from a PNG*: a result dropped here (Backdrop's, or one from
AUTOMATIC1111 or a tool that writes its ``parameters`` text, in a PNG or in a JPEG's or WebP's
EXIF comment) fills the background form with the settings it carries (core.png_settings reads
them). The form is filled in the uploader's callback, before its widgets are drawn; a file with
nothing to read changes nothing in the form, and says why.
"""

from __future__ import annotations

import streamlit as st

from app_pages import form, ui
from core.errors import BackdropError
from core.look.backgrounds import Background

state = st.session_state


def section(prefix: str, key: str) -> None:
    """The uploader and what the last file it was given filled in, or why it could not."""
    st.file_uploader(
        "Settings from a PNG", type=["png", "jpg", "jpeg", "webp"], key=key, on_change=_read, args=(prefix, key),
        help="Drop a Backdrop result, or an image made with AUTOMATIC1111 (a PNG, or a JPEG or WebP with its "
             "EXIF comment; or from a tool that writes its 'parameters' text: InvokeAI, Forge, SD.Next...): its "
             "prompt, negative prompt, seed, steps, guidance and sampler fill the form below. Nothing else in the "
             "form changes.",
    )
    note = state.get(f"{key}_note")
    if not note:
        return
    if note["error"]:
        ui.user_error("Nothing was filled in: the form is as it was.", note["error"])
        return
    generation = f", generation #{note['generation']}" if note["generation"] else ""
    st.success(f"Filled in from {note['source']}{generation}: {note['filled']}.", icon=":material/input:")
    if note["problems"]:  # they quote the file's text: shown as plain text
        ui.user_error("Not understood, left as they were:", "\n".join(note["problems"]), box=st.warning)
    if note["notes"]:
        ui.user_error("Filled in, but not quite as the file's maker ran it:", "\n".join(note["notes"]),
                      box=st.info)
    if note["unused"]:
        st.caption("In the file but not Backdrop settings (it takes the size from the photo and the models from "
                   "the Models page): " + ", ".join(note["unused"]) + ".")


def _read(prefix: str, key: str) -> None:
    """The uploader's callback: read the new file's settings and fill the form with them."""
    from core.png_settings import read_png_settings

    upload = state.get(key)
    if upload is None:  # the file was taken off: its message goes with it
        state.pop(f"{key}_note", None)
        return
    try:
        read = read_png_settings(upload.getvalue(), repr(upload.name))
    except BackdropError as error:
        state[f"{key}_note"] = {"error": str(error)}
        return
    form.fill(prefix, read.values)
    if read.request is not None:
        filled = ("every setting of the form" if "prompt" in read.values else "the background and its edge, colour "
                  "and shadow settings") + " (the models and device stay this machine's)"
    else:
        filled = ", ".join(f"background ({form.kind_label(Background.parse(value).kind)})" if name == "background"
                           else name.replace("_", " ") for name, value in read.values.items()) or "nothing"
    state[f"{key}_note"] = {"error": None, "source": read.source, "generation": read.generation, "filled": filled,
                            "problems": read.problems, "notes": read.notes, "unused": read.unused}
