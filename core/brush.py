"""Mask corrections with a brush, and the previews that show them.

The Studio's canvas returns the user's strokes as one RGBA drawing: see-through green paint
adds to the subject, red paint erases from it. These functions turn that drawing into the
corrected mask and draw the photo with its mask for the user to check; plain numpy and PIL, so
they are tested without a browser.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

CANVAS_MAX_WIDTH = 540  # fits the wider of two columns on a 1366 px wide screen
CANVAS_MAX_HEIGHT = 600
STROKE_ALPHA = 0.55  # strokes are see-through so the photo stays visible under them
ADD_RGB = (0, 230, 64)
ERASE_RGB = (235, 30, 30)
TINT_RGB = (30, 40, 120)  # what the background (mask 0) is tinted with in previews


def display_size(width: int, height: int, max_w: int = CANVAS_MAX_WIDTH, max_h: int = CANVAS_MAX_HEIGHT) -> tuple[int, int]:
    """Size the photo is shown (and painted on) at: aspect kept, within max_w x max_h."""
    scale = min(max_w / width, max_h / height, 1.0)
    return max(1, round(width * scale)), max(1, round(height * scale))


def mask_overlay(photo: Image.Image, mask: Image.Image, size: tuple[int, int] | None = None) -> Image.Image:
    """The photo with everything the mask calls background darkened and tinted."""
    size = size or photo.size
    rgb = np.asarray(photo.convert("RGB").resize(size, Image.Resampling.BILINEAR), dtype=np.float32)
    alpha = np.asarray(mask.convert("L").resize(size, Image.Resampling.BILINEAR), dtype=np.float32)[..., None] / 255
    tinted = rgb * 0.35 + np.array(TINT_RGB, dtype=np.float32) * 0.65
    return Image.fromarray((rgb * alpha + tinted * (1 - alpha)).round().astype(np.uint8))


def stroke_color(mode: str) -> str:
    r, g, b = ADD_RGB if mode == "add" else ERASE_RGB
    return f"rgba({r}, {g}, {b}, {STROKE_ALPHA})"


def stroke_masks(strokes: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Split the canvas's RGBA drawing into (add, erase) boolean masks at ``size``.

    A painted pixel is one with visible alpha; green-dominant is add, red-dominant erase. Where
    strokes overlap, the canvas already composited the later stroke on top, so the colour that
    dominates is the one painted last.
    """
    rgba = np.asarray(strokes)
    if rgba.ndim != 3 or rgba.shape[2] != 4:
        raise ValueError(f"strokes must be an RGBA array, got shape {rgba.shape}")
    painted = rgba[..., 3] >= 48
    green = rgba[..., 1].astype(np.int16) > rgba[..., 0].astype(np.int16)
    add = Image.fromarray(((painted & green) * 255).astype(np.uint8)).resize(size, Image.Resampling.BILINEAR)
    erase = Image.fromarray(((painted & ~green) * 255).astype(np.uint8)).resize(size, Image.Resampling.BILINEAR)
    return np.asarray(add) >= 128, np.asarray(erase) >= 128


def corrected_mask(base: Image.Image, strokes: np.ndarray | None) -> Image.Image:
    """The base mask with add strokes set to subject (255) and erase strokes to background (0)."""
    if strokes is None:
        return base
    add, erase = stroke_masks(strokes, base.size)
    values = np.asarray(base.convert("L")).copy()
    values[add] = 255
    values[erase] = 0
    return Image.fromarray(values)
