"""The quality report (``backdrop eval DIR``).

For every ``NAME.png`` with a ground-truth matte ``NAME_alpha*.png`` in DIR (real photos, or
the synthetic set ``backdrop testset DIR`` writes), and for every segmenter whose
weights are installed, with and without matting refinement, it measures the mask (IoU at
alpha 0.5, SAD, MSE, gradient error in the edge band, ghost share, seconds) and the composite
over a colour that contrasts with the photo's old background:

- ``ghost``: the share of the mask's visible pixels that are see-through (alpha 0.05-0.95)
  and farther than a few pixels (GHOST_FRACTION of the long side, at least GHOST_MIN) from
  the mask's 50% contour: the new background showing through the subject's body, or a haze
  over the old background, instead of a soft edge;
- ``fg_maxdiff``: max difference of the opaque pixels from the photo (must be 0: harmony off);
- ``halo``: mean colour distance (RGB, 0-255) between the composite and the new background
  in a thin band just outside the true subject, where a perfect composite shows only the new
  background (old-background fringe and alpha bleeding outward raise it);
- ``edge``: mean colour distance in the edge band between the composite and a reference
  composite built from the true alpha (a tight hard cut-out can score a low halo because it
  cuts the fur off: this shows it).
Each composite measure is given for the product's default (``default``: the cleaned soft
alpha, spill removal), the same without spill removal (``nospill``), and two baselines from
the same model output: the raw mask pasted softly (``raw``) and a hard cut-out at 0.5
(``hard``); the true matte is the third baseline (its halo is the floor hair allows). The halo
is also measured over plain white and plain black (``halo_white_*``, ``halo_black_*``): the
old background's colour left in fur shows on them whatever the subject's colours, and a
product shot goes on white. ``iou_raw`` is the raw model mask's IoU: the clean-up must not
lose subject the model found.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

from core.errors import InputError
from core.models.hub import fetch_command
from core.imaging import PHOTO_SUFFIXES

_ALPHA = re.compile(r"^(?P<name>.+)_alpha[^/]*\.png$", re.IGNORECASE)
EDGE_BAND = 10  # px each side of the true contour where the gradient error is measured
HALO_BAND = 4  # px just outside the true subject where the halo is measured
OUTSIDE = 0.05  # ground-truth alpha below this counts as old background
SOFT = (0.05, 0.95)  # alpha strictly between these is visibly see-through
GHOST_FRACTION, GHOST_MIN = 0.005, 3  # "a few pixels": 3 px at 640, 5 at 1024, 20 at 4000
IOU_SLACK = 0.01  # a photo whose IoU falls more than this below the raw model's lost subject


@dataclass(frozen=True)
class Sample:
    name: str
    photo: Path
    alpha: Path


def find_samples(folder: Path) -> list[Sample]:
    """Pairs of NAME.(png|jpg|webp) + NAME_alpha*.png (e.g. lemur.png + lemur_alpha_fba.png)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder")
    samples = []
    for alpha in sorted(folder.iterdir()):
        match = _ALPHA.match(alpha.name)
        if not match:
            continue
        name = match["name"]
        photo = next((folder / f"{name}{s}" for s in PHOTO_SUFFIXES if (folder / f"{name}{s}").is_file()), None)
        if photo is not None:
            samples.append(Sample(name, photo, alpha))
    if not samples:
        raise InputError(f"no NAME.png + NAME_alpha.png pairs in {folder}")
    return samples


def available_segmenters() -> list[str]:
    """rembg models whose weights are installed (no download happens in an evaluation), the
    ranked ones first, best first (core.models.rembg_weights.RANKING)."""
    from core.models import rembg_weights

    names = [name for name in rembg_weights.names() if rembg_weights.model_file(name) is not None]
    return sorted(names, key=lambda name: (rembg_weights.RANKING.index(name) if name in rembg_weights.RANKING
                                           else len(rembg_weights.RANKING), name))


# ---- alpha metrics (alpha arrays are float in 0..1) -------------------------------------


def iou(alpha: np.ndarray, truth: np.ndarray) -> float:
    pred, true = alpha >= 0.5, truth >= 0.5
    union = (pred | true).sum()
    return float((pred & true).sum() / union) if union else 1.0


