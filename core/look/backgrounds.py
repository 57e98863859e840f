"""The background kinds, declared once, and the non-AI ones rendered to fill the output canvas.

``KINDS`` is the one table of background kinds: how each is written (``color:#RRGGBB``...), its
label in the app, which job lane runs it (AI backgrounds take minutes, the others seconds),
whether it needs a picture (stored with the generation), whether it makes variants, and how it
is rendered on the canvas (core.look.framing: the photo's size unless the request frames it
otherwise; the AI background has no renderer: the engine paints it). The request's parser and
help, the app's form and labels, the command line's choices, the queue's lanes and the checks
all read it: a new kind is one entry here and its renderer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image, ImageFilter, ImageOps
from scipy import ndimage

from core.errors import InputError
from core.look.framing import Frame

BLUR_SIDE = 256  # the blurred background is computed at this long side, then enlarged
BLUR_SIGMA = 0.03  # blur radius as a share of the long side
SUBJECT_MARGIN = 0.02  # the subject is cut out this much wider (share of the long side)
_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")


@dataclass(frozen=True)
class Background:
    """A parsed background spec: ``ai``, ``color:#RRGGBB``, ``gradient:#RRGGBB,#RRGGBB``,
    ``blur``, ``image`` (the picture is stored with the generation) or ``transparent``."""

    kind: str
    colors: tuple[tuple[int, int, int], ...] = ()

    @classmethod
    def parse(cls, spec: str) -> "Background":
        name, _, arg = spec.strip().partition(":")
        kind = KINDS.get(name.lower())
        if kind is None:
            raise InputError(f"unknown background {spec!r}: use one of {', '.join(k.written for k in KINDS.values())}")
        if kind.colours:
            parts = arg.split(",")
            if len(parts) != kind.colours:
                raise InputError(f"{kind.name} needs {_COUNT[kind.colours]}, as {kind.written} (got {spec!r})")
            return cls(kind.name, tuple(_hex(p, spec) for p in parts))
        if arg:
            where = " (the picture is given beside the request and stored with the generation)" if kind.picture else ""
            raise InputError(f"background {kind.name!r} takes no argument (got {spec!r}){where}")
        return cls(kind.name)

    @property
    def declared(self) -> "Kind":
        return KINDS[self.kind]

    def spec(self) -> str:
        if self.colors:
            return f"{self.kind}:" + ",".join("#%02x%02x%02x" % c for c in self.colors)
        return self.kind

    def check_picture(self, picture) -> None:
        """InputError unless a picture is given exactly when this kind needs one."""
        if self.declared.picture and picture is None:
            raise InputError(f"an {self.kind} background needs its picture")
        if picture is not None and not self.declared.picture:
            raise InputError(f"a background picture was given for a {self.kind!r} background")


_COUNT = {1: "one colour", 2: "two colours"}


def _hex(text: str, spec: str) -> tuple[int, int, int]:
    text = text.strip()
    if not _HEX.match(text):
        raise InputError(f"colour must be written #RRGGBB (got {text!r} in {spec!r})")
    return tuple(int(text[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


Render = Callable[[Background, Image.Image, Image.Image, "Image.Image | None", Frame], "Image.Image | None"]


@dataclass(frozen=True)
class Kind:
    """One background kind. ``written``: its spec as a user writes it; ``colours``: how many
    ``#RRGGBB`` it takes; ``lane``: the job lane (core's name for it: ``ai`` for minutes of
    diffusion, ``quick`` for seconds); ``picture``: it needs a background picture; ``variants``:
    it makes several images (seed, seed + 1, ...); ``render(background, photo, mask, picture, frame)``
    makes it at the canvas's size from the photo and mask as they were given and the ``Frame`` that
    places them (None: the AI engine paints it); ``hint``: what the app says of it."""

    name: str
    label: str
    written: str
    hint: str
    lane: str = "quick"
    colours: int = 0
    picture: bool = False
    variants: bool = False
    render: Render | None = None

    @property
    def generated(self) -> bool:
        """Painted by the AI engine (core.engine) rather than rendered here."""
        return self.render is None


def _color(bg, photo, mask, picture, frame):
    return Image.new("RGB", frame.canvas, bg.colors[0])


def _gradient(bg, photo, mask, picture, frame):
    return gradient(frame.canvas, bg.colors[0], bg.colors[1])


def _blur(bg, photo, mask, picture, frame):
    # blurred at the photo's view, then placed like the photo and mirrored where it runs out
    return frame.place(blurred_small(photo, mask), resample=Image.Resampling.BICUBIC)


def _picture(bg, photo, mask, picture, frame):
    return cover(picture.convert("RGB"), frame.canvas)


def _transparent(bg, photo, mask, picture, frame):
    return None


KINDS: dict[str, Kind] = {kind.name: kind for kind in (
    Kind("ai", "AI scene", "ai", "A photorealistic scene described in words, painted around the subject.",
         lane="ai", variants=True),
    Kind("color", "Colour", "color:#RRGGBB", "One plain colour.", colours=1, render=_color),
    Kind("gradient", "Gradient", "gradient:#RRGGBB,#RRGGBB", "From the top colour to the bottom one.", colours=2,
         render=_gradient),
    Kind("blur", "Blurred original", "blur", "The photo's own surroundings, strongly blurred (mirrored where a "
         "larger canvas runs past the photo).", render=_blur),
    Kind("image", "My image", "image", "A picture of your own, scaled to cover the canvas.", picture=True,
         render=_picture),
    Kind("transparent", "Transparent", "transparent", "No background: a PNG with alpha.", render=_transparent),
)}


def render_background(bg: Background, photo: Image.Image, mask: Image.Image,
                      picture: Image.Image | None = None, frame: Frame | None = None) -> Image.Image | None:
    """The background for ``bg`` filling ``frame``'s canvas (default: the photo's size),
    ``photo`` and ``mask`` as given, not placed (``picture`` for a kind that needs one, checked);
    None for transparent."""
    kind = bg.declared
    if kind.generated:
        raise ValueError(f"render_background does not render {bg.kind!r} backgrounds (the pipeline generates them)")
    bg.check_picture(picture)
    frame = frame or Frame(photo.size, photo.size)
    return kind.render(bg, photo, mask, picture, frame)


def gradient(size: tuple[int, int], top: tuple[int, int, int], bottom: tuple[int, int, int]) -> Image.Image:
    """A vertical gradient from ``top`` (first row) to ``bottom`` (last row)."""
    width, height = size
    t = np.linspace(0.0, 1.0, height)[:, None]
    column = np.rint(np.asarray(top) * (1 - t) + np.asarray(bottom) * t).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(np.broadcast_to(column[:, None, :], (height, width, 3))), "RGB")


def cover(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Scale ``image`` to cover ``size`` and crop the centre (no stretching, no borders)."""
    return ImageOps.fit(image, size, Image.Resampling.LANCZOS, centering=(0.5, 0.5))


