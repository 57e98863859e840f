"""Looking at a result: transparency on a checkerboard, the stretch of the subject's edge worth
seeing at 100%, and pictures fitted into cards of one size. Plain PIL and numpy, so the views the
app shows are tested without a browser.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

SQUARE = 10  # px of a checkerboard square
LIGHT, DARK = (255, 255, 255), (204, 204, 204)
CARD_FILL = (240, 242, 246)
EDGE_WINDOW = (480, 360)  # what "the edge at 100%" shows: small enough for a phone to scroll around


def checkerboard(size: tuple[int, int], square: int = SQUARE) -> Image.Image:
    """The grey and white squares that stand for "transparent"."""
    w, h = size
    ys, xs = np.mgrid[0:h, 0:w]
    dark = ((xs // square + ys // square) % 2).astype(bool)
    pixels = np.where(dark[..., None], np.array(DARK, np.uint8), np.array(LIGHT, np.uint8))
    return Image.fromarray(pixels.astype(np.uint8), "RGB")


def on_checkerboard(image: Image.Image, square: int = SQUARE) -> Image.Image:
    """``image`` as RGB, its transparent parts shown over a checkerboard (opaque images as they are)."""
    if "A" not in image.getbands() and "transparency" not in image.info:
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    board = checkerboard(rgba.size, square).convert("RGBA")
    return Image.alpha_composite(board, rgba).convert("RGB")


def card(image: Image.Image, box: tuple[int, int] = (320, 240)) -> Image.Image:
    """``image`` fitted into ``box`` (aspect kept) and centred on a plain fill, so a row of cards
    lines up whatever the photos' shapes; transparency shows as a checkerboard."""
    fitted = image.copy()
    fitted.thumbnail(box, Image.Resampling.LANCZOS)
    out = Image.new("RGB", box, CARD_FILL)
    out.paste(on_checkerboard(fitted), ((box[0] - fitted.width) // 2, (box[1] - fitted.height) // 2))
    return out


def edge_window(mask: Image.Image, size: tuple[int, int] = EDGE_WINDOW) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1): a window of ``size`` (or the whole photo, when smaller) on the stretch of
    the subject's outline with the most edge in it: where a cut-out succeeds or fails (hair, fur,
    a glossy rim). The centre of the photo when the mask has no edge."""
    width, height = mask.size
    win_w, win_h = min(size[0], width), min(size[1], height)
    factor = max(1, -(-max(width, height) // 512))  # find it on a copy of at most 512 px
    small = np.asarray(mask.convert("L").reduce(factor))
    subject = small >= 128
    edge = (subject ^ ndimage.binary_erosion(subject)) | ((small > 8) & (small < 247))
    if edge.any():
        density = ndimage.uniform_filter(edge.astype(np.float32),
                                         size=(max(1, win_h // factor), max(1, win_w // factor)), mode="constant")
        cy, cx = np.unravel_index(int(np.argmax(density)), density.shape)
        cx, cy = cx * factor + factor // 2, cy * factor + factor // 2
    else:
        cx, cy = width // 2, height // 2
    x0 = int(min(max(cx - win_w // 2, 0), width - win_w))
    y0 = int(min(max(cy - win_h // 2, 0), height - win_h))
    return x0, y0, x0 + win_w, y0 + win_h
