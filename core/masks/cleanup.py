"""From a segmenter's soft output to a mask without ghosts: opaque inside, clear outside, soft
only in a band along the subject's boundary, where the edge follows the photo.

A segmenter's output is a confidence, not a matte: where the model is unsure, whole regions
come out half transparent, and composited as they are the new background shows through the
subject's body ("ghosts"). Here, in four steps:

1. ``decide_unsure_regions``: each unsure region is decided as a whole, by more than its mean:
   whether it touches the sure subject, whether its colours look like the subject or like
   the background beside it (fur, foliage and a half-seen sweater are kept; a shadow, a patch
   of wall, a clock on its own are dropped); the large ones are reported as ``UnsureRegion``
   a user can see and flip;
2. ``follow_photo_edges``: near the boundary a colour guided filter (He et al., "Guided Image
   Filtering") lets the photo's own edges shape the alpha: a glossy rim gets a crisp edge,
   fur a soft one;
3. ``confine_to_band``: the alpha is confined to a band of ``band`` px around the 0.5
   boundary, opaque inside and 0 outside, so soft values survive only where they describe
   an edge;
4. ``mark_fringe``: fur's inner fringe, opaque pixels near the edge that carry the old
   background's hue, is marked nearly opaque (SOLID), so the compositor takes that hue out.
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
                          decisions: dict[int, bool] | None = None, step: int = 1
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
    index: kept} overriding the large ones. A kept region's alpha is 1, a dropped one's 0.
    The regions are found and judged on ``step`` x ``step`` block means (they are large:
    finer is slower, not better), on the box around them (plus their surroundings)."""
    coarse = confidence if step == 1 else np.asarray(Image.fromarray(confidence.astype(np.float32), "F").reduce(step))
    labels, count = _unsure_areas(coarse, ramp / step)
    if not count:
        return alpha, [], None
    sure = coarse >= UNSURE[1]
    if sure.any():
        parts, found = ndi.label(sure, structure=np.ones((3, 3), bool))
        sizes = np.bincount(parts.ravel(), minlength=found + 1)
        sizes[0] = 0
        main = (sizes >= MAIN_PART * sizes.max())[parts]  # the subject: not a stray sure speck (a clock's face)
    box = _box(labels > 0, int(np.ceil(4 * ramp / step)) + 2)
    colour = rgb[box] if step == 1 else _reduce(rgb, step)[box] * np.float32(255.0)
    attached, subject, background = _surroundings(coarse[box], colour, labels[box], count, ramp / step,
                                                  main[box] if sure.any() else np.zeros(labels[box].shape, bool))
    if step > 1:  # the regions at full size
        labels = np.repeat(np.repeat(labels, step, 0), step, 1)
        labels = np.pad(labels, [(0, max(0, alpha.shape[0] - labels.shape[0])), (0, max(0, alpha.shape[1] - labels.shape[1]))])
        labels = labels[: alpha.shape[0], : alpha.shape[1]]
        box = (slice(box[0].start * step, box[0].stop * step), slice(box[1].start * step, box[1].stop * step))
    n = np.bincount(labels.ravel(), minlength=count + 1).astype(np.float64)
    mean = np.bincount(labels.ravel(), confidence.ravel(), minlength=count + 1) / np.maximum(n, 1.0)
    looks_background = (background >= BACKGROUND_LIKE) & (subject < SUBJECT_LIKE)
    kept = np.where(attached, ~looks_background | (mean >= 0.5), (mean >= 0.5) & ~looks_background & (subject >= SUBJECT_LIKE))
    if not sure.any():  # no sure subject to compare with: the model's lean decides
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
    scale = np.where(kept, 0.5 / np.clip(level, 0.1, 0.5), 1.0).astype(alpha.dtype)
    near = ndi.maximum_filter(labels[box], size=2 * int(np.ceil(ramp)) + 1)
    near *= (confidence[box] > UNSURE[0]) & (confidence[box] < UNSURE[1])
    decided = alpha.copy()
    part = decided[box]
    np.minimum(1.0, part * scale[near], out=part)
    inside = labels[box] > 0
    part[inside] = kept[labels[box][inside]]
    out = None
    if regions:
        number = np.zeros(count + 1, np.uint8)
        number[chosen] = np.arange(1, len(chosen) + 1)
        out = number[labels]
    return decided, regions, out


