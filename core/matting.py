"""Optional alpha-matting refinement of a segmentation mask (pymatting, closed-form matting).

A segmenter's mask is right about the interior and the far background but coarse at the edge,
where hair and fur are partly transparent. Matting re-estimates alpha only in a band around the
edge (the trimap's unknown region) from the photo's colours. The solve runs on a crop around
that band at a bounded resolution, so its cost grows with the edge length, not the photo size.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

MAX_SOLVE_SIDE = 1024  # the crop is solved at this many px on its long side at most
BAND_FRACTION = 0.02  # half-width of the unknown band, as a fraction of the long side
MIN_BAND, MAX_BAND = 4, 40  # px at solve resolution


def build_trimap(alpha: np.ndarray, radius: int) -> np.ndarray:
    """Trimap in 0..1 (1 = foreground, 0 = background, 0.5 = unknown) from an alpha in 0..1:
    the unknown band spans ``radius`` px on both sides of the 0.5 contour and also covers
    every pixel the segmenter already left soft."""
    inside = alpha >= 0.5
    sure_fg = ndi.binary_erosion(inside, iterations=radius, border_value=1)
    sure_bg = ~ndi.binary_dilation(inside, iterations=radius)
    soft = (alpha > 0.02) & (alpha < 0.98)
    trimap = np.full(alpha.shape, 0.5)
    trimap[sure_fg & ~soft] = 1.0
    trimap[sure_bg & ~soft] = 0.0
    return trimap


def refine_alpha(photo: Image.Image, alpha: Image.Image) -> Image.Image:
    """Refined alpha ('L', photo size). Pixels outside the unknown band become exactly 0 or 255;
    inside it the closed-form matte decides, so soft hair edges stay soft."""
    from pymatting import estimate_alpha_cf  # heavy import (numba), only when refining

    a = np.asarray(alpha.convert("L"), dtype=np.float64) / 255.0
    h, w = a.shape
    scale = min(1.0, MAX_SOLVE_SIDE / max(h, w))
    radius = int(np.clip(round(BAND_FRACTION * max(h, w) * scale), MIN_BAND, MAX_BAND))
    full_radius = max(1, round(radius / scale))
    trimap = build_trimap(a, full_radius)
    unknown = trimap == 0.5
    if not unknown.any() or unknown.all():
        return alpha.convert("L").copy()

    # crop around the band with a margin of known pixels the solver needs as constraints
    ys, xs = np.nonzero(unknown)
    margin = full_radius + 2
    y0, y1 = max(0, ys.min() - margin), min(h, ys.max() + 1 + margin)
    x0, x1 = max(0, xs.min() - margin), min(w, xs.max() + 1 + margin)
    crop_rgb = photo.convert("RGB").crop((x0, y0, x1, y1))
    crop_tri = trimap[y0:y1, x0:x1]
    cw, ch = x1 - x0, y1 - y0
    sw, sh = max(8, round(cw * scale)), max(8, round(ch * scale))
    if (sw, sh) != (cw, ch):
        small_rgb = np.asarray(crop_rgb.resize((sw, sh), Image.LANCZOS), dtype=np.float64) / 255.0
        small_tri = _resize_float(crop_tri, (sw, sh), Image.NEAREST)
    else:
        small_rgb = np.asarray(crop_rgb, dtype=np.float64) / 255.0
        small_tri = crop_tri
    if not ((small_tri == 1.0).any() and (small_tri == 0.0).any()):
        return alpha.convert("L").copy()  # no known pixels to anchor the solve (tiny subject)
    solved = np.clip(estimate_alpha_cf(small_rgb, small_tri), 0.0, 1.0)
    if (sw, sh) != (cw, ch):
        solved = np.clip(_resize_float(solved, (cw, ch), Image.BILINEAR), 0.0, 1.0)

    out = trimap.copy()
    band = unknown[y0:y1, x0:x1]
    out[y0:y1, x0:x1][band] = solved[band]
    return Image.fromarray(np.round(out * 255.0).astype(np.uint8), "L")


def _resize_float(values: np.ndarray, size: tuple[int, int], resample: int) -> np.ndarray:
    return np.asarray(Image.fromarray(values.astype(np.float32), "F").resize(size, resample), dtype=np.float64)
