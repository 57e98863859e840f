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
    inside it the closed-form matte decides, so soft hair edges stay soft.

    Trimap, crop and solve all happen at the solve resolution (long side at most
    MAX_SOLVE_SIDE); only the final paste is at full size, so a 24 MP photo costs about what
    a 1 MP one does.
    """
    from pymatting import estimate_alpha_cf  # heavy import (numba), only when refining

    mask = alpha.convert("L")
    w, h = mask.size
    scale = min(1.0, MAX_SOLVE_SIDE / max(w, h))
    sw, sh = max(8, round(w * scale)), max(8, round(h * scale))
    small = mask.resize((sw, sh), Image.BILINEAR) if scale < 1 else mask
    radius = int(np.clip(round(BAND_FRACTION * max(sw, sh)), MIN_BAND, MAX_BAND))
    trimap = build_trimap(np.asarray(small, dtype=np.float64) / 255.0, radius)
    unknown = trimap == 0.5
    if not unknown.any() or not ((trimap == 1.0).any() and (trimap == 0.0).any()):
        return mask.copy()  # nothing to refine, or no known pixels to anchor the solve

    # crop around the band with a margin of known pixels the solver needs as constraints
    ys, xs = np.nonzero(unknown)
    margin = radius + 2
    y0, y1 = max(0, ys.min() - margin), min(sh, ys.max() + 1 + margin)
    x0, x1 = max(0, xs.min() - margin), min(sw, xs.max() + 1 + margin)
    fx0, fy0 = round(x0 * w / sw), round(y0 * h / sh)  # the same box at full size
    fx1, fy1 = round(x1 * w / sw), round(y1 * h / sh)
    crop = photo.convert("RGB").crop((fx0, fy0, fx1, fy1))
    if crop.size != (x1 - x0, y1 - y0):
        crop = crop.resize((x1 - x0, y1 - y0), Image.LANCZOS)
    solved = trimap.copy()
    box_tri = trimap[y0:y1, x0:x1]
    box_solved = np.clip(estimate_alpha_cf(np.asarray(crop, dtype=np.float64) / 255.0, box_tri), 0.0, 1.0)
    solved[y0:y1, x0:x1] = np.where(box_tri == 0.5, box_solved, box_tri)
    out = Image.fromarray(np.round(solved * 255.0).astype(np.uint8), "L")
    if scale < 1:
        # enlarge the matte (8-bit, cheap at 24 MP); the full-size band is where the enlarged
        # trimap is unknown, elsewhere the enlarged trimap's exact 0 / 255
        tri8 = Image.fromarray(np.round(trimap * 254.0).astype(np.uint8), "L").resize((w, h), Image.NEAREST)
        known = np.asarray(tri8)
        band = known == 127
        known = np.where(known == 254, np.uint8(255), known)
        out = Image.fromarray(np.where(band, np.asarray(out.resize((w, h), Image.BILINEAR)), known), "L")
    return out