def sad(alpha: np.ndarray, truth: np.ndarray) -> float:
    """Sum of absolute differences, in thousands (the matting literature's unit)."""
    return float(np.abs(alpha - truth).sum() / 1000.0)


def mse(alpha: np.ndarray, truth: np.ndarray) -> float:
    return float(((alpha - truth) ** 2).mean())


def edge_band(truth: np.ndarray, width: int = EDGE_BAND) -> np.ndarray:
    """Pixels within ``width`` px of the true 0.5 contour, plus the true soft pixels."""
    inside = truth >= 0.5
    band = ndi.binary_dilation(inside, iterations=width) & ~ndi.binary_erosion(inside, iterations=width, border_value=1)
    return band | ((truth > 0.0) & (truth < 1.0))


def gradient_error(alpha: np.ndarray, truth: np.ndarray, band: np.ndarray) -> float:
    """Squared difference of gradient magnitudes (Gaussian derivatives, sigma 1.4, alpha in
    0..1) summed over the edge band: how far the edge's sharpness and shape are from the truth."""

    def magnitude(a: np.ndarray) -> np.ndarray:
        return np.hypot(ndi.gaussian_filter(a, 1.4, order=(0, 1)), ndi.gaussian_filter(a, 1.4, order=(1, 0)))

    return float((((magnitude(alpha) - magnitude(truth)) ** 2)[band]).sum())


def contour_distance(alpha: np.ndarray) -> np.ndarray:
    """Each pixel's distance (px) from the alpha-0.5 contour, on whichever side it lies."""
    inside = alpha >= 0.5
    if inside.all() or not inside.any():
        return np.full(alpha.shape, np.inf)
    return np.where(inside, ndi.distance_transform_edt(inside), ndi.distance_transform_edt(~inside))


def ghost_distance(shape: tuple[int, ...]) -> float:
    return max(GHOST_MIN, GHOST_FRACTION * max(shape[:2]))


def ghost_share(alpha: np.ndarray) -> float:
    """Share of the visible mask (alpha > 0.05) that is see-through and farther than
    ``ghost_distance`` from the 50% contour: 0 when softness lives only along the edge."""
    visible = alpha > SOFT[0]
    if not visible.any():
        return 0.0
    ghost = visible & (alpha < SOFT[1]) & (contour_distance(alpha) > ghost_distance(alpha.shape))
    return float(ghost.sum() / visible.sum())


# ---- composite checks ---------------------------------------------------------------------


def foreground_preservation(photo: Image.Image, alpha: Image.Image, result: Image.Image) -> int:
    """Max abs difference between the photo and the composite over the opaque (255) pixels."""
    opaque = np.asarray(alpha.convert("L")) == 255
    if not opaque.any():
        return 0
    diff = np.abs(np.asarray(photo.convert("RGB"), dtype=np.int16) - np.asarray(result.convert("RGB"), dtype=np.int16))
    return int(diff[opaque].max())


def halo_band(truth: np.ndarray, width: int = HALO_BAND) -> np.ndarray:
    """A thin band just outside the true subject (its alpha-0.5 contour), where a composite
    should show mostly the new background: old-background fringe shows up here."""
    subject = truth >= 0.5
    return ndi.binary_dilation(subject, iterations=width) & ~subject


def edge_halo(result: Image.Image | np.ndarray, background: Image.Image, band: np.ndarray) -> float:
    """Mean RGB distance (0-255) between the composite and the new background over ``band``.
    Fine hair legitimately adds some: the reference composite's own score is the floor."""
    if not band.any():
        return 0.0
    diff = np.asarray(result, dtype=np.float64)[..., :3] - np.asarray(background.convert("RGB"), dtype=np.float64)
    return float(np.sqrt((diff**2).sum(-1))[band].mean())


