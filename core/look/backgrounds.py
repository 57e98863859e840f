"""The non-AI backgrounds: plain colour, vertical gradient, blurred original, a user's image,
transparency. Each is rendered at the photo's full size."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter, ImageOps
from scipy import ndimage

from core.errors import InputError
from core.request import Background

BLUR_SIDE = 256  # the blurred background is computed at this long side, then enlarged
BLUR_SIGMA = 0.03  # blur radius as a share of the long side
SUBJECT_MARGIN = 0.02  # the subject is cut out this much wider (share of the long side)


def render_background(bg: Background, photo: Image.Image, mask: Image.Image,
                      picture: Image.Image | None = None) -> Image.Image | None:
    """The background for ``bg`` at ``photo``'s size (``picture`` for an image background);
    None for transparent."""
    size = photo.size
    if bg.kind == "color":
        return Image.new("RGB", size, bg.colors[0])
    if bg.kind == "gradient":
        return gradient(size, bg.colors[0], bg.colors[1])
    if bg.kind == "blur":
        return blurred_surroundings(photo, mask)
    if bg.kind == "image":
        if picture is None:
            raise InputError("an image background needs its picture")
        return cover(picture.convert("RGB"), size)
    if bg.kind == "transparent":
        return None
    raise ValueError(f"render_background does not render {bg.kind!r} backgrounds (the pipeline generates them)")


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
    """The photo strongly blurred with the subject removed first, so the subject does not smear
    into the blur: the subject's area is filled from its surroundings (normalized convolution
    at growing radii), then everything is blurred."""
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
    out = Image.fromarray(np.clip(np.rint(blurred), 0, 255).astype(np.uint8), "RGB")
    return out.resize(photo.size, Image.Resampling.BICUBIC)