def _box(where: np.ndarray, margin: int) -> tuple[slice, slice]:
    """The bounding box of ``where`` grown by ``margin`` px (clipped to the image)."""
    rows, cols = np.flatnonzero(where.any(1)), np.flatnonzero(where.any(0))
    return (slice(max(0, rows[0] - margin), rows[-1] + 1 + margin), slice(max(0, cols[0] - margin), cols[-1] + 1 + margin))


def _unsure_areas(alpha: np.ndarray, ramp: float) -> tuple[np.ndarray, int]:
    """Connected (8-connected) unsure areas, except the soft ramp along the subject's edge:
    an unsure pixel that is within ``ramp`` px of sure subject and sure background together
    lies on an edge, not in a region. Areas smaller than a ramp's square are left out."""
    sure_fg, sure_bg = alpha >= UNSURE[1], alpha <= UNSURE[0]
    unsure = ~(sure_fg | sure_bg)
    if not unsure.any():
        return np.zeros(alpha.shape, np.int32), 0
    if sure_fg.any() and sure_bg.any():
        across = ndi.distance_transform_cdt(~sure_fg, metric="chessboard") + ndi.distance_transform_cdt(~sure_bg, metric="chessboard")
        unsure &= across > round(ramp) + 1
    labels, count = ndi.label(unsure, structure=np.ones((3, 3), bool))
    if not count:
        return labels, 0
    big = np.bincount(labels.ravel()) >= max(4, ramp * ramp)
    big[0] = False
    number = np.cumsum(big) * big  # the big ones, numbered 1, 2, ... in their order
    return number[labels].astype(np.int32), int(big.sum())


