"""From a segmenter's soft output to a mask without ghosts: opaque inside, clear outside, soft
only in a band along the subject's boundary, where the edge follows the photo.

A segmenter's output is a confidence, not a matte: where the model is unsure, whole regions
come out half transparent, and composited as they are the new background shows through the
subject's body ("ghosts"). Here, in three steps:

1. ``decide_unsure_regions``: a large unsure region is decided as a whole, by its mean, and
   reported as an ``UnsureRegion`` a user can see and flip;
2. ``follow_photo_edges``: near the boundary a colour guided filter (He et al., "Guided Image
   Filtering") lets the photo's own edges shape the alpha: a glossy rim gets a crisp edge,
   fur a soft one;
3. ``confine_to_band``: the alpha is confined to a band of ``band`` px around the 0.5
   boundary, opaque inside and 0 outside, so soft values survive only where they describe
   an edge.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

UNSURE = (0.1, 0.9)  # alpha strictly between these is "unsure"
MIN_REGION = 0.002  # an unsure region counts when its far-from-edge part covers this share of the photo
MAX_REGIONS = 12  # the largest ones are reported; smaller unsure specks follow the 0.5 threshold
TILE = 128  # the guided filter runs only on tiles the boundary passes through


@dataclass(frozen=True)
class UnsureRegion:
    """A large region the model was unsure about, decided as a whole: ``labels == index + 1``
    in the label image that comes with it. ``box`` is (x0, y0, x1, y1) in that image's pixels,
    ``area`` its share of the photo, ``confidence`` the model's mean alpha over it, ``kept``
    the decision (``confidence >= 0.5`` unless the caller decided otherwise)."""

    index: int
    box: tuple[int, int, int, int]
    area: float
    confidence: float
    kept: bool


def decide_unsure_regions(alpha: np.ndarray, far: np.ndarray, decisions: dict[int, bool] | None = None
                          ) -> tuple[np.ndarray, list[UnsureRegion], np.ndarray | None]:
    """(alpha with each large unsure region set to 1 or 0 as a whole, the regions, their label
    image (uint8, 0 = none) or None when there are none).

    ``alpha``: a soft mask in 0..1; ``far``: the pixels beyond the soft edge band (where an
    unsure value is a region, not an edge); ``decisions``: {region index: kept} overriding a
    region's default decision (kept when its mean >= 0.5)."""
    regions, labels = unsure_regions(alpha, far, decisions)
    if not regions:
        return alpha, regions, labels
    decided = alpha.copy()
    for region in regions:
        decided[labels == region.index + 1] = 1.0 if region.kept else 0.0
    return decided, regions, labels


def confine_to_band(alpha: np.ndarray, band: float) -> np.ndarray:
    """``alpha`` with softness only within ``band`` px of its 0.5 contour: inside, no pixel
    more transparent than a linear ramp across the band (so 1 beyond it); outside, none more
    opaque (so 0 beyond it)."""
    inside = alpha >= 0.5
    if inside.all() or not inside.any():
        return inside.astype(np.float64)
    signed = np.where(inside, _distance(inside) - 0.5, 0.5 - _distance(~inside))  # + inside, - outside
    ramp = np.clip(0.5 + signed / (2.0 * band), 0.0, 1.0)
    return np.where(inside, np.maximum(alpha, ramp), np.minimum(alpha, ramp))


def unsure_regions(alpha: np.ndarray, far: np.ndarray, decisions: dict[int, bool] | None = None
                   ) -> tuple[list[UnsureRegion], np.ndarray | None]:
    """Connected unsure areas (8-connected) among the ``far`` pixels (the soft ramp along the
    edge is an edge, not a region) covering at least MIN_REGION
    of the photo; largest first, numbered 0, 1, ...; with their label image."""
    far = far & (alpha > UNSURE[0]) & (alpha < UNSURE[1])
    if not far.any():
        return [], None
    labels, count = ndi.label(far, structure=np.ones((3, 3), bool))
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    sizes[0] = 0
    threshold = max(16, MIN_REGION * alpha.size)
    chosen = [int(i) for i in np.argsort(-sizes, kind="stable") if sizes[i] >= threshold][:MAX_REGIONS]
    if not chosen:
        return [], None
    decisions = decisions or {}
    out = np.zeros(alpha.shape, np.uint8)
    boxes = ndi.find_objects(labels)
    regions = []
    for index, label in enumerate(chosen):
        pixels = labels == label
        out[pixels] = index + 1
        confidence = float(alpha[pixels].mean())
        ys, xs = boxes[label - 1]
        regions.append(UnsureRegion(index, (xs.start, ys.start, xs.stop, ys.stop), float(pixels.mean()), confidence,
                                    bool(decisions.get(index, confidence >= 0.5))))
    return regions, out


