"""The cut-out and the mask downloadable while the mask is being fixed, before any Generate:
the photo at full resolution with the corrected mask (the user's strokes, selections and
flipped areas included) as a PNG with alpha, made by the pipeline's own cut-out
(core.look.composite.cutout) with the form's spill-removal setting, so it is the cut-out a
generation from this mask would store. Nothing is made until a button is pressed: a 12 MP
cut-out and its PNG take seconds, and the page reruns on every stroke.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import streamlit as st
from PIL import Image

from core.imaging import fit_mask, to_rgb


def cutout_png(photo: Image.Image, mask: Image.Image, spill_removal: bool) -> bytes:
    """The RGBA cut-out of ``photo`` with ``mask`` as the pipeline makes it, as PNG bytes."""
    from core.look.composite import cutout
    from storage.images import encode_png

    photo = to_rgb(photo)
    return encode_png(cutout(photo, fit_mask(mask, photo.size), spill_removal=spill_removal))


def mask_png(mask: Image.Image) -> bytes:
    """The mask as an 8-bit PNG (white = kept), as the pipeline stores it."""
    from storage.images import encode_png

    return encode_png(mask.convert("L"))


def buttons(photo: Image.Image, mask: Image.Image, name: str, spill_removal: bool, key: str) -> None:
    """*Cut-out PNG* and *Mask PNG* of the mask as it is now (``name``: the photo's file name,
    for the downloads' names). The callables keep this run's photo and mask: a stroke made
    while a download is being made does not change it."""
    stem = Path(name).stem or "photo"
    empty = not np.asarray(mask).any()
    size = f"{photo.width}x{photo.height}"
    with st.container(horizontal=True, gap="small"):
        st.download_button(
            "Cut-out PNG (transparent)", lambda: cutout_png(photo, mask, spill_removal),
            file_name=f"{stem}-cutout.png", mime="image/png", key=f"{key}_cutout", on_click="ignore",
            icon=":material/download:", disabled=empty,
            help=f"The subject on transparency at full size ({size}), from the mask as it is now: no need to "
                 "generate. Colour spill at the edges " + ("removed" if spill_removal else "kept")
                 + " (the setting under Edges, colour match and shadows).",
        )
        st.download_button(
            "Mask PNG", lambda: mask_png(mask), file_name=f"{stem}-mask.png", mime="image/png",
            key=f"{key}_mask", on_click="ignore", icon=":material/download:",
            help=f"The mask as it is now, {size}: white is kept, black is replaced.",
        )
    if empty:
        st.caption("The mask is empty: nothing is kept, so there is no cut-out to download.")
