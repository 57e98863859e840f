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

UNSURE = (0.4, 0.85)  # the model's output strictly between these is "unsure"; at or beyond them it is sure
MIN_REGION = 0.002  # an unsure region is reported (and can be flipped) when it covers this share of the photo
MAX_REGIONS = 12  # the largest ones are reported; smaller ones are decided the same way, silently
BACKGROUND_LIKE, SUBJECT_LIKE = 0.75, 0.35  # shares of a region's pixels (see _surroundings)
SAME_COLOUR = 24.0  # RGB distance within which a pixel matches a plain background's colour
MAIN_PART = 0.5  # sure-subject parts at least this share of the largest one are "the subject"
SOLID = 0.96  # mark_fringe's alpha: nearly opaque, never see-through (eval's ghosts are below 0.95)
TINTED = 0.025  # mark_fringe: a pixel with this much more of the background's hue than the subject's colours
HUE_GRID = 256  # background_hue's means are taken on blocks of about 1/256 of the long side
GREY = 0.03  # background_hue: a background whose colour is this close to grey (0..1 RGB) has no hue to spill
PALETTE = 6  # background_hue: the subject's colours, as this many k-means centres
TILE = 128  # the guided filter runs only on tiles the boundary passes through


@dataclass(frozen=True)
class UnsureRegion:
    """A large region the model was unsure about, decided as a whole: ``labels == index + 1``
    in the label image that comes with it. ``box`` is (x0, y0, x1, y1) in that image's pixels,
    ``area`` its share of the photo, ``confidence`` the model's mean alpha over it,
    ``kept`` the decision (see ``decide_unsure_regions``, unless the caller decided);
    ``attached``: it touches the sure subject; ``subject_like`` / ``background_like``: the
    shares of its pixels that look like the sure subject / background nearby."""

    index: int
    box: tuple[int, int, int, int]
    area: float
    confidence: float
    kept: bool
    attached: bool = False
    subject_like: float = 0.0
    background_like: float = 0.0


def decide_unsure_regions(confidence: np.ndarray, alpha: np.ndarray, rgb: np.ndarray, ramp: float,
                          decisions: dict[int, bool] | None = None
                          ) -> tuple[np.ndarray, list[UnsureRegion], np.ndarray | None]:
    """(``alpha`` with each unsure region decided as a whole, the large regions, their label
    image (uint8, 0 = none) or None when there are none).

    ``confidence``: the model's own output in 0..1, where the regions are found and judged;
    ``alpha``: the mask made from it so far; ``rgb``: the photo (uint8 HxWx3) at their size;
    ``ramp``: how wide (px) the model's soft edge between sure subject and sure background
    may be (an unsure strip that thin is an edge, not a region). A region is decided by more
    than its mean confidence (``_surroundings``): one that touches the sure subject is kept
    unless it looks like the sure background beside it and the model leaned that way too
    (mean < 0.5): fur, foliage and a dark sweater the model half saw are subject, a shadow or
    a patch of wall beside the subject is not; a detached one is kept when its mean is at
    least 0.5 and it looks like the subject, not the background. ``decisions``: {region
    index: kept} overriding the large ones. A kept region's alpha is 1, a dropped one's 0."""
    labels, count = _unsure_areas(confidence, ramp)
    if not count:
        return alpha, [], None
    n = np.bincount(labels.ravel(), minlength=count + 1).astype(np.float64)
    mean = np.bincount(labels.ravel(), confidence.ravel(), minlength=count + 1) / np.maximum(n, 1.0)
    attached, subject, background = _surroundings(confidence, rgb, labels, count, ramp)
    looks_background = (background >= BACKGROUND_LIKE) & (subject < SUBJECT_LIKE)
    kept = np.where(attached, ~looks_background | (mean >= 0.5), (mean >= 0.5) & ~looks_background & (subject >= SUBJECT_LIKE))
    if not (confidence >= UNSURE[1]).any():  # no sure subject to compare with: the model's lean decides
        kept = mean >= 0.5
    n[0] = 0
    chosen = [int(i) for i in np.argsort(-n, kind="stable") if n[i] >= max(16, MIN_REGION * alpha.size)][:MAX_REGIONS]
    regions, boxes = [], ndi.find_objects(labels)
    for index, label in enumerate(chosen):
        kept[label] = bool((decisions or {}).get(index, kept[label]))
        ys, xs = boxes[label - 1]
        regions.append(UnsureRegion(index, (xs.start, ys.start, xs.stop, ys.stop), float(n[label] / alpha.size),
                                    float(mean[label]), bool(kept[label]), bool(attached[label]),
                                    float(subject[label]), float(background[label])))
    kept[0] = False
    # the soft strip between a kept region and the sure subject would be a crack: scaled so that
    # the region's own level reads as 0.5, it joins them
    level = np.bincount(labels.ravel(), alpha.ravel(), minlength=count + 1) / np.maximum(n, 1.0)
    scale = np.where(kept, 0.5 / np.clip(level, 0.1, 0.5), 1.0)
    near = ndi.maximum_filter(labels, size=2 * int(np.ceil(ramp)) + 1)
    inside = labels > 0
    strip = near * ((confidence > UNSURE[0]) & (confidence < UNSURE[1]))
    decided = np.minimum(1.0, alpha * scale[strip].astype(alpha.dtype))
    decided[inside] = kept[labels[inside]]
    out = None
    if regions:
        out = np.zeros(alpha.shape, np.uint8)
        for index, label in enumerate(chosen):
            out[labels == label] = index + 1
    return decided, regions, out