def contrasting_color(photo: Image.Image, truth: np.ndarray) -> tuple[int, int, int]:
    """The saturated primary or secondary colour farthest from both the old background and the
    subject (their mean colours), so a fringe of either shows (magenta for the lemur on green).
    Black and white are left out: they hide dark or light fur whatever the means say."""
    rgb = np.asarray(photo.convert("RGB"), dtype=np.float64)
    means = [rgb[part].mean(0) for part in (truth < OUTSIDE, truth >= 0.5) if part.any()]
    corners = [np.array(c, dtype=np.float64) for c in np.ndindex(2, 2, 2) if 0 < sum(c) < 3]
    best = max(corners, key=lambda c: min((np.linalg.norm(c * 255 - m) for m in means), default=0.0))
    return tuple(int(v) * 255 for v in best)  # type: ignore[return-value]


def true_foreground(photo: Image.Image, truth: np.ndarray) -> np.ndarray:
    """The subject's colours (float RGB, 0..255) estimated with the TRUE alpha."""
    from pymatting import estimate_foreground_ml

    return estimate_foreground_ml(np.asarray(photo.convert("RGB"), dtype=np.float64) / 255.0, truth) * 255.0


def reference_composite(photo: Image.Image, truth: np.ndarray, background: Image.Image,
                        fg: np.ndarray | None = None) -> np.ndarray:
    """What a perfect composite would look like (float RGB): the foreground colours estimated
    with the TRUE alpha (``fg``, from ``true_foreground``), over the new background with the
    true alpha."""
    if fg is None:
        fg = true_foreground(photo, truth)
    t = truth[..., None]
    return fg * t + np.asarray(background.convert("RGB"), dtype=np.float64) * (1.0 - t)


def edge_error(result: Image.Image, reference: np.ndarray, band: np.ndarray) -> float:
    """Mean RGB distance (0-255) between a composite and the reference composite over ``band``:
    wrong alpha, a hard edge and old-background spill all raise it."""
    diff = np.asarray(result.convert("RGB"), dtype=np.float64) - reference
    return float(np.sqrt((diff**2).sum(-1))[band].mean())


def hard_composite(photo: Image.Image, alpha: Image.Image, background: Image.Image) -> Image.Image:
    """The usual open-source result: a binary cut-out at alpha 0.5 pasted on the background."""
    return Image.composite(photo.convert("RGB"), background, alpha.point(lambda v: 255 if v >= 128 else 0))


# ---- the report ---------------------------------------------------------------------------

COMPOSITES = ("default", "nospill", "raw", "hard")
BASELINES = ("raw", "hard")
PLAIN = {"white": (255, 255, 255), "black": (0, 0, 0)}  # halo over these too


def _warm_up(segmenter: str, refine: bool) -> None:
    """Load the model and compile pymatting's kernels outside the timed part: the report's
    seconds are the per-image cost of a warm process, as in the app and a batch run."""
    from core.look.composite import composite
    from core.masks.matting import refine_alpha
    from core.request import GenerationRequest
    from core.masks.segment import automatic_mask

    yy, xx = np.mgrid[:64, :64]
    disc = Image.fromarray(np.where((yy - 32) ** 2 + (xx - 32) ** 2 < 400, 255, 0).astype(np.uint8), "L")
    photo = Image.fromarray(np.dstack([np.asarray(disc)] * 3), "RGB")
    automatic_mask(photo, segmenter)
    soft = disc.resize((16, 16), Image.BILINEAR).resize((64, 64), Image.BILINEAR)
    composite(photo, soft, photo, GenerationRequest())
    if refine:
        refine_alpha(photo, disc)


