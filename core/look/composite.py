"""The original full-resolution photo over the new background, with the soft alpha.

Pixels with alpha 255 are copied from the photo unchanged (bit-identical); pixels with alpha 0
are the background's. Only the soft edge band (and fur's nearly opaque inner fringe) is
blended, and there the photo's colours still carry the OLD background (colour spill, the halo
of rembg #14/#33; the green fringe of fur photographed against leaves): when spill removal is
on, those pixels' foreground colours are re-estimated with pymatting's
``estimate_foreground_ml`` and the old background's hue is taken out of them. All work on
the band is done on its pixels only, so a 12 MP photo costs about what its edge costs.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

from core.look.harmony import harmonize
from core.masks.cleanup import background_hue, spill_excess
from core.masks.segment import GUIDE_FRACTION
from core.look.shadows import apply_shadows

SPILL_PIXELS = 100_000  # the band's bounding box is solved at most this large (~0.2 s)
SPILL_MARGIN = 8  # px of context around the band's bounding box


def composite(photo: Image.Image, alpha: Image.Image, background: Image.Image | None, request,
              cut: Image.Image | None = None) -> Image.Image:
    """RGB photo over ``background`` (RGB, photo size), or the RGBA cut-out when it is None.

    The request's shadows are darkened into the background first, then (harmony > 0) a copy
    of the subject is colour-matched to it; with harmony 0 opaque pixels are the photo's.

    ``cut`` is this photo's ``cutout`` when the caller already has it (several variants share
    one spill estimate).
    """
    if cut is None:
        cut = cutout(photo, alpha, spill_removal=bool(getattr(request, "spill_removal", True)))
    if background is None:
        return cut
    if background.size != photo.size:
        raise ValueError(f"background is {background.size}, photo is {photo.size}")
    background = apply_shadows(background, alpha, request)  # under the subject, from the mask
    strength = float(getattr(request, "harmony", 0.0))
    if strength > 0:  # on a copy: the cut-out and the photo stay as they are
        cut = harmonize(cut.convert("RGB"), alpha, background, strength)
    # Pillow's masked paste is exact at the ends: alpha 255 copies the cut-out's pixel (the
    # photo's own there), alpha 0 keeps the background's, and it runs in C.
    out = background.convert("RGB")  # a copy: the caller's background is not changed
    out.paste(cut, mask=alpha.convert("L"))
    return out


def cutout(photo: Image.Image, alpha: Image.Image, spill_removal: bool = True) -> Image.Image:
    """The subject as RGBA: the photo's pixels with ``alpha``; soft-band colours spill-removed."""
    alpha = alpha.convert("L")
    cut = photo.copy() if photo.mode == "RGB" else photo.convert("RGB")
    if spill_removal:
        a = np.asarray(alpha)
        box = _soft_box(a)
        if box is not None:
            top, bottom, left, right = box
            radius = GUIDE_FRACTION * max(photo.size)
            cut.paste(_spill_free(cut.crop((left, top, right, bottom)), a[top:bottom, left:right], radius), (left, top))
    cut.putalpha(alpha)
    return cut


def _spill_free(crop: Image.Image, a: np.ndarray, radius: float) -> Image.Image:
    """``crop`` with its soft pixels' colours replaced by spill-free foreground colours.

    pymatting's ``estimate_foreground_ml`` unmixes the colours for the mask's alpha; where that
    alpha is higher than what the photo shows (fur's inner fringe, which the mask keeps nearly
    opaque: core.masks.cleanup.mark_fringe), the estimate keeps some of the old background, so
    the background's hue (the clear pixels' mean colour within about three guided-filter
    radii, ``radius`` px at full size) is then taken out down to the most the subject's own
    colours have (core.masks.cleanup.background_hue). The solver runs on the crop shrunk to at
    most SPILL_PIXELS; its correction (estimated foreground minus observed colour) is
    interpolated at each soft pixel and added to the full-resolution colour, which keeps the
    pixels' texture.
    """
    from pymatting import estimate_foreground_ml

    width, height = crop.size
    scale = min(1.0, (SPILL_PIXELS / (width * height)) ** 0.5)
    small = (max(1, round(width * scale)), max(1, round(height * scale)))
    crop_small = crop.resize(small, Image.Resampling.BOX) if small != crop.size else crop
    alpha_small = Image.fromarray(a).resize(small, Image.Resampling.BOX) if small != crop.size else Image.fromarray(a)
    observed = np.asarray(crop_small, dtype=np.float64) / 255.0
    alpha = np.asarray(alpha_small, dtype=np.float64) / 255.0
    estimated = estimate_foreground_ml(observed, alpha)
    soft = (alpha > 0) & (alpha < 1)
    pure = ndimage.binary_erosion(alpha >= 1.0, iterations=max(1, round(radius * scale)))  # fur's own colours, not its fringe
    hue, limit = background_hue(np.asarray(crop_small), pure, alpha <= 0.0, max(2.0, 3 * radius * scale), soft)
    tinted = estimated[soft]
    estimated[soft] = np.clip(tinted - spill_excess(tinted, hue, limit)[:, None] * hue, 0.0, 1.0)
    correction = (estimated - observed) * 255.0
    ys, xs = np.nonzero((a > 0) & (a < 255))
    # soft pixel centres in the small grid's coordinates
    sy = (ys + 0.5) * (small[1] / height) - 0.5
    sx = (xs + 0.5) * (small[0] / width) - 0.5
    rgb = np.array(crop)
    shift = np.stack([ndimage.map_coordinates(correction[..., c], [sy, sx], order=1, mode="nearest") for c in range(3)], axis=-1)
    rgb[ys, xs] = np.clip(np.rint(rgb[ys, xs] + shift), 0, 255).astype(np.uint8)
    return Image.fromarray(rgb, "RGB")


def _soft_box(a: np.ndarray) -> tuple[int, int, int, int] | None:
    """Bounding box (top, bottom, left, right) of the soft pixels plus a margin; None if none."""
    soft = (a > 0) & (a < 255)
    rows = np.flatnonzero(soft.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(soft.any(axis=0))
    return (
        max(0, int(rows[0]) - SPILL_MARGIN), min(a.shape[0], int(rows[-1]) + 1 + SPILL_MARGIN),
        max(0, int(cols[0]) - SPILL_MARGIN), min(a.shape[1], int(cols[-1]) + 1 + SPILL_MARGIN),
    )
