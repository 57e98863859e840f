"""Automatic subject mask with rembg, cleaned so it needs no fixing where the model was unsure.

A segmenter's soft output is a confidence, not a matte. Pasted as it is, its faint values over
the background leave a haze, its 250-254 interior mixes the subject with the new background,
and where the model is unsure whole regions come out half transparent ("ghosts"). So, at
WORK_SIDE px at most (the model saw 320-1024):

1. ``core.masks.cleanup`` decides each unsure region as a whole, by whether it touches the
   sure subject and whose colours it has (reported, so a user can flip it);
2. a linear remap (LOW -> 0, HIGH -> 255) puts the soft ramp inside the model's 0.5 contour,
   where the true edge usually lies (the model's ramp spills outward: halo);
3. near the boundary a colour guided filter lets the photo's edges shape the alpha;
4. the alpha is soft only in a band of BAND_FRACTION of the long side along the boundary:
   opaque inside, 0 outside, but for fur's tinted inner fringe, marked nearly opaque so that
   the compositor can take the old background's hue out of it.
The mask is then resized to the photo. The figures that chose these settings are in README's
Quality section (``backdrop eval`` on the synthetic set).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image

from core.cache import get_cache, image_digest
from core.models import rembg_weights
from core.errors import InputError
from core.models.registry import get_registry
from core.masks.cleanup import (
    SOLID,
    UnsureRegion,
    confine_to_band,
    decide_unsure_regions,
    distance_to_boundary,
    follow_photo_edges,
    mark_fringe,
)

LOW, HIGH = 140, 244  # raw model values at or below LOW become 0, at or above HIGH become 255
MODEL_SIDE = 1024  # the photo is shrunk to at most this before the model (models resize to 320-1024)
WORK_SIDE = 640  # ...and the model's output cleaned at most this large, then resized to the photo
REGION_STEP = 2  # unsure regions are found on 2 x 2 block means (core.masks.cleanup.decide_unsure_regions)
RECONFINE_BELOW = 2  # a mask resized by less than this is confined to the band again (see _resized)
BAND_FRACTION, MIN_BAND = 0.004, 2  # soft edge half-width: 3 px at 640, 4 at 1024 (model-input px)
GUIDE_FRACTION, GUIDE_EPS = 1 / 80, 1e-4  # guided filter radius (8 px at 640) and regularisation
FRINGE_FRACTION = 0.02  # how deep fur's mixed inner fringe may reach (13 px at 640; core.masks.cleanup.mark_fringe)

_REMAP = np.array([min(max((v - LOW) / (HIGH - LOW), 0.0), 1.0) for v in range(256)], np.float32)
SESSION_DEVICE = "auto"  # onnxruntime picks its providers itself (CUDA where onnxruntime-gpu is installed)
_lock = threading.Lock()


@dataclass(frozen=True)
class MaskAnalysis:
    """The automatic mask and the decisions behind it.

    ``regions``: the large areas the model was unsure about, each kept or dropped as a whole;
    ``labels``: 'L' at the photo's size, ``index + 1`` on each region's pixels (None when
    there are none), so a UI can outline them and flip one with ``automatic_mask(...,
    decisions={index: not kept})``."""

    mask: Image.Image
    regions: tuple[UnsureRegion, ...]
    labels: Image.Image | None

    def region_mask(self, index: int) -> Image.Image:
        """'L' at the photo's size: 255 on region ``index``."""
        if self.labels is None or not 0 <= index < len(self.regions):
            raise InputError(f"no unsure region {index} in this mask")
        return self.labels.point(lambda v: 255 if v == index + 1 else 0)


def automatic_mask(image: Image.Image, model: str = "u2netp", decisions: dict[int, bool] | None = None) -> Image.Image:
    """The subject's mask ('L', the image's size): 255 = subject, 0 = background, soft only
    along the subject's edge. ``decisions`` ({region index: kept}) overrides how large unsure
    regions were decided (see ``analyse_mask``)."""
    return analyse_mask(image, model, decisions).mask


def analyse_mask(image: Image.Image, model: str = "u2netp", decisions: dict[int, bool] | None = None) -> MaskAnalysis:
    """The automatic mask with its unsure regions.

    Cached per pixels, size, model file and decisions (core.cache): the Studio computes it at
    upload and the generation, its variants and its re-runs then reuse it instead of running
    u2netp again; flipping a region reuses the model's cached output."""
    small, key = _model_input(image, model)
    chosen = tuple(sorted((int(k), bool(v)) for k, v in (decisions or {}).items()))
    mask, labels, regions = get_cache().get_or_compute(
        "mask", (*key, chosen), lambda: _clean(small, _model_output(small, key, model), image.size, dict(chosen)))
    return MaskAnalysis(mask, regions, labels)


def model_output(image: Image.Image, model: str = "u2netp") -> Image.Image:
    """The segmenter's own soft mask ('L') at the size the model was given (see
    ``_model_input``), before any post-processing; cached like the mask."""
    return _model_output(*_model_input(image, model), model)


