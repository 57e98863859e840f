"""Mask corrections with a brush and clicks, and the previews that show them.

The Studio's canvas returns the user's strokes as one RGBA drawing: see-through green paint
adds to the subject, red paint erases from it; the soft brush paints pale green and pale red,
and its strokes fade from their middle to their edge in the mask (a soft alpha edge, for hair
and fur) instead of setting it outright. These functions turn that drawing into the corrected
mask, read the clicks and boxes of click selection off the canvas's objects, and draw
the photo with its mask (and the regions the automatic mask was unsure about) for the user to
check; plain numpy and PIL, so they are tested without a browser.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

CANVAS_MAX_WIDTH = 540  # fits the wider of two columns on a 1366 px wide screen
CANVAS_MAX_HEIGHT = 600
DETAIL = 3  # the canvas holds up to this many pixels per pixel on the screen: zoomed in, it stays sharp
STROKE_ALPHA = 0.55  # strokes are see-through so the photo stays visible under them
ADD_RGB = (0, 230, 64)
ERASE_RGB = (235, 30, 30)
SOFT_ADD_RGB = (150, 255, 160)  # the soft brush: pale, so its strokes are told apart on the canvas
SOFT_ERASE_RGB = (255, 140, 150)
SOFT_MIN_CHANNEL = 90  # a painted pixel whose darkest channel is this bright or more is a soft stroke's
TINT_RGB = (30, 40, 120)  # what the background (mask 0) is tinted with in previews
OUTLINE_RGB = (255, 204, 0)  # the outline of a region the automatic mask was unsure about
MARK_TYPES = ("circle", "rect")  # the canvas objects a click ("point" mode) and a box ("rect") make


def display_size(width: int, height: int, max_w: int = CANVAS_MAX_WIDTH, max_h: int = CANVAS_MAX_HEIGHT) -> tuple[int, int]:
    """Size the photo is shown (and painted on) at: aspect kept, within max_w x max_h."""
    scale = min(max_w / width, max_h / height, 1.0)
    return max(1, round(width * scale)), max(1, round(height * scale))


def canvas_size(photo_size: tuple[int, int], shown: tuple[int, int]) -> tuple[int, int]:
    """The canvas's own pixels for a photo shown at ``shown`` (it is scaled down on the screen):
    up to DETAIL times as many as it is shown with, never more than the photo's, so the photo
    and the strokes painted zoomed in keep their detail."""
    return display_size(*photo_size, max_w=shown[0] * DETAIL, max_h=shown[1] * DETAIL)


def mask_overlay(photo: Image.Image, mask: Image.Image, size: tuple[int, int] | None = None) -> Image.Image:
    """The photo with everything the mask calls background darkened and tinted."""
    size = size or photo.size
    rgb = np.asarray(photo.convert("RGB").resize(size, Image.Resampling.BILINEAR), dtype=np.float32)
    alpha = np.asarray(mask.convert("L").resize(size, Image.Resampling.BILINEAR), dtype=np.float32)[..., None] / 255
    tinted = rgb * 0.35 + np.array(TINT_RGB, dtype=np.float32) * 0.65
    return Image.fromarray((rgb * alpha + tinted * (1 - alpha)).round().astype(np.uint8))


def stroke_color(mode: str, soft: bool = False) -> str:
    """The canvas's colour for a stroke that adds (``mode`` "add") or erases, hard or soft."""
    r, g, b = (SOFT_ADD_RGB if soft else ADD_RGB) if mode == "add" else (SOFT_ERASE_RGB if soft else ERASE_RGB)
    return f"rgba({r}, {g}, {b}, {STROKE_ALPHA})"


SOFT_COLORS = frozenset({stroke_color("add", True), stroke_color("erase", True)})