def evaluate_sample(sample: Sample, segmenter: str, refine: bool) -> dict:
    from core.look.composite import composite, cutout
    from core.masks.matting import refine_alpha
    from core.request import GenerationRequest
    from core.masks.segment import automatic_mask, raw_mask

    photo = Image.open(sample.photo).convert("RGB")
    truth_img = Image.open(sample.alpha).convert("L")
    if truth_img.size != photo.size:
        raise InputError(f"{sample.alpha.name} is {truth_img.size}, {sample.photo.name} is {photo.size}")
    truth = np.asarray(truth_img, dtype=np.float64) / 255.0

    started = time.perf_counter()
    mask = automatic_mask(photo, segmenter)
    segment_s = time.perf_counter() - started
    refine_s, warnings = 0.0, []
    if refine:
        started = time.perf_counter()
        mask = refine_alpha(photo, mask, warnings=warnings)
        refine_s = time.perf_counter() - started
    alpha = np.asarray(mask, dtype=np.float64) / 255.0
    raw = raw_mask(photo, segmenter)

    rgb = contrasting_color(photo, truth)
    request = GenerationRequest(background="color:#%02x%02x%02x" % rgb, segmenter=segmenter)
    background = Image.new("RGB", photo.size, rgb)
    started = time.perf_counter()
    results = {"default": composite(photo, mask, background, request)}
    composite_s = time.perf_counter() - started
    results["nospill"] = composite(photo, mask, background, request.replace(spill_removal=False))
    results["raw"] = Image.composite(photo, background, raw)
    results["hard"] = hard_composite(photo, raw, background)
    fg = true_foreground(photo, truth)
    reference = reference_composite(photo, truth, background, fg)
    row = {
        "image": sample.name,
        "segmenter": segmenter,
        "refine": refine,
        "size": list(photo.size),
        "iou": iou(alpha, truth),
        "iou_raw": iou(np.asarray(raw, dtype=np.float64) / 255.0, truth),
        "sad": sad(alpha, truth),
        "mse": mse(alpha, truth),
        "grad": gradient_error(alpha, truth, edge_band(truth)),
        "ghost": ghost_share(alpha),
        "ghost_raw": ghost_share(np.asarray(raw, dtype=np.float64) / 255.0),
        "ghost_truth": ghost_share(truth),
        "segment_s": segment_s,
        "refine_s": refine_s,
        "warnings": warnings,
        "composite_s": composite_s,
        "seconds": segment_s + refine_s + composite_s,
        "background": "#%02x%02x%02x" % rgb,
        "fg_maxdiff": foreground_preservation(photo, mask, results["default"]),
        "halo_truth": edge_halo(reference, background, halo_band(truth)),
    }
    for name, result in results.items():
        row[f"halo_{name}"] = edge_halo(result, background, halo_band(truth))
        row[f"edge_{name}"] = edge_error(result, reference, edge_band(truth))
    cut = cutout(photo, mask)  # one spill estimate for both plain backgrounds, as the app does
    for name, plain in PLAIN.items():
        flat = Image.new("RGB", photo.size, plain)
        row[f"halo_{name}"] = edge_halo(composite(photo, mask, flat, request, cut=cut), flat, halo_band(truth))
        row[f"halo_{name}_raw"] = edge_halo(Image.composite(photo, flat, raw), flat, halo_band(truth))
        row[f"halo_{name}_truth"] = edge_halo(reference_composite(photo, truth, flat, fg), flat, halo_band(truth))
    for measure in ("halo", "edge"):  # 1 when the default beats both baselines on this photo
        row[f"{measure}_beats"] = int(all(row[f"{measure}_default"] < row[f"{measure}_{b}"] for b in BASELINES))
    row["iou_lost"] = int(row["iou"] < row["iou_raw"] - IOU_SLACK)
    return row


METRICS = ("iou", "iou_raw", "sad", "mse", "grad", "ghost", "ghost_raw", "ghost_truth", "seconds", "segment_s", "refine_s",
           "composite_s", "fg_maxdiff", "halo_truth") + tuple(f"{m}_{c}" for m in ("halo", "edge") for c in COMPOSITES) + tuple(
    f"halo_{p}{c}" for p in PLAIN for c in ("", "_raw", "_truth"))
COUNTS = ("halo_beats", "edge_beats", "iou_lost")  # summed over images, not averaged


def evaluate(folder: Path, segmenters: list[str] | None = None, refine: str = "both") -> dict:
    """Per-image rows and, per (segmenter, refine), the mean of each metric (max for
    fg_maxdiff and refine_s: one changed opaque pixel, or one slow photo, is a failure; and
    how many photos the default beats both baselines on)."""
    samples = find_samples(Path(folder))
    segmenters = segmenters or available_segmenters()
    if not segmenters:
        raise InputError(f"no segmenter weights installed: run `{fetch_command()} u2netp`")
    modes = {"off": [False], "on": [True], "both": [False, True]}[refine]
    rows = []
    for seg in segmenters:
        for r in modes:
            _warm_up(seg, r)
            rows.extend(evaluate_sample(s, seg, r) for s in samples)
    overall = []
    for seg in segmenters:
        for r in modes:
            group = [row for row in rows if row["segmenter"] == seg and row["refine"] == r]
            summary = {"image": "all", "segmenter": seg, "refine": r, "images": len(group)}
            for key in METRICS:
                values = [row[key] for row in group]
                summary[key] = max(values) if key == "fg_maxdiff" else float(np.mean(values))
            summary["refine_s_max"] = max(row["refine_s"] for row in group)
            for key in COUNTS:
                summary[key] = sum(row[key] for row in group)
            overall.append(summary)
    return {"folder": str(folder), "images": rows, "overall": overall}