def distance_to_boundary(inside: np.ndarray) -> np.ndarray:
    """Each pixel's distance (px) from the boundary of ``inside``, on whichever side it lies,
    in the chessboard metric (never more than Euclidean): cheap, for thresholds."""
    if inside.all() or not inside.any():
        return np.full(inside.shape, np.inf)
    return np.where(inside, ndi.distance_transform_cdt(inside, metric="chessboard"),
                    ndi.distance_transform_cdt(~inside, metric="chessboard"))


def _distance(mask: np.ndarray) -> np.ndarray:
    """Distance (px) of each True pixel to the nearest False one: the mean of the chessboard
    and taxicab chamfer distances, within about 8% of Euclidean and ten times cheaper."""
    chess = ndi.distance_transform_cdt(mask, metric="chessboard")
    return (chess + ndi.distance_transform_cdt(mask, metric="taxicab")) * 0.5


def follow_photo_edges(rgb: np.ndarray, alpha: np.ndarray, near: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """``alpha`` guided-filtered with the photo ``rgb`` (uint8 HxWx3) on the ``near`` pixels
    (those close to the 0.5 contour); elsewhere unchanged. Runs on TILE-sized tiles the
    contour passes through (plus the filter's margin), so its cost follows the edge's length."""
    if not near.any():
        return alpha
    out = alpha.copy()
    guide = rgb.astype(np.float32) / 255.0
    h, w = alpha.shape
    margin = 2 * radius + 1
    tiles = np.zeros((-(-h // TILE), -(-w // TILE)), bool)
    ty, tx = np.nonzero(near)
    tiles[ty // TILE, tx // TILE] = True
    for i, j in zip(*np.nonzero(tiles)):
        y0, x0 = i * TILE, j * TILE
        y1, x1 = min(h, y0 + TILE), min(w, x0 + TILE)
        Y0, X0, Y1, X1 = max(0, y0 - margin), max(0, x0 - margin), min(h, y1 + margin), min(w, x1 + margin)
        filtered = guided_filter(guide[Y0:Y1, X0:X1], alpha[Y0:Y1, X0:X1].astype(np.float32), radius, eps)
        part = filtered[y0 - Y0:y1 - Y0, x0 - X0:x1 - X0]
        keep = near[y0:y1, x0:x1]
        out[y0:y1, x0:x1][keep] = part[keep]
    return out


def guided_filter(guide: np.ndarray, p: np.ndarray, radius: int, eps: float, step: int = 2) -> np.ndarray:
    """The colour guided filter of He, Sun and Tang (2013): ``p`` (HxW) smoothed so that it
    follows the edges of ``guide`` (HxWx3, 0..1); box windows of (2 radius + 1)^2 px. Its
    linear coefficients are computed on ``step`` x ``step`` block means and interpolated back
    (He and Sun's "fast guided filter"): step^2 times fewer box filters, full-resolution output."""
    h, w = p.shape
    H, W = -(-h // step) * step, -(-w // step) * step

    def pool(x):  # block means; the blocks' centres are where PIL's resize puts the small pixels
        x = np.pad(x, [(0, H - h), (0, W - w)] + [(0, 0)] * (x.ndim - 2), mode="edge")
        return x.reshape(H // step, step, W // step, step, *x.shape[2:]).mean(axis=(1, 3))

    g, q = pool(guide), pool(p)
    r = max(1, round(radius / step))

    def box(x):
        return ndi.uniform_filter(x, size=2 * r + 1, mode="nearest")

    m = [box(g[..., c]) for c in range(3)]
    mp = box(q)
    cov = [box(g[..., c] * q) - m[c] * mp for c in range(3)]
    var = {(i, j): box(g[..., i] * g[..., j]) - m[i] * m[j] + (eps if i == j else 0.0)
           for i in range(3) for j in range(i, 3)}
    a11, a12, a13, a22, a23, a33 = (var[k] for k in ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)))
    # the 3x3 solve per pixel, by cofactors (the covariance is symmetric)
    c11, c12, c13 = a22 * a33 - a23 * a23, a13 * a23 - a12 * a33, a12 * a23 - a13 * a22
    c22, c23, c33 = a11 * a33 - a13 * a13, a12 * a13 - a11 * a23, a11 * a22 - a12 * a12
    det = a11 * c11 + a12 * c12 + a13 * c13
    k0 = (c11 * cov[0] + c12 * cov[1] + c13 * cov[2]) / det
    k1 = (c12 * cov[0] + c22 * cov[1] + c23 * cov[2]) / det
    k2 = (c13 * cov[0] + c23 * cov[1] + c33 * cov[2]) / det
    b = mp - k0 * m[0] - k1 * m[1] - k2 * m[2]

    def up(x):  # the coefficients' window means, back at full resolution
        x = Image.fromarray(box(x).astype(np.float32), "F").resize((W, H), Image.Resampling.BILINEAR)
        return np.asarray(x)[:h, :w]

    return np.clip(up(k0) * guide[..., 0] + up(k1) * guide[..., 1] + up(k2) * guide[..., 2] + up(b), 0.0, 1.0)