def stroke_masks(strokes: np.ndarray, size: tuple[int, int]) -> dict[str, np.ndarray]:
    """Split the canvas's RGBA drawing into boolean masks at ``size``: "add" and "erase" (the hard
    brush), "soft_add" and "soft_erase".

    A painted pixel is one with visible alpha; green-dominant is add, red-dominant erase, and a
    pale one (no dark channel) is the soft brush's. Where strokes overlap, the canvas already
    composited the later stroke on top, so the colour that dominates is the one painted last.
    """
    rgba = np.asarray(strokes)
    if rgba.ndim != 3 or rgba.shape[2] != 4:
        raise ValueError(f"strokes must be an RGBA array, got shape {rgba.shape}")
    painted = rgba[..., 3] >= 48
    green = rgba[..., 1].astype(np.int16) > rgba[..., 0].astype(np.int16)
    soft = rgba[..., :3].min(axis=2) >= SOFT_MIN_CHANNEL
    kinds = {"add": green & ~soft, "erase": ~green & ~soft, "soft_add": green & soft, "soft_erase": ~green & soft}
    return {name: np.asarray(Image.fromarray(((painted & where) * 255).astype(np.uint8)).resize(
        size, Image.Resampling.BILINEAR)) >= 128 if (painted & where).any() else np.zeros(size[::-1], bool)
        for name, where in kinds.items()}


def soft_reach(objects: list[dict], canvas_size: tuple[int, int] | None, photo_size: tuple[int, int]) -> float:
    """How far (in photo pixels) the soft brush's strokes fade in from their edge: half their
    width on the canvas (their median, when sizes differ), in the photo's pixels; 0 without any."""
    widths = [float(o.get("strokeWidth") or 0) * float(o.get("scaleX") or 1)
              for o in objects if o.get("stroke") in SOFT_COLORS]
    if not widths or not canvas_size:
        return 0.0
    return float(np.median(widths)) / 2 * photo_size[0] / canvas_size[0]


def soft_alpha(region: np.ndarray, reach: float, painted: np.ndarray | None = None) -> np.ndarray:
    """How much of a soft stroke covers each pixel (0 to 1): 0 outside ``region``, rising with the
    distance from the paint's edge to 1 at ``reach`` pixels in (a smoothstep), so a stroke is
    full only along its middle. ``painted``: all the paint, ``region`` included: a hard stroke
    painted over a soft one adds no edge to it."""
    painted = region if painted is None else painted | region
    alpha = np.zeros(region.shape, np.float32)
    ys, xs = np.nonzero(region)
    if not len(ys):
        return alpha
    y0, y1, x0, x1 = max(ys.min() - 1, 0), ys.max() + 2, max(xs.min() - 1, 0), xs.max() + 2
    crop = np.pad(painted[y0:y1, x0:x1], 1)  # the photo's edge is no stroke's edge: only where the paint stops
    crop[0, :] = crop[1, :]
    crop[-1, :] = crop[-2, :]
    crop[:, 0] = crop[:, 1]
    crop[:, -1] = crop[:, -2]
    t = np.clip(ndimage.distance_transform_edt(crop)[1:-1, 1:-1] / max(reach, 1.0), 0.0, 1.0)
    alpha[y0:y1, x0:x1] = t * t * (3 - 2 * t)
    return np.where(region, alpha, 0)


def corrected_mask(base: Image.Image, strokes: np.ndarray | None, reach: float = 0.0) -> Image.Image:
    """The base mask with hard add strokes set to subject (255) and erase strokes to background
    (0); soft strokes blend towards those by their ``soft_alpha`` (``reach``: ``soft_reach``)."""
    if strokes is None:
        return base
    kinds = stroke_masks(strokes, base.size)
    values = np.asarray(base.convert("L")).astype(np.float32)
    painted = kinds["add"] | kinds["erase"] | kinds["soft_add"] | kinds["soft_erase"]
    if kinds["soft_add"].any():
        values += (255 - values) * soft_alpha(kinds["soft_add"], reach, painted)
    if kinds["soft_erase"].any():
        values *= 1 - soft_alpha(kinds["soft_erase"], reach, painted)
    values[kinds["add"]] = 255
    values[kinds["erase"]] = 0
    return Image.fromarray(values.round().astype(np.uint8))


