"""Colour harmony: nudge the subject's brightness and colour temperature toward the new
background around it, so a subject shot under one light does not look pasted into another.

Works in CIELAB on a copy of the photo (the stored original is never touched): the subject's
mean L, a, b move part of the way toward the mean of a ring of the new background around the
subject. Only means move (contrast and texture stay), and the shift is capped so a strongly
coloured scene tints the subject instead of repainting it. Strength 0, the default for every
background, returns the photo as is: the subject's opaque pixels stay the input's, bit for bit,
unless the user turns colour match on.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage as ndi
from skimage import color

# fraction of the gap closed at strength 1, and the largest shift, per LAB channel (L, a, b)
TRANSFER = np.array([0.5, 0.35, 0.35])
MAX_SHIFT = np.array([25.0, 12.0, 12.0])
RING_FRACTION = 0.06  # ring width as a fraction of the subject's larger bounding-box side


def as_photographed(result: Image.Image, cutout: Image.Image) -> Image.Image:
    """``result`` with the subject's own pixels put back (the cut-out pasted over it with its
    alpha): what the result looks like without colour match, for a before/after look. Exact
    where the subject is opaque; along the soft edge a close approximation."""
    out = result.convert("RGB")
    out.paste(cutout.convert("RGB"), mask=cutout.getchannel("A"))
    return out


def ring_mask(alpha: np.ndarray) -> np.ndarray:
    """Boolean ring of background just outside the subject (alpha in 0..1)."""
    inside = alpha >= 0.5
    ys, xs = np.nonzero(inside)
    side = max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1)
    width = max(3, round(RING_FRACTION * side))
    gap = 2  # skip the soft edge itself
    near = ndi.binary_dilation(inside, iterations=gap)
    return ndi.binary_dilation(near, iterations=width) & ~near


def harmonize(photo: Image.Image, alpha: Image.Image, background: Image.Image, strength: float) -> Image.Image:
    """A copy of ``photo`` whose subject (alpha > 0) is shifted toward ``background``'s colour
    near it; ``photo`` itself is returned unchanged when strength is 0 or there is no subject."""
    a = np.asarray(alpha.convert("L"), dtype=np.float64) / 255.0
    if strength <= 0 or not (a >= 0.5).any():
        return photo
    ring = ring_mask(a)
    if not ring.any():
        return photo
    rgb = np.asarray(photo.convert("RGB"))
    subject = a > 0
    ys, xs = np.nonzero(subject)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1

    bg_lab = color.rgb2lab(np.asarray(background.convert("RGB"))[ring][None])[0]
    lab = color.rgb2lab(rgb[y0:y1, x0:x1])
    weights = a[y0:y1, x0:x1]
    subject_mean = (lab * weights[..., None]).reshape(-1, 3).sum(0) / weights.sum()
    shift = np.clip((bg_lab.mean(0) - subject_mean) * TRANSFER * strength, -MAX_SHIFT * strength, MAX_SHIFT * strength)
    shifted = color.lab2rgb(lab + shift)
    out = rgb.copy()
    region = out[y0:y1, x0:x1]
    sel = subject[y0:y1, x0:x1]
    region[sel] = np.clip(np.round(shifted[sel] * 255.0), 0, 255).astype(np.uint8)
    return Image.fromarray(out, "RGB")
