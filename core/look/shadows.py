"""Shadows generated from the mask and darkened into the background under the subject, so the
subject stands on the new scene instead of floating over it.

- Contact shadow: the silhouette squashed flat across the subject's base line and blurred
  (ambient occlusion where the subject meets the ground), plus a tight dark core.
- Cast shadow: the silhouette laid down on the ground plane from its base in the direction
  ``shadow_angle`` (degrees, counter-clockwise from "right"; 90 falls straight back/up the
  image), blurred more the farther it falls from the base (``shadow_softness``).
Both multiply the background by (1 - opacity * shadow); the subject is composited on top.

Shadows are soft, so they are computed on the mask reduced to at most ``SHADOW_SIDE`` px on its
long side and the density enlarged back: their blurs cost the cube of the size (area times
blur radius), which made a 12 MP shadow take 13 s at full resolution.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

CONTACT_HEIGHT = 0.06  # squashed silhouette height, as a fraction of the subject height
CAST_LENGTH = 0.6  # shadow length, as a fraction of the subject height
MIN_RISE = 0.12  # the ground-plane projection never collapses to a line
SHADOW_SIDE = 1024  # px: shadows are computed at most this large on the long side
ROWS_AT_ONCE = 256  # rows darkened per step (bounds the float copy of a large photo)


def _bounds(inside: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(inside)
    return ys.min(), ys.max(), xs.min(), xs.max()


def contact_shadow(alpha: np.ndarray) -> np.ndarray:
    """Shadow density 0..1 at the subject's base, from an alpha in 0..1."""
    inside = alpha >= 0.5
    top, base, _, _ = _bounds(inside)
    height = base - top + 1
    squash = max(CONTACT_HEIGHT * height, 2.0) / height
    # the flattened silhouette straddles the base line (the ground plane lies both behind and
    # in front of it): y' = anchor - (base - y) * squash, sampled backwards.
    anchor = base + 0.5 * squash * height
    matrix = np.array([[1.0 / squash, 0.0], [0.0, 1.0]])
    offset = np.array([base - anchor / squash, 0.0])
    flat = ndi.affine_transform(alpha, matrix, offset=offset, order=1, cval=0.0)
    wide = ndi.gaussian_filter(flat, sigma=max(2.0, 0.04 * height))
    core = ndi.gaussian_filter(flat, sigma=max(1.0, 0.01 * height))
    return np.clip(np.maximum(wide / max(wide.max(), 1e-6) * 0.7, core), 0.0, 1.0)


def cast_shadow(alpha: np.ndarray, angle: float, softness: float) -> np.ndarray:
    """Shadow density 0..1 of the silhouette laid on the ground from its base."""
    inside = alpha >= 0.5
    top, base, _, _ = _bounds(inside)
    height = base - top + 1
    theta = math.radians(angle)
    run = CAST_LENGTH * math.cos(theta)
    rise = CAST_LENGTH * math.sin(theta)
    if abs(rise) < MIN_RISE:
        rise = math.copysign(MIN_RISE, rise if rise else 1.0)
    # a point h = base - y above the base lands at x' = x + run*h, y' = base - rise*h.
    # Inverse: h = (base - y') / rise, y = base - h, x = x' - run*h.
    # In (row, col) coordinates: y = base - base/rise + y'/rise ; x = x' + (run/rise)*y' - run*base/rise
    matrix = np.array([[1.0 / rise, 0.0], [run / rise, 1.0]])
    offset = np.array([base - base / rise, -run * base / rise])
    laid = ndi.affine_transform(alpha, matrix, offset=offset, order=1, cval=0.0)
    if rise > 0:
        laid[base + 1 :] = 0.0  # a shadow falling back does not reach in front of the base
    else:
        laid[:base] = 0.0
    sharp = ndi.gaussian_filter(laid, sigma=1.0 + 0.01 * height * softness)
    soft = ndi.gaussian_filter(laid, sigma=1.0 + 0.08 * height * softness)
    # farther from the base = softer (penumbra grows with distance)
    along = (base - np.arange(alpha.shape[0])) * math.copysign(1.0, rise)  # rows travelled
    far = np.clip(along / max(abs(rise) * height, 1.0), 0.0, 1.0)[:, None]
    fade = 1.0 - 0.6 * far  # and lighter
    return np.clip((sharp * (1.0 - far) + soft * far) * fade, 0.0, 1.0)


def apply_shadows(background: Image.Image, alpha: Image.Image, request) -> Image.Image:
    """The background with the request's contact and cast shadows darkened in; the same
    image object when both are off or there is no subject."""
    if request.contact_shadow <= 0 and request.cast_shadow <= 0:
        return background
    mask = alpha.convert("L")
    scale = min(1.0, SHADOW_SIDE / max(mask.size))
    if scale < 1.0:
        small = (max(1, round(mask.width * scale)), max(1, round(mask.height * scale)))
        mask = mask.resize(small, Image.Resampling.BOX)
    a = np.asarray(mask, dtype=np.float32) / 255.0
    if not (a >= 0.5).any():
        return background
    keep = np.ones(a.shape, dtype=np.float32)
    if request.contact_shadow > 0:
        keep *= 1.0 - request.contact_shadow * contact_shadow(a)
    if request.cast_shadow > 0:
        keep *= 1.0 - request.cast_shadow * cast_shadow(a, request.shadow_angle, request.shadow_softness)
    if keep.shape != (background.height, background.width):
        keep = np.asarray(Image.fromarray(keep, "F").resize(background.size, Image.Resampling.BILINEAR))
    # background * keep a band of rows at a time: an 80 MP photo never becomes one float array
    rgb = np.array(background.convert("RGB"))
    for top in range(0, rgb.shape[0], ROWS_AT_ONCE):
        rows = slice(top, top + ROWS_AT_ONCE)
        rgb[rows] = np.clip(np.round(rgb[rows] * keep[rows, :, None]), 0, 255).astype(np.uint8)
    return Image.fromarray(rgb, "RGB")