def marks(drawing: dict | None) -> tuple[list[dict], list[dict]]:
    """Split a canvas drawing's objects into (brush strokes, click and box marks)."""
    objects = list((drawing or {}).get("objects", []))
    strokes = [o for o in objects if str(o.get("type", "")).lower() not in MARK_TYPES]
    return strokes, [o for o in objects if str(o.get("type", "")).lower() in MARK_TYPES]


def mark_target(mark: dict, photo_size: tuple[int, int], canvas_size: tuple[int, int]) -> tuple[str, tuple[float, ...]]:
    """("point", (x, y)) for a click, ("box", (x0, y0, x1, y1)) for a box, in whole pixels of a
    photo of ``photo_size`` shown on a canvas of ``canvas_size`` (a click lands on a pixel; a
    box covers the pixels it touches), clipped to the photo."""
    kind = str(mark.get("type", "")).lower()
    w, h = photo_size
    scale = (w / canvas_size[0], h / canvas_size[1])
    sx, sy = mark.get("scaleX", 1) or 1, mark.get("scaleY", 1) or 1
    left, top, stroke = float(mark.get("left", 0)), float(mark.get("top", 0)), float(mark.get("strokeWidth", 0) or 0)
    if kind == "circle":
        reach = float(mark.get("radius", 0)) * sx + stroke / 2  # from the circle's edge to its centre
        x = left + (reach if mark.get("originX", "left") == "left" else 0)
        y = top + (reach if mark.get("originY", "top") == "top" else 0)
        return "point", (min(max(int(x * scale[0]), 0), w - 1), min(max(int(y * scale[1]), 0), h - 1))
    width, height = float(mark.get("width", 0)) * sx, float(mark.get("height", 0)) * sy
    x0 = left - (width / 2 if mark.get("originX") == "center" else 0)
    y0 = top - (height / 2 if mark.get("originY") == "center" else 0)
    xs = sorted(min(max(v * scale[0], 0.0), float(w)) for v in (x0, x0 + width))
    ys = sorted(min(max(v * scale[1], 0.0), float(h)) for v in (y0, y0 + height))
    x0, y0 = min(math.floor(xs[0]), w - 1), min(math.floor(ys[0]), h - 1)
    return "box", (x0, y0, max(math.ceil(xs[1]), x0 + 1), max(math.ceil(ys[1]), y0 + 1))


def scale_drawing(drawing: dict, factor: float) -> dict:
    """The drawing for a canvas ``factor`` times the size (the canvas follows the screen's width):
    every object moved and scaled with it."""
    objects = []
    for obj in drawing.get("objects", []):
        obj = dict(obj)
        for name in ("left", "top"):
            obj[name] = float(obj.get(name, 0)) * factor
        for name in ("scaleX", "scaleY"):
            obj[name] = float(obj.get(name, 1) or 1) * factor
        objects.append(obj)
    return {**drawing, "objects": objects}


def outline_regions(overlay: Image.Image, labels: Image.Image | None, count: int, scale: float = 1.0) -> Image.Image:
    """``overlay`` with the outline and the number (1, 2, ...) of each region of ``labels`` (a
    label image: region i has value i + 1), resized to the overlay's size. ``scale``: how many of
    the overlay's pixels make one on the screen (the canvas is shown scaled down): the outline
    and the numbers are that much larger, so they look the same."""
    if labels is None or not count:
        return overlay
    small = np.asarray(labels.resize(overlay.size, Image.Resampling.NEAREST))
    out = np.array(overlay.convert("RGB"))
    draw_on = []
    for index in range(count):
        region = small == index + 1
        if not region.any():
            continue
        ring = region & ~ndimage.binary_erosion(region, iterations=max(2, round(2 * scale)))
        out[ring] = OUTLINE_RGB
        ys, xs = np.nonzero(region)
        draw_on.append((index, int(xs.min()), int(ys.min())))
    image = Image.fromarray(out)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=11 * scale) if scale > 1 else None
    for index, x, y in draw_on:
        label = str(index + 1)
        box = (x, y, x + round((8 + 7 * len(label)) * scale), y + round(16 * scale))
        draw.rectangle(box, fill=OUTLINE_RGB)
        draw.text((x + round(4 * scale), y + round(2 * scale)), label, fill=(0, 0, 0), font=font)
    return image