_COLUMNS = (
    ("image", "{}"), ("segmenter", "{}"), ("refine", "{}"),
    ("iou", "{:.4f}"), ("iou_raw", "{:.4f}"), ("sad", "{:.2f}"), ("grad", "{:.1f}"),
    ("ghost", "{:.3f}"), ("ghost_raw", "{:.3f}"), ("ghost_truth", "{:.3f}"),
    ("seconds", "{:.2f}"), ("refine_s", "{:.2f}"), ("fg_maxdiff", "{}"),
    ("halo_default", "{:.1f}"), ("halo_raw", "{:.1f}"), ("halo_hard", "{:.1f}"), ("halo_truth", "{:.1f}"),
    ("edge_default", "{:.1f}"), ("edge_raw", "{:.1f}"), ("edge_hard", "{:.1f}"), ("edge_nospill", "{:.1f}"),
    ("halo_white", "{:.1f}"), ("halo_white_raw", "{:.1f}"), ("halo_white_truth", "{:.1f}"),
    ("halo_black", "{:.1f}"), ("halo_black_raw", "{:.1f}"), ("halo_black_truth", "{:.1f}"),
)


def format_table(report: dict) -> str:
    """Per-image rows, then the overall means, one column per metric."""
    widths = [max(len(name), 8) for name, _ in _COLUMNS]
    lines = []
    for title, rows in (("per image", report["images"]), ("overall (mean over images)", report["overall"])):
        lines += [title, "  ".join(name.rjust(w) for (name, _), w in zip(_COLUMNS, widths))]
        for row in rows:
            cells = [fmt.format("on" if name == "refine" and row[name] else "off" if name == "refine" else row[name]) for name, fmt in _COLUMNS]
            lines.append("  ".join(c.rjust(w) for c, w in zip(cells, widths)))
        lines.append("")
    for row in report["overall"]:
        lines.append(f"{row['segmenter']}, refine {'on' if row['refine'] else 'off'}: the default beats both the raw "
                     f"mask and a hard cut-out on halo in {row['halo_beats']} of {row['images']} photos, on edge error "
                     f"in {row['edge_beats']}; IoU more than {IOU_SLACK} below the raw mask's in {row['iou_lost']} "
                     f"(mean {row['iou']:.4f} against {row['iou_raw']:.4f}); slowest refinement {row['refine_s_max']:.2f} s")
    lines += [
        "",
        "iou at alpha 0.5 (iou_raw: the model's raw mask, the clean-up's baseline); sad = sum |alpha - truth| / 1000; grad = gradient error in the edge band;",
        "ghost = share of the visible mask that is see-through (alpha 0.05-0.95) farther than a few px from its",
        "50% contour (ghost_raw: the model's raw mask; ghost_truth: the true matte, e.g. fur);",
        "seconds = segment + refine + composite per image (warm); fg_maxdiff must be 0;",
        "halo = mean RGB distance to the new background in 4 px just outside the true subject (lower = less",
        "fringe; halo_truth = the same for a reference composite from the true alpha: the floor hair allows);",
        "edge = mean RGB distance to that reference composite in the edge band (10 px each side);",
        "default = the product (cleaned soft alpha, spill removal); raw = the model's raw mask pasted softly;",
        "hard = binary cut-out of the raw mask at 0.5; nospill = the default without spill removal;",
        "halo_white / halo_black = the default's halo over plain white / black (_raw: the raw mask; _truth: the floor).",
    ]
    return "\n".join(lines)