def _model_output(small: Image.Image, key: tuple, model: str) -> Image.Image:
    return get_cache().get_or_compute("model_mask", key, lambda: _predict(small, model))


def raw_mask(image: Image.Image, model: str = "u2netp") -> Image.Image:
    """The model's soft mask resized to the photo ('L'): what "raw u2netp" means in ``eval``."""
    return model_output(image, model).resize(image.size, Image.Resampling.BILINEAR)


def band_width(size: tuple[int, int]) -> float:
    """Half-width (px) of the soft edge band for a mask of ``size``."""
    return max(MIN_BAND, round(BAND_FRACTION * max(size)))


def _clean(small: Image.Image, raw: Image.Image, size: tuple[int, int], decisions: dict[int, bool]):
    """(mask at ``size``, region labels at ``size`` or None, regions): steps 1-3 of the module
    docstring at the model's input size, then one bilinear resize."""
    if raw.size != small.size:
        raw = raw.resize(small.size, Image.Resampling.BILINEAR)
    if max(small.size) > WORK_SIDE:  # the model saw 320-1024 px: finer work only costs time
        work = _fit(small.size, WORK_SIDE)
        small, raw = small.resize(work, Image.Resampling.BOX), raw.resize(work, Image.Resampling.BOX)
    band = band_width(size) * max(small.size) / max(size)  # the photo's band, in work pixels
    radius = max(2, round(GUIDE_FRACTION * max(small.size)))
    values = np.asarray(raw.convert("L"))
    rgb = np.asarray(small.convert("RGB"))
    alpha, regions, labels = decide_unsure_regions(values / np.float32(255.0), _REMAP[values], rgb, 2 * band, decisions,
                                                   REGION_STEP)
    distance = distance_to_boundary(alpha >= 0.5)
    alpha = follow_photo_edges(rgb, alpha, distance <= band + radius, radius, GUIDE_EPS)
    alpha = mark_fringe(confine_to_band(alpha, band), rgb, FRINGE_FRACTION * max(small.size))
    mask = Image.fromarray(np.round(alpha * 255.0).astype(np.uint8), "L")
    if mask.size != size and max(size) >= RECONFINE_BELOW * max(small.size):
        mask = mask.resize(size, Image.Resampling.BILINEAR)
    elif mask.size != size:
        mask = Image.fromarray(np.round(_resized(alpha, size) * 255.0).astype(np.uint8), "L")
    label_image = None
    if labels is not None:
        label_image = Image.fromarray(labels, "L").resize(size, Image.Resampling.NEAREST)
        scale = (size[0] / small.size[0], size[1] / small.size[1])
        regions = [replace(r, box=(int(r.box[0] * scale[0]), int(r.box[1] * scale[1]), round(r.box[2] * scale[0]),
                                   round(r.box[3] * scale[1]))) for r in regions]
    return mask, label_image, tuple(regions)


def _resized(alpha: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``alpha`` resized to ``size`` (bilinear), then confined to the band again at that size:
    resampling by a factor near 1 puts the new pixels between the old ones, so a thin strand
    just above 0.5 can fall below it, leaving its soft edge far from any contour (a factor of 2
    or more keeps the old pixels' values, and a 12 MP photo would pay for it). The fringe
    marked nearly opaque stays so."""
    up = np.asarray(Image.fromarray(alpha.astype(np.float32), "F").resize(size, Image.Resampling.BILINEAR))
    out = confine_to_band(up, band_width(size))
    out[(up > 0.95) & (up < 1.0) & (out >= 1.0)] = SOLID
    return out


def _fit(size: tuple[int, int], side: int) -> tuple[int, int]:
    """``size`` scaled so that its long side is ``side``."""
    scale = side / max(size)
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _model_input(image: Image.Image, model: str) -> tuple[Image.Image, tuple]:
    """(the photo as the model is given it, its cache key): at most twice the side the model
    resizes its input to (rembg's u2net family: 320 px, so 640; the rest MODEL_SIDE), since
    more detail than that only costs the resizes on the way in and out."""
    small = image if image.mode == "RGB" else image.convert("RGB")
    side = min(MODEL_SIDE, max(WORK_SIDE, 2 * rembg_weights.input_side(model)))
    factor = max(small.size) // side
    if factor > 1:  # a box-filter reduce is ~8x cheaper than a resize
        small = small.reduce(factor)
    if max(small.size) > side:
        small = small.resize(_fit(small.size, side), Image.Resampling.BOX)
    return small, (image_digest(small), image.size, model, rembg_weights.revision(model))


def _predict(small: Image.Image, model: str) -> Image.Image:
    session = get_registry().load("segmenter", model, SESSION_DEVICE)
    with _lock:  # onnxruntime sessions are thread-safe, but two runs on 2 cores only thrash
        return session.predict(small)[0].convert("L")