def blurred_surroundings(photo: Image.Image, mask: Image.Image) -> Image.Image:
    """The photo strongly blurred with the subject removed first (``blurred_small``), at the
    photo's size."""
    return blurred_small(photo, mask).resize(photo.size, Image.Resampling.BICUBIC)


def blurred_small(photo: Image.Image, mask: Image.Image) -> Image.Image:
    """The photo strongly blurred with the subject removed first, so the subject does not smear
    into the blur: the subject's area is filled from its surroundings (normalized convolution
    at growing radii), then everything is blurred; at most BLUR_SIDE px on its long side (a
    caller enlarges it to where it goes)."""
    small = photo.copy()
    small.thumbnail((BLUR_SIDE, BLUR_SIDE), Image.Resampling.BILINEAR)
    long_side = max(small.size)
    margin = max(1, int(round(SUBJECT_MARGIN * long_side)))
    subject = mask.resize(small.size, Image.Resampling.BILINEAR).point(lambda v: 255 if v > 8 else 0)
    subject = subject.filter(ImageFilter.MaxFilter(2 * margin + 1))
    keep = 1.0 - np.asarray(subject, dtype=np.float32) / 255.0
    pixels = np.asarray(small, dtype=np.float32)
    filled = pixels * keep[..., None]
    missing = keep < 0.5
    sigma = max(1.0, BLUR_SIGMA * long_side)
    if keep.sum() == 0:  # nothing around the subject to borrow from
        filled[:] = pixels.reshape(-1, 3).mean(axis=0)
    while missing.any() and keep.sum() > 0:
        weight = ndimage.gaussian_filter(keep, sigma)
        spread = np.stack([ndimage.gaussian_filter(pixels[..., c] * keep, sigma) for c in range(3)], axis=-1)
        found = missing & (weight > 1e-3)
        filled[found] = spread[found] / weight[found, None]
        missing &= ~found
        sigma *= 2
    blurred = np.stack([ndimage.gaussian_filter(filled[..., c], BLUR_SIGMA * long_side) for c in range(3)], axis=-1)
    return Image.fromarray(np.clip(np.rint(blurred), 0, 255).astype(np.uint8), "RGB")
