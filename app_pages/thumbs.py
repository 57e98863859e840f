"""A generation as a small picture: its first result (the photo when there is none), fitted into
a card of one size, transparency on a checkerboard. Made from the image store's thumbnail (a
WebP written once per image and kept on disk, storage.images) and kept encoded per thumbnail
(st.cache_data), so a page that reruns every second never decodes a 12 MP result again.
History's cards and the Batch page's results use it.
"""

from __future__ import annotations

import io

import streamlit as st
from PIL import Image

from app_pages.compare import card
from storage.db import get_database

CARD = (256, 192)


def thumbnail(view) -> bytes | None:
    """``view``'s first result (its photo when there is none) as a JPEG card; None when its
    files are gone."""
    output = view.output("result") or None
    sha = output.sha256 if output else view.input_sha256
    try:
        return _card(str(get_database().images.thumbnail(sha)))
    except (OSError, ValueError):
        return None


@st.cache_data(max_entries=256, show_spinner=False)
def _card(path: str) -> bytes:
    buffer = io.BytesIO()
    with Image.open(path) as image:
        card(image, CARD).save(buffer, format="JPEG", quality=88)
    return buffer.getvalue()