def _surroundings(alpha: np.ndarray, rgb: np.ndarray, labels: np.ndarray, count: int, ramp: float, main: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per label (index 0 unused): whether the region touches the sure subject ``main`` (within
    a ramp's width: the soft edge between them), its share of subject-like pixels (colour
    nearer the mean of the sure subject within about three ramps of it than of the sure
    background there), and its share of background-like pixels (within the nearby sure
    background's own spread of its mean). The means over the whole box stand in where a
    region has no sure subject or background near it."""
    touch = ndi.maximum_filter(labels, size=2 * int(np.ceil(ramp)) + 3)
    contact = np.bincount(touch[main], minlength=count + 1)
    near = ndi.maximum_filter(labels, size=2 * int(np.ceil(3 * ramp)) + 1)
    outside = labels == 0
    colour = rgb.astype(np.float32)

    def stats(sure: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mean colour, mean squared distance from it) per label, of the ``sure`` pixels near it."""
        where = sure & outside & (near > 0)
        label, pixels = near[where], colour[where]
        n = np.bincount(label, minlength=count + 1).astype(np.float64)
        sums = np.stack([np.bincount(label, pixels[:, c], minlength=count + 1) for c in range(3)], -1)
        square = np.bincount(label, np.square(pixels).sum(-1), minlength=count + 1)
        mean = sums / np.maximum(n, 1.0)[:, None]
        variance = square / np.maximum(n, 1.0) - np.square(mean).sum(-1)
        if (n[1:] == 0).any():
            everywhere = colour[sure] if sure.any() else np.full((1, 3), 127.5, np.float32)
            mean[n == 0] = everywhere.mean(0)
            variance[n == 0] = np.square(everywhere - everywhere.mean(0)).sum(-1).mean()
        return mean, np.maximum(variance, 0.0)

    fg_mean, _ = stats(alpha >= UNSURE[1])
    bg_mean, bg_var = stats(alpha <= UNSURE[0])
    label, pixels = labels[~outside], colour[~outside]
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
        return inside.astype(np.float32)
    reach = int(np.ceil(band)) + 1  # farther than this the ramp is 0 or 1 whatever the distance
    signed = np.where(inside, _depth(inside, reach) - 0.5, 0.5 - _depth(~inside, reach))  # + inside, - outside
    ramp = np.clip(0.5 + signed / np.float32(2.0 * band), 0.0, 1.0)
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
    edge = _reduce(~opaque, step) > 0  # blocks the soft edge (or the clear outside) passes through
    near = ndi.distance_transform_cdt(~edge, metric="chessboard") * step <= reach
    near = np.asarray(Image.fromarray(near).resize((near.shape[1] * step, near.shape[0] * step), Image.Resampling.NEAREST))
    near = near[: alpha.shape[0], : alpha.shape[1]]
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
    """(hue, limit) for the ``where`` pixels of ``rgb`` (HxWx3 uint8), in ``np.nonzero(where)``
    order: ``hue`` the old background's colour direction there (Nx3, unit length, summing to
    0: the mean of ``background`` within ``radius`` px, taken on ``step`` x ``step`` blocks for
    speed, less its grey; 0 where it is grey), ``limit`` the most of that hue any of the
    subject's own colours has (a small palette of ``subject``; 0..1 units), so that a subject
    which is itself green keeps its green (``spill_excess``)."""
    size = 2 * max(1, int(round(radius / step))) + 1
    weight = ndi.uniform_filter(_reduce(background, step), size, mode="constant")
    total = ndi.uniform_filter(_reduce(np.where(background[..., None], rgb, 0), step), (size, size, 1), mode="constant")
    ys, xs = np.nonzero(where)
    block = (ys // step) * weight.shape[1] + xs // step
    needed = np.unique(block)  # the blocks the pixels lie in: the hue is the same across one
    mean = total.reshape(-1, 3)[needed] / np.maximum(weight.ravel()[needed], 1e-6)[:, None]
    chroma = mean - mean.mean(-1, keepdims=True)
    length = np.sqrt(np.square(chroma).sum(-1, keepdims=True))
    hue = np.where((length > GREY) & (weight.ravel()[needed, None] > 0.02), chroma / np.maximum(length, 1e-6), 0.0)
    every = max(1, int(np.sqrt(subject.sum() / 1024)))  # an even sample of about 1024 of the subject's pixels
    sample = rgb[::every, ::every][subject[::every, ::every]].astype(np.float32) / 255.0
    palette = _palette(sample) if len(sample) else np.zeros((1, 3), np.float32)
    at = np.searchsorted(needed, block)
    return hue[at].astype(np.float32), (hue @ palette.T).max(-1)[at].astype(np.float32)


def spill_excess(pixels: np.ndarray, hue: np.ndarray, limit: np.ndarray) -> np.ndarray:
    """How much more of the background's ``hue`` each of ``pixels`` (Nx3, 0..1) has than
    ``limit`` (see ``background_hue``); 0 where none. ``pixels - excess[:, None] * hue`` is the
    pixel with the spill taken out: the same brightness, the hue the subject's own."""
    return np.maximum((pixels * hue).sum(-1) - limit, 0.0)


def _palette(sample: np.ndarray, size: int = PALETTE, rounds: int = 5) -> np.ndarray:
    """A few representative colours of ``sample`` (Nx3): k-means started from luminance
    quantiles, so that it is deterministic."""
    order = np.argsort(sample.sum(-1), kind="stable")
    centres = sample[order[np.linspace(0, len(order) - 1, min(size, len(order))).astype(int)]].copy()
    for _ in range(rounds):
        nearest = np.square(sample[:, None, :] - centres[None]).sum(-1).argmin(1)
        for k in range(len(centres)):
            members = sample[nearest == k]
            if len(members):
                centres[k] = members.mean(0)
    return centres


def _reduce(values: np.ndarray, step: int) -> np.ndarray:
    """Means (0..1, float32) of ``values`` (HxW bool or HxWx3 uint8) over ``step`` x ``step``
    blocks, by Pillow's box reduce (edge blocks: their pixels' mean)."""
    image = Image.fromarray(values.astype(np.uint8) * 255 if values.dtype == bool else values)
    return np.asarray(image.reduce(step) if step > 1 else image, dtype=np.float32) / 255.0


def distance_to_boundary(inside: np.ndarray) -> np.ndarray:
    """Each pixel's distance (px) from the boundary of ``inside`` (its pixels next to the
    outside, at 0), on whichever side it lies, in the chessboard metric (never more than
    Euclidean): cheap, for thresholds."""
    if inside.all() or not inside.any():
        return np.full(inside.shape, np.inf)
    return ndi.distance_transform_cdt(~(inside & ~_erode(inside, square=True)), metric="chessboard")


def _depth(mask: np.ndarray, limit: int) -> np.ndarray:
    """Distance (px, float32) of each True pixel to the nearest False one, up to ``limit`` (more
    is ``limit + 1``): how many erosions, by a cross and a square in turn (an octagon, within
    about 8% of Euclidean), it survives. Only the pixels near the edge are told apart, at a
    few slicing operations each."""
    depth = np.zeros(mask.shape, np.float32)
    current = mask
    for i in range(1, limit + 1):
        eroded = _erode(current, square=i % 2 == 0)
        depth[current & ~eroded] = i
        current = eroded
    depth[current] = limit + 1
    return depth


def _erode(mask: np.ndarray, square: bool) -> np.ndarray:
    """``mask`` eroded by a 3 x 3 cross (or square), beyond the image counting as True."""
    padded = np.pad(mask, 1, constant_values=True)
    if square:
        rows = padded[:-2] & padded[1:-1] & padded[2:]
        return rows[:, :-2] & rows[:, 1:-1] & rows[:, 2:]
    return (padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:])


def follow_photo_edges(rgb: np.ndarray, alpha: np.ndarray, near: np.ndarray, radius: int, eps: float,
                       step: int = 4) -> np.ndarray:
    """``alpha`` guided-filtered with the photo ``rgb`` (uint8 HxWx3) on the ``near`` pixels
    (those close to the 0.5 contour); elsewhere unchanged.

    The colour guided filter of He, Sun and Tang (2013), box windows of (2 radius + 1)^2 px,
    with its linear coefficients computed on ``step`` x ``step`` block means (He and Sun's
    "fast guided filter": step^2 times fewer box filters) and interpolated back only at the
    ``near`` pixels, so its full-resolution cost follows the edge's length."""
    ys, xs = np.nonzero(near)
    if not len(ys):
        return alpha
    h, w = alpha.shape
    g = _reduce(rgb, step)  # block means, 0..1
    q = np.asarray(Image.fromarray(alpha.astype(np.float32), "F").reduce(step), dtype=np.float32)
    r = max(1, round(radius / step))

    def box(x):
        return ndi.uniform_filter(x, size=2 * r + 1, mode="nearest")

    m = [box(g[..., c]) for c in range(3)]
    mp = box(q)
    cov = [box(g[..., c] * q) - m[c] * mp for c in range(3)]
    var = {(i, j): box(g[..., i] * g[..., j]) - m[i] * m[j] + (eps if i == j else 0.0)
           for i in range(3) for j in range(i, 3)}
    a11, a12, a13, a22, a23, a33 = (var[k] for k in ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)))
    # the 3x3 solve per block, by cofactors (the covariance is symmetric)
    c11, c12, c13 = a22 * a33 - a23 * a23, a13 * a23 - a12 * a33, a12 * a23 - a13 * a22
    c22, c23, c33 = a11 * a33 - a13 * a13, a12 * a13 - a11 * a23, a11 * a22 - a12 * a12
    det = a11 * c11 + a12 * c12 + a13 * c13
    k0 = (c11 * cov[0] + c12 * cov[1] + c13 * cov[2]) / det
    k1 = (c12 * cov[0] + c22 * cov[1] + c23 * cov[2]) / det
    k2 = (c13 * cov[0] + c23 * cov[1] + c33 * cov[2]) / det
    b = mp - k0 * m[0] - k1 * m[1] - k2 * m[2]
    # the coefficients' window means, read at the near pixels' centres in the block grid
    at = [(ys + 0.5) / step - 0.5, (xs + 0.5) / step - 0.5]
    k0, k1, k2, b = (ndi.map_coordinates(box(x), at, order=1, mode="nearest") for x in (k0, k1, k2, b))
    pixels = rgb[ys, xs].astype(np.float32) / 255.0
    out = alpha.copy()
    out[ys, xs] = np.clip(k0 * pixels[:, 0] + k1 * pixels[:, 1] + k2 * pixels[:, 2] + b, 0.0, 1.0)
    return out