def _unsure_areas(alpha: np.ndarray, ramp: float) -> tuple[np.ndarray, int]:
    """Connected (8-connected) unsure areas, except the soft ramp along the subject's edge:
    an unsure pixel that is within ``ramp`` px of sure subject and sure background together
    lies on an edge, not in a region. Areas smaller than a ramp's square are left out."""
    sure_fg, sure_bg = alpha >= UNSURE[1], alpha <= UNSURE[0]
    unsure = ~(sure_fg | sure_bg)
    if not unsure.any():
        return np.zeros(alpha.shape, np.int32), 0
    if sure_fg.any() and sure_bg.any():
        unsure &= ndi.distance_transform_cdt(~sure_fg, metric="chessboard") + ndi.distance_transform_cdt(~sure_bg, metric="chessboard") > ramp + 1
    labels, count = ndi.label(unsure, structure=np.ones((3, 3), bool))
    if not count:
        return labels, 0
    sizes = np.bincount(labels.ravel())
    small = sizes < max(4, ramp * ramp)
    small[0] = False
    if small.any():
        labels[small[labels]] = 0
        labels, count = ndi.label(labels > 0, structure=np.ones((3, 3), bool))
    return labels.astype(np.int32), count


def _surroundings(alpha: np.ndarray, rgb: np.ndarray, labels: np.ndarray, count: int, ramp: float
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per label (index 0 unused): whether the region touches the sure subject (its parts at
    least MAIN_PART of the largest, within a ramp's width: the soft edge between them), its share of subject-like pixels (colour nearer the
    sure subject's mean within about three ramps of it than the sure background's), and its
    share of background-like pixels (within the nearby sure background's own spread of its
    mean). The photo's means over all sure subject / background stand in where a region has
    none nearby."""
    sure_fg_all, sure_bg_all = alpha >= UNSURE[1], alpha <= UNSURE[0]
    parts, found = ndi.label(sure_fg_all, structure=np.ones((3, 3), bool))
    sizes = np.bincount(parts.ravel(), minlength=found + 1)
    sizes[0] = 0
    main = (sizes >= MAIN_PART * sizes.max())[parts]  # the subject: not a stray sure speck (a clock's face)
    touch = ndi.maximum_filter(labels, size=2 * int(np.ceil(ramp)) + 3)
    contact = np.bincount(touch[main], minlength=count + 1)
    near = ndi.maximum_filter(labels, size=2 * int(np.ceil(3 * ramp)) + 1)
    ring = (near > 0) & (labels == 0)
    sure_fg, sure_bg = ring & sure_fg_all, ring & sure_bg_all
    colour = rgb.astype(np.float32)

    def stats(where: np.ndarray, everywhere: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mean colour, mean squared distance from it) per label."""
        pixels = colour[everywhere]
        fallback = pixels.mean(0) if len(pixels) else np.full(3, 127.5, np.float32)
        spread = np.square(pixels - fallback).sum(-1).mean() if len(pixels) else 0.0
        n = np.bincount(near[where], minlength=count + 1).astype(np.float64)
        sums = np.stack([np.bincount(near[where], colour[where][:, c], minlength=count + 1) for c in range(3)], -1)
        square = np.bincount(near[where], np.square(colour[where]).sum(-1), minlength=count + 1)
        mean = np.where(n[:, None] > 0, sums / np.maximum(n, 1.0)[:, None], fallback)
        variance = np.where(n > 0, square / np.maximum(n, 1.0) - np.square(mean).sum(-1), spread)
        return mean, np.maximum(variance, 0.0)

    fg_mean, _ = stats(sure_fg, sure_fg_all)
    bg_mean, bg_var = stats(sure_bg, sure_bg_all)
    inside = labels > 0
    label, pixels = labels[inside], colour[inside]
    to_bg = np.square(pixels - bg_mean[label]).sum(-1)
    subject_like = (np.square(pixels - fg_mean[label]).sum(-1) < to_bg).astype(np.float64)
    background_like = (to_bg <= np.maximum(2.0 * bg_var[label], SAME_COLOUR**2)).astype(np.float64)
    n = np.maximum(np.bincount(label, minlength=count + 1), 1.0)
    return (contact > 0, np.bincount(label, subject_like, minlength=count + 1) / n,
            np.bincount(label, background_like, minlength=count + 1) / n)


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


def mark_fringe(alpha: np.ndarray, rgb: np.ndarray, reach: float) -> np.ndarray:
    """``alpha`` (after ``confine_to_band``) with the subject's tinted fringe marked SOLID: the
    opaque pixels within ``reach`` px of its soft edge that carry more of the old background's
    hue than any of the subject's own colours (``background_hue``: fur's inner fringe, where
    the background still shows between the hairs). SOLID is never see-through, but not opaque
    either, so the compositor takes that hue out of those pixels (core.look.composite.cutout)
    instead of copying it; every other opaque pixel stays the photo's."""
    opaque, clear = alpha >= 1.0, alpha <= 0.0
    if opaque.all() or not opaque.any() or not clear.any():
        return alpha
    step = max(1, max(alpha.shape) // HUE_GRID)
    edge = _blocks(~opaque, step) > 0  # blocks the soft edge (or the clear outside) passes through
    near = _unblock(ndi.distance_transform_cdt(~edge, metric="chessboard") * step <= reach, step, alpha.shape)
    candidates = opaque & near
    if not candidates.any():
        return alpha
    hue, limit = background_hue(rgb, opaque & ~near, clear, 3 * reach, candidates, step)
    ys, xs = np.nonzero(candidates)
    tinted = spill_excess(rgb[ys, xs].astype(np.float32) / 255.0, hue, limit) > TINTED
    out = alpha.copy()
    out[ys[tinted], xs[tinted]] = SOLID
    return out


def background_hue(rgb: np.ndarray, subject: np.ndarray, background: np.ndarray, radius: float, where: np.ndarray,
                   step: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(hue, limit) for the ``where`` pixels of ``rgb`` (HxWx3, uint8 or 0..1 floats), in
    ``np.nonzero(where)`` order: ``hue`` the old background's colour direction there (Nx3,
    unit length, summing to 0: the mean of ``background`` within ``radius`` px, taken on
    ``step`` x ``step`` blocks for speed, less its grey; 0 where it is grey), ``limit`` the
    most of that hue any of the subject's own colours has (a small palette of ``subject``), so
    that a subject which is itself green keeps its green (``spill_excess``)."""
    colour = rgb.astype(np.float32) / (255.0 if rgb.dtype == np.uint8 else 1.0)
    ys, xs = np.nonzero(where)
    size = 2 * max(1, int(round(radius / step))) + 1
    weight = ndi.uniform_filter(_blocks(background, step), size, mode="constant")
    total = np.stack([ndi.uniform_filter(_blocks(colour[..., c] * background, step), size, mode="constant") for c in range(3)], -1)
    by, bx = ys // step, xs // step
    mean = total[by, bx] / np.maximum(weight[by, bx], 1e-6)[:, None]
    chroma = mean - mean.mean(-1, keepdims=True)
    length = np.linalg.norm(chroma, axis=-1, keepdims=True)
    hue = np.where((length > GREY) & (weight[by, bx, None] > 0.02), chroma / np.maximum(length, 1e-6), 0.0)
    palette = _palette(colour[subject]) if subject.any() else np.zeros((1, 3), np.float32)
    return hue.astype(np.float32), (hue @ palette.T).max(-1).astype(np.float32)


def spill_excess(pixels: np.ndarray, hue: np.ndarray, limit: np.ndarray) -> np.ndarray:
    """How much more of the background's ``hue`` each of ``pixels`` (Nx3, 0..1) has than
    ``limit`` (see ``background_hue``); 0 where none. ``pixels - excess[:, None] * hue`` is the
    pixel with the spill taken out: the same brightness, the hue the subject's own."""
    return np.maximum((pixels * hue).sum(-1) - limit, 0.0)


def _palette(colours: np.ndarray, size: int = PALETTE, rounds: int = 6) -> np.ndarray:
    """A few representative colours of ``colours`` (Nx3): k-means on an even sample, started
    from luminance quantiles so that it is deterministic."""
    sample = colours[:: max(1, len(colours) // 4096)]
    order = np.argsort(sample.sum(-1), kind="stable")
    centres = sample[order[np.linspace(0, len(order) - 1, min(size, len(order))).astype(int)]].copy()
    for _ in range(rounds):
        nearest = np.square(sample[:, None, :] - centres[None]).sum(-1).argmin(1)
        for k in range(len(centres)):
            members = sample[nearest == k]
            if len(members):
                centres[k] = members.mean(0)
    return centres


def _unblock(blocks: np.ndarray, step: int, shape: tuple[int, int]) -> np.ndarray:
    """``blocks`` (one value per ``step`` x ``step`` block) back at ``shape``."""
    if step == 1:
        return blocks
    return np.repeat(np.repeat(blocks, step, 0), step, 1)[: shape[0], : shape[1]]


def _blocks(values: np.ndarray, step: int) -> np.ndarray:
    """Means of ``values`` (HxW, bool or float) over ``step`` x ``step`` blocks (edge blocks
    padded with zeros, as ``uniform_filter``'s constant mode does at the border)."""
    values = values.astype(np.float32)
    if step == 1:
        return values
    h, w = values.shape
    padded = np.zeros((-(-h // step) * step, -(-w // step) * step), np.float32)
    padded[:h, :w] = values
    return padded.reshape(padded.shape[0] // step, step, padded.shape[1] // step, step).mean(axis=(1, 3))


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
