"""Optional alpha-matting refinement of a segmentation mask (pymatting, closed-form matting),
bounded in time.

A segmenter's mask is right about the interior and the far background but coarse at the edge,
where hair and fur are partly transparent. Matting re-estimates alpha only in a band around the
edge (the trimap's unknown region) from the photo's colours. The cost of the solve grows with
the unknown pixels, so it runs on a crop around the band at a resolution chosen to keep them
under MAX_UNKNOWN (a 24 MP photo costs what a 1 MP one does), and under a deadline: when the
solver runs past it, or fails (pymatting's incomplete Cholesky can), the unrefined edge is kept
and a warning says why.
"""

from __future__ import annotations

import contextlib
import io
import time

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

MAX_SOLVE_SIDE = 1024  # the crop is solved at this many px on its long side at most
MAX_UNKNOWN = 60_000  # unknown pixels per solve at most (about 0.4 s on 2 cores); fewer -> lower resolution
BAND_FRACTION = 0.012  # half-width of the unknown band, as a fraction of the long side
MIN_BAND, MAX_BAND = 3, 24  # px at solve resolution
TIME_LIMIT = 1.8  # s for the whole refinement; the promise is 2 s on 2 cores
# Laplacian regularisation: pymatting's 1e-7 leaves flat backgrounds (a plain wall) so
# ill-conditioned that its incomplete Cholesky fails, retries shifted and conjugate gradients
# then take hundreds of iterations (7 s on a 640 px photo); 1e-6 needs 10-15, same mattes.
EPSILON = 1e-6
STAGE_SHARE = (0.6, 0.8)  # share of the time left by which the Laplacian, then the preconditioner, must be done


class _OutOfTime(Exception):
    pass


def build_trimap(alpha: np.ndarray, radius: int) -> np.ndarray:
    """Trimap in 0..1 (1 = foreground, 0 = background, 0.5 = unknown) from an alpha in 0..1:
    the unknown band spans ``radius`` px on both sides of the 0.5 contour. Soft pixels farther
    out stay known (their side of the contour): a mask with soft regions far from its edge (a
    ghost) must not turn into a huge unknown area the solver cannot bound."""
    inside = alpha >= 0.5
    trimap = np.full(alpha.shape, 0.5)
    trimap[ndi.binary_erosion(inside, iterations=radius, border_value=1)] = 1.0
    trimap[~ndi.binary_dilation(inside, iterations=radius)] = 0.0
    return trimap


def refine_alpha(photo: Image.Image, alpha: Image.Image, time_limit: float = TIME_LIMIT,
                 warnings: list[str] | None = None) -> Image.Image:
    """Refined alpha ('L', photo size). Pixels outside the unknown band become exactly 0 or 255;
    inside it the closed-form matte decides, so soft hair edges stay soft.

    Trimap, crop and solve all happen at the solve resolution; only the final paste is at full
    size. Past ``time_limit`` seconds, or when the solver fails, returns ``alpha`` unchanged
    and appends the reason to ``warnings``.
    """
    started = time.perf_counter()
    deadline = started + time_limit
    mask = alpha.convert("L")
    w, h = mask.size
    scale = min(1.0, MAX_SOLVE_SIDE / max(w, h))
    for _ in range(4):  # shrink until the unknown band fits MAX_UNKNOWN
        sw, sh = max(8, round(w * scale)), max(8, round(h * scale))
        small = mask.resize((sw, sh), Image.BILINEAR) if (sw, sh) != (w, h) else mask
        radius = int(np.clip(round(BAND_FRACTION * max(sw, sh)), MIN_BAND, MAX_BAND))
        trimap = build_trimap(np.asarray(small, dtype=np.float64) / 255.0, radius)
        unknown = trimap == 0.5
        count = int(unknown.sum())
        if count <= MAX_UNKNOWN:
            break
        scale *= 0.95 * (MAX_UNKNOWN / count) ** 0.5
    if not unknown.any() or not ((trimap == 1.0).any() and (trimap == 0.0).any()):
        return mask.copy()  # nothing to refine, or no known pixels to anchor the solve
    if count > MAX_UNKNOWN:
        return _fallback(mask, warnings, f"its edge is too long to solve in time ({count} unknown pixels)")

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
    box_tri = trimap[y0:y1, x0:x1]
    try:
        box_solved = solve_alpha(np.asarray(crop, dtype=np.float64) / 255.0, box_tri, deadline)
    except _OutOfTime:
        return _fallback(mask, warnings, f"the solver ran past {time_limit:g} s")
    except (ValueError, ArithmeticError) as exc:  # e.g. "Thresholded incomplete Cholesky decomposition failed"
        return _fallback(mask, warnings, f"the solver failed ({str(exc).splitlines()[0][:120]})")
    solved = trimap.copy()
    solved[y0:y1, x0:x1] = np.where(box_tri == 0.5, box_solved, box_tri)
    out = Image.fromarray(np.round(solved * 255.0).astype(np.uint8), "L")
    if (sw, sh) != (w, h):
        # enlarge the matte (8-bit, cheap at 24 MP); the full-size band is where the enlarged
        # trimap is unknown, elsewhere the enlarged trimap's exact 0 / 255
        tri8 = Image.fromarray(np.round(trimap * 254.0).astype(np.uint8), "L").resize((w, h), Image.NEAREST)
        known = np.asarray(tri8)
        band = known == 127
        known = np.where(known == 254, np.uint8(255), known)
        out = Image.fromarray(np.where(band, np.asarray(out.resize((w, h), Image.BILINEAR)), known), "L")
    return out


def solve_alpha(image: np.ndarray, trimap: np.ndarray, deadline: float) -> np.ndarray:
    """Closed-form matting (Levin et al.) of ``image`` (HxWx3, 0..1) under ``trimap``, as
    pymatting's ``estimate_alpha_cf`` does it, with the incomplete Cholesky's retries kept off
    stdout and each stage checked against ``deadline`` (``time.perf_counter()`` seconds).
    The Laplacian and the preconditioner cannot be interrupted, so they must finish with
    time to spare (STAGE_SHARE of what was left). Raises _OutOfTime past a check."""
    from pymatting import cf_laplacian, cg, ichol, trimap_split

    start = time.perf_counter()
    is_fg, _, is_known, is_unknown = trimap_split(trimap)
    laplacian = cf_laplacian(image, epsilon=EPSILON, is_known=is_known)
    l_unknown = laplacian[is_unknown, :][:, is_unknown]
    rhs = -laplacian[is_unknown, :][:, is_known].dot(is_fg[is_known])
    _check(start + STAGE_SHARE[0] * (deadline - start))
    with contextlib.redirect_stdout(io.StringIO()):  # "PERFORMANCE WARNING" on each retry
        preconditioner = ichol(l_unknown)
    _check(start + STAGE_SHARE[1] * (deadline - start))
    x = trimap.copy().ravel()
    x[is_unknown] = cg(l_unknown, rhs, M=preconditioner, callback=lambda *args: _check(deadline))
    return np.clip(x, 0.0, 1.0).reshape(trimap.shape)


def _check(deadline: float) -> None:
    if time.perf_counter() > deadline:
        raise _OutOfTime


def _fallback(mask: Image.Image, warnings: list[str] | None, why: str) -> Image.Image:
    if warnings is not None:
        warnings.append(f"edge refinement skipped, the unrefined edge is used: {why}")
    return mask.copy()
