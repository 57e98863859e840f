"""Working-size buckets: the few image sizes the generator ever runs at.

A GPU runs fastest on a step captured once per input shape (core.engine.cuda_graphs), so the photo is
not worked on at its own size but placed in a bucket: its long side scaled to the nearest tier
(512, 768 or 1024 px), the short side rounded UP to a multiple of 64. The photo fills the
bucket's centre at its own aspect ratio (never stretched); the strips left over are repainted
with the rest of the background and cropped away afterwards, so the generated background fits
the photo exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

from PIL import Image

TIERS = (512, 768, 1024)  # long side of a bucket: SD1.5 works from 512 px, at most 1024 a side
STEP = 64  # bucket sides are multiples of this (the UNet halves the 1/8 latent three times)
MIN_SHORT = 256  # short side of a bucket at least this (extreme strips are padded up to it)


@dataclass(frozen=True)
class Placement:
    """Where a photo of some size sits in its bucket: the bucket's size, the size the photo is
    scaled to (``content``) and the content's top-left corner in the bucket."""

    bucket: tuple[int, int]
    content: tuple[int, int]

    @property
    def offset(self) -> tuple[int, int]:
        return ((self.bucket[0] - self.content[0]) // 2, (self.bucket[1] - self.content[1]) // 2)

    @property
    def box(self) -> tuple[int, int, int, int]:
        """The content's box in the bucket (left, top, right, bottom)."""
        x, y = self.offset
        return x, y, x + self.content[0], y + self.content[1]

    @property
    def name(self) -> str:
        return f"{self.bucket[0]}x{self.bucket[1]}"


def placement(width: int, height: int) -> Placement:
    """The bucket for a photo of ``width`` x ``height``, and where the photo goes in it."""
    long_side = max(width, height)
    wanted = min(max(long_side, TIERS[0]), TIERS[-1])
    tier = min(TIERS, key=lambda t: (abs(t - wanted), -t))  # nearest tier; ties go to the larger
    scale = tier / long_side
    content = tuple(min(tier, max(1, round(side * scale))) for side in (width, height))
    bucket = tuple(max(MIN_SHORT, -(-side // STEP) * STEP) for side in content)
    return Placement(bucket=bucket, content=content)  # type: ignore[arg-type]


def pad(image: Image.Image, place: Placement, fill: int | tuple[int, ...] | None = None) -> Image.Image:
    """``image`` (at the content size) in the middle of the bucket. The strips around it are
    ``fill``, or with ``fill=None`` the image's edge pixels repeated (a depth map continues
    outward instead of jumping)."""
    if image.size != place.content:
        raise ValueError(f"image is {image.size}, placement content is {place.content}")
    if place.bucket == place.content:
        return image.copy()
    import numpy as np

    if fill is not None:
        out = Image.new(image.mode, place.bucket, fill)
        out.paste(image, place.offset)
        return out
    x, y = place.offset
    pixels = np.asarray(image)
    widths = [(y, place.bucket[1] - place.content[1] - y), (x, place.bucket[0] - place.content[0] - x)]
    widths += [(0, 0)] * (pixels.ndim - 2)
    return Image.fromarray(np.pad(pixels, widths, mode="edge"), image.mode)


def crop(image: Image.Image, place: Placement) -> Image.Image:
    """The content's part of a bucket-sized image."""
    if image.size != place.bucket:
        raise ValueError(f"image is {image.size}, bucket is {place.bucket}")
    return image.crop(place.box)
