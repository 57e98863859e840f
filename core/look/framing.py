"""Where the result goes: the output canvas, the subject's size on it and its anchor.

A request's framing fields (canvas, fill, anchor, margin: core.request) become a ``Frame``: the
canvas size and the one scale and offset that put the photo on it. Everything after
works on the canvas: the photo and its mask are placed once (``Frame.place``), the background is
made at the canvas's size, and the subject is composited where it was placed. The photo is
resampled at most once, with one filter (``FILTER``), and not at all at scale 1, so there the
subject's pixels stay the photo's, bit for bit. The default framing (the photo's own size, fill
0) is the identity: nothing is resampled or moved.

``SIZE_PRESETS`` is the table of named framings (a marketplace square on white, a feed portrait,
a story, a banner...): like the prompt presets (core.presets) they only fill the fields, and the
request stores the values, so a re-run never depends on a preset changing later.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
from PIL import Image

from core.errors import InputError
from core.imaging import MAX_PIXELS, MIN_SIDE

MAX_SIDE = 10_000  # px: the longest canvas side (BRIA's Expand goes to 5000); at most MAX_PIXELS, as a photo
MIN_FILL = 0.05  # a subject smaller than this share of the canvas is a speck, not a framing
SUBJECT = 128  # alpha from which a pixel counts as subject (as core.imaging.check_mask counts it)
SOFT_SCALE = 2.0  # a subject enlarged more than this looks soft: the run says so
FILTER = "lanczos"  # how a scaled subject is resampled: Pillow's Lanczos (a 3-lobe windowed sinc)
FRAMING_FIELDS = ("canvas", "fill", "anchor", "margin")  # the request's fields this module reads
ANCHORS = {"center": "Centre", "bottom": "Bottom (standing products; the margin is the shadow's room)"}

_SIZE = re.compile(r"^(\d{1,5})x(\d{1,5})$")
_ASPECT = re.compile(r"^(\d{1,3}):(\d{1,3})(?:@(\d{1,5}))?$")
_POINT = re.compile(r"^\s*(\d*\.?\d+)\s*,\s*(\d*\.?\d+)\s*$")


@dataclass(frozen=True)
class Canvas:
    """A parsed canvas: ``original`` (the photo's size), ``size`` (``WxH`` px) or ``aspect``
    (``W:H``: the smallest canvas of that shape that holds the whole photo; ``W:H@LONG``: that
    shape with a long side of LONG px)."""

    kind: str
    width: int = 0
    height: int = 0
    long_side: int = 0

    @classmethod
    def parse(cls, text: str) -> "Canvas":
        spec = text.strip().lower()
        if spec == "original":
            return cls("original")
        if match := _SIZE.match(spec):
            canvas = cls("size", int(match[1]), int(match[2]))
            _check_size((canvas.width, canvas.height), text)
            return canvas
        if match := _ASPECT.match(spec):
            w, h, long_side = int(match[1]), int(match[2]), int(match[3] or 0)
            if not (w and h) or max(w, h) / min(w, h) > 20:
                raise InputError(f"canvas aspect must be two whole numbers from 1 to 999 at most 20:1 apart (got {text!r})")
            canvas = cls("aspect", w, h, long_side)
            if long_side:
                _check_size(canvas.size_for((w, h)), text)
            return canvas
        raise InputError(f"canvas must be original, WxH (2000x2000), W:H (16:9) or W:H@LONG (16:9@1920) (got {text!r})")

    def spec(self) -> str:
        """How it is written: ``original``, ``2000x2000``, ``16:9`` or ``16:9@1920``."""
        if self.kind == "original":
            return "original"
        if self.kind == "size":
            return f"{self.width}x{self.height}"
        return f"{self.width}:{self.height}" + (f"@{self.long_side}" if self.long_side else "")

    def size_for(self, photo: tuple[int, int]) -> tuple[int, int]:
        """The canvas's size in px for a photo of size ``photo``."""
        if self.kind == "original":
            return photo
        if self.kind == "size":
            return self.width, self.height
        ratio = self.width / self.height
        if self.long_side:
            if ratio >= 1:
                return self.long_side, max(1, round(self.long_side / ratio))
            return max(1, round(self.long_side * ratio)), self.long_side
        pw, ph = photo
        if pw / ph < ratio:  # the photo is narrower: keep its height, widen
            return max(pw, round(ph * ratio)), ph
        return pw, max(ph, round(pw / ratio))


def _check_size(size: tuple[int, int], text: str) -> None:
    w, h = size
    if min(w, h) < MIN_SIDE or max(w, h) > MAX_SIDE or w * h > MAX_PIXELS:
        raise InputError(f"canvas {text!r} is {w}x{h}: each side must be from {MIN_SIDE} to {MAX_SIDE:,} px and the "
                         f"whole at most {MAX_PIXELS / 1e6:.0f} megapixels")


def parse_anchor(text: str) -> str | tuple[float, float]:
    """``center``, ``bottom``, or ``X,Y``: where the subject box's centre goes, as shares of the
    canvas's width and height (0.5,0.5 is the centre)."""
    spec = text.strip().lower()
    if spec in ANCHORS:
        return spec
    match = _POINT.match(spec)
    if match:
        x, y = float(match[1]), float(match[2])
        if 0 <= x <= 1 and 0 <= y <= 1:
            return x, y
    raise InputError(f"anchor must be center, bottom or X,Y with X and Y from 0 to 1 (0.3,0.5: the subject's centre "
                     f"at 30% of the width, half the height) (got {text!r})")


def anchor_spec(anchor: str | tuple[float, float]) -> str:
    """How a parsed anchor is written: ``center``, ``bottom`` or ``0.3,0.5``."""
    return anchor if isinstance(anchor, str) else f"{anchor[0]:g},{anchor[1]:g}"


def check_fill(value: float) -> None:
    if 0 < value < MIN_FILL:
        raise InputError(f"fill must be 0 (the whole photo, scaled to fit the canvas) or from {MIN_FILL} to 1 "
                         f"(got {value!r})")


def subject_box(alpha: Image.Image) -> tuple[float, float, float, float] | None:
    """The subject's box (left, top, right, bottom) in pixel-edge coordinates, to a fraction of a
    pixel: on each side, where the most opaque pixel of each column (or row) crosses half
    opacity (``_edge``). A hard edge gives whole pixels, an anti-aliased one lands between them,
    so a box scaled fivefold is still placed to the pixel. None when no pixel is at least half
    opaque."""
    a = np.asarray(alpha.convert("L"))
    columns, rows = a.max(axis=0).astype(np.float64), a.max(axis=1).astype(np.float64)
    if columns.max() < SUBJECT:
        return None
    left, top = _edge(columns), _edge(rows)
    right, bottom = columns.size - _edge(columns[::-1]), rows.size - _edge(rows[::-1])
    return left, top, right, bottom


def _edge(profile: np.ndarray) -> float:
    """Where ``profile`` (0-255, one value per pixel) first rises to half opacity, in pixel-edge
    coordinates. Where the rise is an anti-aliased step (from 0 to 255 through one or two partly
    covered pixels), their covered share puts it exactly; a softer rise (fur, a blurred edge) is
    interpolated between the pixel centres on either side of SUBJECT."""
    first = int(np.argmax(profile >= SUBJECT))
    if first == 0:
        return 0.0
    low, high = first, first
    while low > 0 and 0 < profile[low - 1] < 255:
        low -= 1
    while high < profile.size and 0 < profile[high] < 255:
        high += 1
    step = high - low <= 2 and (low == 0 or profile[low - 1] == 0) and high < profile.size and profile[high] == 255
    if step:
        return high - float(profile[low:high].sum()) / 255.0
    share = (SUBJECT - profile[first - 1]) / (profile[first] - profile[first - 1])
    return first - 0.5 + share


@dataclass(frozen=True)
class Frame:
    """Where a photo of size ``photo`` goes on a canvas of size ``canvas``: scaled by ``scale``
    with its top-left corner at ``offset`` (canvas pixels, exact; whole pixels at scale 1, so
    there the photo is copied, not resampled; negative where part of it is cut off)."""

    photo: tuple[int, int]
    canvas: tuple[int, int]
    scale: float = 1.0
    offset: tuple[float, float] = (0, 0)

    @property
    def identity(self) -> bool:
        return self.canvas == self.photo and self.scale == 1 and tuple(self.offset) == (0, 0)

    @property
    def resampled(self) -> bool:
        """Whether the photo's pixels are resampled (not only moved) on the way to the canvas."""
        return self.scale != 1

    @property
    def covered(self) -> tuple[int, int, int, int]:
        """The canvas pixels the photo covers whole (left, top, right, bottom; right and bottom
        exclusive): the rest is new area, which the background fills or the AI paints."""
        (x, y), s = self.offset, self.scale
        return (max(0, math.ceil(x - 1e-6)), max(0, math.ceil(y - 1e-6)),
                min(self.canvas[0], math.floor(x + self.photo[0] * s + 1e-6)),
                min(self.canvas[1], math.floor(y + self.photo[1] * s + 1e-6)))

    @property
    def new_area(self) -> float:
        """The share of the canvas the photo does not cover."""
        x0, y0, x1, y1 = self.covered
        return 1.0 - max(0, x1 - x0) * max(0, y1 - y0) / (self.canvas[0] * self.canvas[1])

    def to_canvas(self, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        """A box in the photo's pixels, in the canvas's."""
        (x, y), s = self.offset, self.scale
        return box[0] * s + x, box[1] * s + y, box[2] * s + x, box[3] * s + y

    def place(self, image: Image.Image, outside: str = "mirror",
              resample: Image.Resampling = Image.Resampling.LANCZOS) -> Image.Image:
        """``image`` (the photo, or anything showing the same view at any resolution: its mask,
        a blurred copy) on the canvas: resampled once with ``resample`` (copied at scale 1), cut
        where it leaves the canvas, and where it does not reach, ``outside``: ``mirror`` (its
        edges reflected, as a photo's background continues) or ``clear`` (0: a mask's "not
        subject"). The identity frame returns ``image`` itself when it is at the photo's size."""
        if self.identity and image.size == self.photo:
            return image
        x0, y0, x1, y1 = self.covered
        if x1 <= x0 or y1 <= y0:
            raise ValueError(f"the photo is outside the canvas ({self})")
        (x, y), s = self.offset, self.scale
        fx, fy = image.width / self.photo[0], image.height / self.photo[1]  # image px per photo px
        source = ((x0 - x) / s * fx, (y0 - y) / s * fy, (x1 - x) / s * fx, (y1 - y) / s * fy)
        if s == 1 and image.size == self.photo:  # whole pixels: copied, bit for bit
            part = image.crop(tuple(round(v) for v in source))
        else:
            part = image.resize((x1 - x0, y1 - y0), resample, box=source)
        if part.size == self.canvas:
            return part
        widths = [(y0, self.canvas[1] - y1), (x0, self.canvas[0] - x1)] + [(0, 0)] * (len(part.getbands()) > 1)
        pixels = np.asarray(part)
        if outside == "mirror":
            placed = np.pad(pixels, widths, mode="symmetric")
        elif outside == "clear":
            placed = np.pad(pixels, widths, mode="constant")
        else:
            raise ValueError(f"outside must be mirror or clear (got {outside!r})")
        return Image.fromarray(placed, part.mode)

    def record(self, box: tuple[float, float, float, float] | None) -> dict[str, Any]:
        """What the run record keeps of it (core.record): the canvas, the scale and how the
        subject was resampled (``none`` at scale 1), where the photo's top-left corner went, the
        subject's box on the canvas and the share of the canvas that is new area."""
        placed = [round(v, 2) for v in self.to_canvas(box)] if box else None
        return {"canvas": self.canvas, "subject_scale": round(self.scale, 6),
                "resample_filter": FILTER if self.resampled else "none",
                "photo_offset": [round(v, 2) for v in self.offset], "subject_box": placed,
                "new_area": round(self.new_area, 4)}


def frame_for(request, photo: tuple[int, int], alpha: Image.Image | None) -> Frame:
    """The request's framing for a photo of size ``photo`` with mask ``alpha``.

    The canvas comes from ``request.canvas``. With ``fill`` above 0 the photo is scaled so the
    subject's box (``subject_box``) takes ``fill`` of the canvas along its limiting side (and
    stays ``margin`` of the canvas's shorter side inside every edge), then moved so the box sits
    at the anchor: centred, on the bottom margin, or with its centre at X,Y. With ``fill`` 0 the
    whole photo is scaled to fit the canvas and moved, inside it, as near to the anchor as it
    goes: the photo's own size and fill 0 change nothing."""
    canvas = Canvas.parse(request.canvas).size_for(photo)
    _check_size(canvas, request.canvas)
    if canvas == photo and request.fill == 0:  # the whole photo fits only where it is
        return Frame(photo, photo)
    cw, ch = canvas
    pw, ph = photo
    box = subject_box(alpha) if alpha is not None else None
    if request.fill > 0 and box is None:
        raise InputError("the mask marks no subject, so it cannot be scaled to a fill")
    margin = request.margin * min(cw, ch)
    if request.fill > 0:
        bw, bh = box[2] - box[0], box[3] - box[1]
        scale = min(request.fill * min(cw / bw, ch / bh), (cw - 2 * margin) / bw, (ch - 2 * margin) / bh)
    else:
        scale = min(cw / pw, ch / ph)
    bx0, by0, bx1, by1 = box if box is not None else (0, 0, pw, ph)
    target = _anchor_point(parse_anchor(request.anchor), canvas, ((bx1 - bx0) * scale, (by1 - by0) * scale), margin)
    offset = [t - (lo + hi) / 2 * scale for t, lo, hi in zip(target, (bx0, by0), (bx1, by1))]
    if request.fill == 0:  # the whole photo stays on the canvas: it moves only inside it
        offset = [min(max(o, 0.0), c - p * scale) for o, c, p in zip(offset, canvas, photo)]
    if scale == 1:  # moved by whole pixels only, so the photo's pixels are copied as they are
        offset = [round(o) for o in offset]
    return Frame(photo=photo, canvas=canvas, scale=scale, offset=(offset[0], offset[1]))


def _anchor_point(anchor, canvas: tuple[int, int], size: tuple[float, float], margin: float) -> tuple[float, float]:
    """Where the centre of a subject box of ``size`` goes on ``canvas``."""
    cw, ch = canvas
    if anchor == "center":
        return cw / 2, ch / 2
    if anchor == "bottom":
        return cw / 2, ch - margin - size[1] / 2
    # X,Y: the box kept at least the margin inside the edges where it fits between them
    return tuple(_clamp(share * side, margin + extent / 2, side - margin - extent / 2)
                 for share, side, extent in zip(anchor, canvas, size))  # type: ignore[return-value]


def _clamp(value: float, low: float, high: float) -> float:
    return (low + high) / 2 if low > high else min(max(value, low), high)


@dataclass(frozen=True)
class SizePreset:
    """A named framing: the four framing fields, and for some a background (the marketplace's
    white) that choosing the preset also sets."""

    name: str
    label: str
    canvas: str
    fill: float
    anchor: str
    margin: float
    hint: str
    background: str | None = None

    def fields(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in FRAMING_FIELDS}


SIZE_PRESETS: dict[str, SizePreset] = {p.name: p for p in (
    SizePreset("marketplace-square", "Marketplace square on white", "2000x2000", 0.85, "center", 0.05,
               "2000x2000, the product 85% of the side, centred, on white, as marketplaces such as Amazon ask of a "
               "main image.",
               background="color:#ffffff"),
    SizePreset("square-post", "Square post 1:1", "1080x1080", 0.75, "center", 0.05,
               "1080x1080 for a feed, the subject 75% of the side, centred."),
    SizePreset("feed-portrait", "Feed portrait 4:5", "1080x1350", 0.8, "bottom", 0.06,
               "1080x1350, standing on the bottom with room for its shadow."),
    SizePreset("story", "Story 9:16", "1080x1920", 0.7, "center", 0.05,
               "1080x1920 for stories and reels, the subject 70% of the width or height."),
    SizePreset("banner", "Banner 16:9, subject on the left", "1920x1080", 0.8, "0.3,0.5", 0.06,
               "1920x1080 with the subject at a third of the width, room beside it for text."),
    SizePreset("widen-16-9", "Widen to 16:9 (extend the scene)", "16:9", 0.0, "center", 0.0,
               "The whole photo at its own scale on the smallest 16:9 canvas that holds it; the background "
               "(an AI scene, the blurred photo...) fills the rest."),
)}


def get_size_preset(name: str) -> SizePreset:
    try:
        return SIZE_PRESETS[name]
    except KeyError:
        raise InputError(f"unknown size preset {name!r}: use one of {', '.join(SIZE_PRESETS)}") from None


def with_size_preset(values: Mapping[str, Any], name: str | None) -> dict[str, Any]:
    """``values`` (request fields) with a size preset's fields filled in where ``values`` does
    not name them: fields given explicitly win over the preset's."""
    if not name:
        return dict(values)
    preset = get_size_preset(name)
    extra = dict(preset.fields(), **({"background": preset.background} if preset.background else {}))
    return {**extra, **values}
