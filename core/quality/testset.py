"""A synthetic quality test set whose truth is known exactly: ``backdrop testset DIR``.

Real photos need hand-made alpha mattes, which are rare. Here known cut-outs (the lemur with
its matte, and subjects made from scikit-image's photos with masks drawn in code) are
composited onto varied and confusing backgrounds: colours close to the subject's, busy
textures, and objects behind the subject (a picture frame, a wall clock), the cases where
the automatic mask fails on real photos. Each photo is exactly ``alpha * F + (1 - alpha) * B``
with the 8-bit alpha written beside it, so ``backdrop eval DIR`` measures against the
truth, not an estimate. Everything is generated deterministically: nothing is committed but
this code, and the set grows by adding a subject, a background or a line to ``SAMPLES``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from scipy import ndimage as ndi

from core.errors import InputError

CANVAS = (640, 480)
SUPERSAMPLE = 4  # shapes are drawn this much larger, then box-reduced: alpha = exact coverage
LEMUR_DIR = Path(__file__).resolve().parents[2] / "tests" / "data" / "lemur"


@dataclass
class Cutout:
    rgb: np.ndarray  # float HxWx3, 0..255: the subject's own (spill-free) colours
    alpha: np.ndarray  # float HxW, 0..1


# ---- helpers ------------------------------------------------------------------------------


def _skimage(name: str) -> np.ndarray:
    from skimage import data

    image = getattr(data, name)()
    return np.dstack([image] * 3) if image.ndim == 2 else image[..., :3]


def _cover(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``image`` scaled and centre-cropped to fill ``size`` (w, h), as float."""
    pil = Image.fromarray(np.asarray(image, dtype=np.uint8))
    w, h = size
    scale = max(w / pil.width, h / pil.height)
    pil = pil.resize((max(w, round(pil.width * scale)), max(h, round(pil.height * scale))), Image.Resampling.LANCZOS)
    left, top = (pil.width - w) // 2, (pil.height - h) // 2
    return np.asarray(pil.crop((left, top, left + w, top + h)), dtype=np.float64)


def _tint(gray: np.ndarray, color: tuple[int, int, int], contrast: float = 0.5) -> np.ndarray:
    """A grey texture recoloured around ``color`` (its mean), keeping ``contrast`` of its detail."""
    g = np.asarray(gray, dtype=np.float64)
    g = g.mean(-1) if g.ndim == 3 else g
    detail = (g - g.mean()) / max(g.std(), 1e-6)
    return np.clip(np.array(color, dtype=np.float64) + detail[..., None] * 40.0 * contrast, 0, 255)


def _coverage(draw: Callable[[ImageDraw.ImageDraw, int], None], size: tuple[int, int]) -> np.ndarray:
    """Alpha (0..1) of shapes drawn by ``draw(canvas, scale)`` at SUPERSAMPLE x: the exact
    share of each pixel they cover (to 1/16), so edges are anti-aliased like a real photo's."""
    big = Image.new("L", (size[0] * SUPERSAMPLE, size[1] * SUPERSAMPLE), 0)
    draw(ImageDraw.Draw(big), SUPERSAMPLE)
    return np.asarray(big.reduce(SUPERSAMPLE), dtype=np.float64) / 255.0


def _shade(h: int, w: int, strength: float = 0.25) -> np.ndarray:
    """Soft light from the upper left: a multiplier around 1, so flat fills look lit."""
    yy, xx = np.mgrid[:h, :w]
    return (1.0 + strength * (0.5 - (xx / max(w - 1, 1) + yy / max(h - 1, 1)) / 2))[..., None]


def _ellipses(*boxes: tuple[float, float, float, float]) -> Callable[[ImageDraw.ImageDraw, int], None]:
    """A ``_coverage`` drawing of filled ellipses, each in a box (x0, y0, x1, y1) of subject px."""
    def draw(canvas: ImageDraw.ImageDraw, s: int) -> None:
        for box in boxes:
            canvas.ellipse([v * s for v in box], fill=255)

    return draw


def _leaf(draw: ImageDraw.ImageDraw, s: int, tip, size: float, angle: float, width: float = 0.38) -> None:
    """A pointed leaf ``size`` px long ending at ``tip``, pointing along ``angle``."""
    along, across = np.array([np.cos(angle), np.sin(angle)]), np.array([-np.sin(angle), np.cos(angle)])
    t = np.linspace(0, np.pi, 24)
    outline = [np.array(tip) + along * size * (np.cos(u) - 1) + across * size * width * np.sin(u) * side
               for side in (1, -1) for u in (t if side == 1 else t[::-1])]
    draw.polygon([(float(x) * s, float(y) * s) for x, y in outline], fill=255)


def _edge_points(alpha: np.ndarray, count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``count`` random points (x, y) on the outline of ``alpha`` and their outward normals."""
    inside = alpha >= 0.5
    ys, xs = np.nonzero(inside & ~ndi.binary_erosion(inside))
    pick = rng.choice(len(xs), size=count, replace=len(xs) < count)
    gy, gx = np.gradient(ndi.gaussian_filter(inside.astype(np.float64), 4.0))
    normals = -np.stack([gx[ys[pick], xs[pick]], gy[ys[pick], xs[pick]]], axis=-1)
    normals /= np.maximum(np.linalg.norm(normals, axis=-1, keepdims=True), 1e-9)
    return np.stack([xs[pick], ys[pick]], axis=-1).astype(np.float64), normals


def _hair(roots: np.ndarray, directions: np.ndarray, rng: np.random.Generator, length: tuple[float, float],
          width: float, curl: float = 0.4) -> list[tuple[list[tuple[float, float]], float]]:
    """Strands of hair: from each root a gently curving polyline leaning along its direction,
    ``length`` (shortest, longest) px long; (points, width) in subject pixels."""
    strands = []
    for (x, y), (dx, dy) in zip(roots, directions):
        step = rng.uniform(*length) / 6
        angle, bend = np.arctan2(dy, dx) + rng.normal(0, 0.3), rng.normal(0, curl) / 6
        points = [(x, y)]
        for _ in range(6):
            x, y = x + np.cos(angle) * step, y + np.sin(angle) * step
            angle += bend
            points.append((x, y))
        strands.append((points, width * rng.uniform(0.7, 1.3)))
    return strands


def _draw_strands(strands, size: tuple[int, int], shade: np.random.Generator | None = None) -> np.ndarray:
    """The strands' exact coverage (alpha, 0..1) at ``size``; with ``shade``, a brightness map
    instead (each strand a random grey, 0..1, 0.5 where none), the fur's streaky texture."""
    if shade is None:
        def draw_all(draw, s):
            for points, w in strands:
                draw.line([(x * s, y * s) for x, y in points], fill=255, width=max(1, round(w * s)))

        return _coverage(draw_all, size)
    image = Image.new("L", size, 128)
    draw = ImageDraw.Draw(image)
    for points, w in strands:
        draw.line(points, fill=int(shade.integers(70, 200)), width=max(1, round(w)))
    return np.asarray(image.filter(ImageFilter.GaussianBlur(0.6)), dtype=np.float64) / 255.0


def _fur(body: np.ndarray, color: tuple[int, int, int], rng: np.random.Generator, length: tuple[float, float],
         count: int, width: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """(alpha, rgb) of a furry subject: ``body`` (coverage) with ``count`` strands growing out of
    its outline, and streaky fur of ``color`` over all of it."""
    h, w = body.shape
    roots, normals = _edge_points(body, count, rng)
    roots -= normals * rng.uniform(0, length[0] / 2, (len(roots), 1))  # rooted a little inside the body
    strands = _hair(roots, normals, rng, length, width)
    alpha = np.maximum(body, _draw_strands(strands, (w, h)))
    inner = np.stack([rng.uniform(0, w, count * 2), rng.uniform(0, h, count * 2)], axis=-1)
    down = np.tile([[0.3, 1.0]], (len(inner), 1))  # the coat's hair falls downward
    streaks = _draw_strands(strands + _hair(inner, down, rng, length, width), (w, h), rng)
    rgb = np.clip(np.array(color, dtype=np.float64) * (0.75 + 0.5 * streaks[..., None]), 0, 255)
    return alpha, rgb


# ---- subjects -----------------------------------------------------------------------------


def lemur(folder: Path = LEMUR_DIR) -> Cutout:
    """The CC0 lemur with its matte; its foreground colours estimated once from the photo, so
    the composite carries no green of the original foliage."""
    from pymatting import estimate_foreground_ml

    photo_path, alpha_path = folder / "lemur.png", folder / "lemur_alpha_fba.png"
    if not (photo_path.is_file() and alpha_path.is_file()):
        raise InputError(f"the lemur and its matte are not in {folder} (lemur.png, lemur_alpha_fba.png)")
    photo = np.asarray(Image.open(photo_path).convert("RGB"), dtype=np.float64) / 255.0
    alpha = np.asarray(Image.open(alpha_path).convert("L"), dtype=np.float64) / 255.0
    return Cutout(np.clip(estimate_foreground_ml(photo, alpha), 0, 1) * 255.0, alpha)


def horse() -> Cutout:
    """scikit-image's horse silhouette (smoothed, anti-aliased) in the cat's fur."""
    silhouette = Image.fromarray(np.where(_skimage("horse")[..., 0] > 0, 0, 255).astype(np.uint8))  # horse = white
    w, h = silhouette.size
    big = silhouette.resize((w * SUPERSAMPLE, h * SUPERSAMPLE), Image.Resampling.BILINEAR)
    big = big.filter(ImageFilter.GaussianBlur(SUPERSAMPLE * 1.2)).point(lambda v: 255 if v >= 128 else 0)
    alpha = np.asarray(big.reduce(SUPERSAMPLE), dtype=np.float64) / 255.0
    return Cutout(_cover(_skimage("chelsea"), (w, h)) * _shade(h, w), alpha)


def potted_plant(seed: int = 1) -> Cutout:
    """A terracotta pot with thin green stems and leaves: thin parts a mask easily misses."""
    w, h = 300, 420
    rng = np.random.default_rng(seed)
    leaves = []
    for _ in range(9):
        angle = rng.uniform(-1.1, 1.1)
        length = rng.uniform(120, 230)
        tip = (150 + length * np.sin(angle), 250 - length * np.cos(angle))
        leaves.append(((150, 250), tip, rng.uniform(22, 34), np.arctan2(tip[1] - 250, tip[0] - 150)))

    def stems(draw, s):
        for base, tip, _, _ in leaves:
            draw.line([(base[0] * s, base[1] * s), (tip[0] * s, tip[1] * s)], fill=255, width=3 * s)

    def leaf_shapes(draw, s):
        for _, tip, size, angle in leaves:
            _leaf(draw, s, tip, size, angle)

    def pot(draw, s):
        draw.polygon([(85 * s, 250 * s), (215 * s, 250 * s), (195 * s, 410 * s), (105 * s, 410 * s)], fill=255)
        draw.rectangle([78 * s, 244 * s, 222 * s, 272 * s], fill=255)

    green = _tint(_cover(_skimage("grass"), (w, h)), (70, 130, 50), 0.8)
    clay = _tint(_cover(_skimage("brick"), (w, h)), (180, 95, 60), 0.4)
    a_pot, a_green = _coverage(pot, (w, h)), np.maximum(_coverage(stems, (w, h)), _coverage(leaf_shapes, (w, h)))
    alpha = np.maximum(a_pot, a_green)
    # the pot in front of the stems' base; colours weighted where they meet
    weight = np.where(alpha > 0, a_pot / np.maximum(alpha, 1e-6), 0)[..., None]
    return Cutout((weight * clay + (1 - weight) * green) * _shade(h, w), alpha)


def bangle() -> Cutout:
    """A metal ring: the background shows through its hole."""
    w = h = 260

    def ring(draw, s):
        draw.ellipse([8 * s, 8 * s, 252 * s, 252 * s], fill=255)
        draw.ellipse([62 * s, 62 * s, 198 * s, 198 * s], fill=0)

    return Cutout(_tint(_cover(_skimage("coins"), (w, h)), (190, 185, 170), 1.0) * _shade(h, w, 0.4), _coverage(ring, (w, h)))


def plush(seed: int = 2) -> Cutout:
    """A dark teddy bear in a navy sweater with a fuzzy edge (soft over ~6 px): the dark,
    soft subject a mask drops or leaves half transparent."""
    w, h = 320, 400

    body = _ellipses((95, 20, 225, 150), (80, 10, 130, 60), (190, 10, 240, 60),  # head, ears
                     (70, 140, 250, 370), (30, 170, 110, 280), (210, 170, 290, 280),  # body, arms
                     (80, 320, 160, 395), (160, 320, 240, 395))  # feet
    hard = _coverage(body, (w, h))
    fuzz = np.random.default_rng(seed).normal(0, 1, (h, w))
    soft = Image.fromarray(np.round(hard * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(2.5))
    alpha = np.clip(np.asarray(soft, dtype=np.float64) / 255.0 + 0.08 * fuzz * (np.asarray(soft) > 0) * (np.asarray(soft) < 255), 0, 1)
    fur = _tint(_cover(_skimage("gravel"), (w, h)), (70, 52, 40), 0.6)
    knit = _tint(_cover(_skimage("brick"), (w, h)), (35, 45, 80), 0.5)
    s = _coverage(_ellipses((70, 140, 250, 370)), (w, h))[..., None]
    return Cutout((s * knit + (1 - s) * fur) * _shade(h, w), alpha)


def shaggy_plush(seed: int = 4) -> Cutout:
    """A dark brown long-haired toy: a round body under strands up to 40 px long that stand out
    from it, so its whole outline is see-through hair (u2netp is half sure of most of it)."""
    w, h = 360, 440

    body = _ellipses((110, 40, 250, 170), (92, 30, 140, 78), (220, 30, 268, 78),  # head, ears
                     (80, 150, 280, 400), (50, 190, 120, 300), (240, 190, 310, 300),  # body, arms
                     (95, 350, 175, 425), (185, 350, 265, 425))  # feet
    rng = np.random.default_rng(seed)
    alpha, rgb = _fur(_coverage(body, (w, h)), (70, 60, 50), rng, (14, 40), 2600, 1.1)
    eyes = _coverage(_ellipses((148, 90, 164, 106), (196, 90, 212, 106)), (w, h))
    return Cutout((rgb * (1 - eyes[..., None]) + 25 * eyes[..., None]) * _shade(h, w, 0.2), alpha)


def leafy_plant(seed: int = 5) -> Cutout:
    """A bushy plant: pale sage leaves on thin stems in a loose crown, with background showing
    through the gaps between them, over a terracotta pot."""
    w, h = 400, 440
    rng = np.random.default_rng(seed)
    base = np.array([200.0, 330.0])
    twigs, leaves = [], []
    for _ in range(10):
        angle = rng.uniform(-2.6, -0.5)
        length = rng.uniform(150, 240)
        tip = base + length * np.array([np.cos(angle), np.sin(angle)])
        twigs.append((base, tip))
        for t in np.linspace(0.3, 1.0, 6):
            at = base + t * (tip - base)
            direction = angle + rng.choice([-1, 1]) * rng.uniform(0.5, 1.2)
            size = rng.uniform(14, 28)
            leaves.append((at + size * np.array([np.cos(direction), np.sin(direction)]), size, direction))

    def stems(draw, s):
        for a, b in twigs:
            draw.line([(a[0] * s, a[1] * s), (b[0] * s, b[1] * s)], fill=255, width=round(2.5 * s))

    def foliage(draw, s):
        for tip, size, angle in leaves:
            _leaf(draw, s, tip, size, angle, 0.42)

    def pot(draw, s):
        draw.polygon([(150 * s, 325 * s), (250 * s, 325 * s), (235 * s, 435 * s), (165 * s, 435 * s)], fill=255)

    a_pot = _coverage(pot, (w, h))
    a_green = np.maximum(_coverage(stems, (w, h)), _coverage(foliage, (w, h)))
    alpha = np.maximum(a_pot, a_green)
    green = _tint(_cover(_skimage("grass"), (w, h)), (150, 170, 110), 0.9)
    clay = _tint(_cover(_skimage("gravel"), (w, h)), (175, 90, 60), 0.3)
    weight = np.where(alpha > 0, a_pot / np.maximum(alpha, 1e-6), 0)[..., None]
    return Cutout((weight * clay + (1 - weight) * green) * _shade(h, w), alpha)


def fur_collar(seed: int = 6) -> Cutout:
    """A burgundy wool coat on a headless form with a wide tan fur collar: long, light,
    see-through fur around the neck, above and beside the coat's hard shoulders."""
    w, h = 380, 420
    rng = np.random.default_rng(seed)

    def coat(draw, s):
        outline = ((120, 120), (260, 120), (345, 175), (365, 420), (15, 420), (35, 175))
        draw.polygon([(x * s, y * s) for x, y in outline], fill=255)

    def collar(draw, s):
        draw.ellipse([95 * s, 70 * s, 285 * s, 185 * s], fill=255)

    a_coat = _coverage(coat, (w, h))
    a_fur, hair = _fur(_coverage(collar, (w, h)), (190, 160, 120), rng, (16, 42), 2200, 1.0)
    wool = _tint(_cover(_skimage("brick"), (w, h)), (120, 40, 40), 0.35)
    alpha = np.maximum(a_coat, a_fur)
    weight = np.where(alpha > 0, a_fur / np.maximum(alpha, 1e-6), 0)[..., None]  # the collar lies over the coat
    return Cutout((weight * hair + (1 - weight) * wool) * _shade(h, w), alpha)


def tree(seed: int = 7) -> Cutout:
    """A tree: a trunk, branches and a crown of small dark leaves in loose clumps, with sky
    between the clumps and between the leaves of each."""
    w, h = 440, 460
    rng = np.random.default_rng(seed)
    clumps = [(220 + 170 * r * np.cos(t), 175 + 130 * r * np.sin(t), rng.uniform(22, 40))
              for t, r in zip(rng.uniform(0, 2 * np.pi, 46), np.sqrt(rng.uniform(0.05, 1.0, 46)))]

    def wood(draw, s):
        draw.polygon([(v[0] * s, v[1] * s) for v in ((196, 455), (244, 455), (232, 250), (208, 250))], fill=255)
        for x, y, _ in clumps:
            draw.line([(220 * s, 300 * s), (x * s, y * s)], fill=255, width=round(2 * s))

    def leaves(draw, s):
        for x, y, radius in clumps:
            for _ in range(int(radius / 2)):
                r, t = radius * np.sqrt(rng.uniform()), rng.uniform(0, 2 * np.pi)
                size, angle = rng.uniform(6, 11), rng.uniform(0, 2 * np.pi)
                _leaf(draw, s, (x + r * np.cos(t), y + r * np.sin(t)), size, angle, 0.5)

    a_wood, a_leaves = _coverage(wood, (w, h)), _coverage(leaves, (w, h))
    alpha = np.maximum(a_wood, a_leaves)
    bark = _tint(_cover(_skimage("gravel"), (w, h)), (90, 70, 50), 0.6)
    green = _tint(_cover(_skimage("grass"), (w, h)), (25, 45, 25), 1.0)
    weight = np.where(alpha > 0, a_leaves / np.maximum(alpha, 1e-6), 0)[..., None]  # leaves in front of branches
    return Cutout((weight * green + (1 - weight) * bark) * _shade(h, w, 0.35), alpha)


def espresso() -> Cutout:
    """scikit-image's espresso cup on its saucer, cut along two ellipses (saucer and cup
    rim): a glossy product with hard edges."""
    photo = _skimage("coffee").astype(np.float64)
    h, w = photo.shape[:2]

    def cup(draw, s):
        draw.ellipse([86 * s, 86 * s, 472 * s, 380 * s], fill=255)  # saucer, inside its rim
        draw.ellipse([176 * s, 18 * s, 406 * s, 210 * s], fill=255)  # cup

    return Cutout(photo, _coverage(cup, (w, h)))


# ---- backgrounds --------------------------------------------------------------------------


def gradient(top: tuple[int, int, int], bottom: tuple[int, int, int]) -> Callable[[tuple[int, int]], np.ndarray]:
    def make(size):
        t = np.linspace(0, 1, size[1])[:, None, None]
        return np.broadcast_to((1 - t) * np.array(top) + t * np.array(bottom), (size[1], size[0], 3)).astype(np.float64)

    return make


def texture(name: str, color: tuple[int, int, int] | None = None, contrast: float = 0.7):
    """A scikit-image photo filling the canvas, or a grey one tinted around ``color``."""
    def make(size):
        image = _cover(_skimage(name), size)
        return image if color is None else _tint(image, color, contrast)

    return make


def with_frame(base, box: tuple[float, float, float, float], picture: str):
    """``base`` with a framed picture hanging on it; ``box`` in canvas fractions."""
    def make(size):
        image = base(size).copy()
        x0, y0, x1, y1 = (round(v * n) for v, n in zip(box, (*size, *size)))
        image[y0:y1, x0:x1] = (92, 60, 35)  # wooden frame
        b = max(6, (x1 - x0) // 12)
        image[y0 + b:y1 - b, x0 + b:x1 - b] = _cover(_skimage(picture), (x1 - x0 - 2 * b, y1 - y0 - 2 * b))
        return image

    return make


def with_clock(base, centre: tuple[float, float], radius: float):
    """``base`` with a wall clock (white face, dark rim, ticks, hands); canvas fractions."""
    def make(size):
        pil = Image.fromarray(np.round(base(size)).astype(np.uint8))
        draw = ImageDraw.Draw(pil)
        cx, cy, r = centre[0] * size[0], centre[1] * size[1], radius * size[1]
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(30, 30, 30))
        draw.ellipse([cx - 0.9 * r, cy - 0.9 * r, cx + 0.9 * r, cy + 0.9 * r], fill=(240, 238, 230))
        for hour in range(12):
            a = hour * np.pi / 6
            draw.line([(cx + 0.75 * r * np.sin(a), cy - 0.75 * r * np.cos(a)), (cx + 0.85 * r * np.sin(a), cy - 0.85 * r * np.cos(a))],
                      fill=(30, 30, 30), width=max(2, round(r / 25)))
        draw.line([(cx, cy), (cx + 0.45 * r, cy - 0.2 * r)], fill=(20, 20, 20), width=max(3, round(r / 14)))
        draw.line([(cx, cy), (cx - 0.1 * r, cy - 0.7 * r)], fill=(20, 20, 20), width=max(2, round(r / 20)))
        return np.asarray(pil, dtype=np.float64)

    return make


# ---- the set ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    name: str
    subject: str  # a key of SUBJECTS
    background: Callable[[tuple[int, int]], np.ndarray]
    place: tuple[float, float, float] = (0.5, 1.0, 0.85)  # centre x, bottom y, height (canvas fractions)
    why: str = ""


SUBJECTS: dict[str, Callable[..., Cutout]] = {
    "lemur": lemur, "horse": horse, "plant": potted_plant, "bangle": bangle, "plush": plush, "espresso": espresso,
    "shaggy": shaggy_plush, "bush": leafy_plant, "collar": fur_collar, "tree": tree,
}
WALL = gradient((222, 214, 200), (196, 186, 170))
SKY = gradient((105, 155, 215), (200, 220, 240))
SAMPLES = (
    Sample("lemur_gradient", "lemur", gradient((70, 110, 160), (20, 40, 70)), (0.5, 1.0, 0.9), "easy: plain backdrop"),
    Sample("lemur_gravel", "lemur", texture("gravel", (120, 112, 100)), (0.5, 1.0, 0.9), "similar colours, busy"),
    Sample("lemur_frame", "lemur", with_frame(WALL, (0.05, 0.08, 0.42, 0.6), "astronaut"), (0.6, 1.0, 0.85), "object behind"),
    Sample("horse_grass", "horse", texture("grass", (150, 120, 70)), (0.5, 0.95, 0.75), "similar colours, busy"),
    Sample("horse_clock", "horse", with_clock(WALL, (0.7, 0.3), 0.2), (0.45, 0.98, 0.7), "wall clock behind"),
    Sample("plant_brick", "plant", texture("brick", (165, 85, 65)), (0.5, 1.0, 0.9), "busy, pot like the wall"),
    Sample("plant_frame", "plant", with_frame(WALL, (0.35, 0.05, 0.85, 0.55), "rocket"), (0.45, 1.0, 0.9), "frame behind a plant"),
    Sample("bangle_hubble", "bangle", texture("hubble_deep_field"), (0.5, 0.85, 0.6), "busy; background through the hole"),
    Sample("plush_dark", "plush", gradient((60, 55, 60), (25, 25, 35)), (0.5, 1.0, 0.9), "dark subject, soft edge"),
    Sample("plush_clock", "plush", with_clock(gradient((200, 205, 215), (150, 160, 175)), (0.25, 0.3), 0.18), (0.6, 1.0, 0.85),
           "clock behind a soft subject"),
    Sample("espresso_ihc", "espresso", texture("immunohistochemistry"), (0.5, 0.95, 0.8), "busy, similar browns"),
    Sample("espresso_frame", "espresso", with_frame(WALL, (0.55, 0.04, 0.95, 0.5), "chelsea"), (0.42, 0.98, 0.7), "frame behind"),
    Sample("shaggy_sky", "shaggy", SKY, (0.5, 1.0, 0.9), "long hair, half seen by the model"),
    Sample("bush_grass", "bush", texture("grass", (80, 125, 60), 0.5), (0.5, 1.0, 0.9), "leaves with gaps, on leaves"),
    Sample("collar_studio", "collar", gradient((235, 236, 238), (200, 204, 210)), (0.5, 1.0, 0.9), "light fur on light grey"),
    Sample("tree_sky", "tree", SKY, (0.5, 1.0, 0.9), "dark leaves with sky between"),
)


def compose(cut: Cutout, background: np.ndarray, place: tuple[float, float, float]) -> tuple[Image.Image, Image.Image]:
    """(photo, truth alpha) at the background's size: the cut-out scaled to ``place`` and
    blended with its own 8-bit alpha, so the written matte is the exact truth."""
    bh, bw = background.shape[:2]
    h = round(place[2] * bh)
    w = round(cut.alpha.shape[1] * h / cut.alpha.shape[0])
    rgb = np.asarray(Image.fromarray(np.clip(np.round(cut.rgb), 0, 255).astype(np.uint8)).resize((w, h), Image.Resampling.LANCZOS), dtype=np.float64)
    a8 = np.asarray(Image.fromarray(np.round(cut.alpha * 255).astype(np.uint8)).resize((w, h), Image.Resampling.LANCZOS))
    x0, y1 = round(place[0] * bw - w / 2), round(place[1] * bh)
    y0 = y1 - h
    alpha8 = np.zeros((bh, bw), np.uint8)
    fg = np.zeros((bh, bw, 3))
    # paste with clipping at the canvas border
    sx0, sy0 = max(0, -x0), max(0, -y0)
    dx0, dy0 = max(0, x0), max(0, y0)
    dx1, dy1 = min(bw, x0 + w), min(bh, y0 + h)
    alpha8[dy0:dy1, dx0:dx1] = a8[sy0:sy0 + dy1 - dy0, sx0:sx0 + dx1 - dx0]
    fg[dy0:dy1, dx0:dx1] = rgb[sy0:sy0 + dy1 - dy0, sx0:sx0 + dx1 - dx0]
    a = alpha8.astype(np.float64)[..., None] / 255.0
    photo = np.clip(np.round(a * fg + (1 - a) * background), 0, 255).astype(np.uint8)
    return Image.fromarray(photo, "RGB"), Image.fromarray(alpha8, "L")


def build(folder: Path, lemur_dir: Path = LEMUR_DIR, names: list[str] | None = None) -> list[Path]:
    """Write NAME.png + NAME_alpha.png for every sample (or those in ``names``) into ``folder``."""
    folder = Path(folder)
    unknown = set(names or ()) - {s.name for s in SAMPLES}
    if unknown:
        raise InputError(f"unknown sample(s) {', '.join(sorted(unknown))}: choose from {', '.join(s.name for s in SAMPLES)}")
    folder.mkdir(parents=True, exist_ok=True)
    cutouts: dict[str, Cutout] = {}
    written = []
    for sample in SAMPLES:
        if names and sample.name not in names:
            continue
        if sample.subject not in cutouts:
            cutouts[sample.subject] = lemur(lemur_dir) if sample.subject == "lemur" else SUBJECTS[sample.subject]()
        photo, truth = compose(cutouts[sample.subject], sample.background(CANVAS), sample.place)
        photo.save(folder / f"{sample.name}.png")
        truth.save(folder / f"{sample.name}_alpha.png")
        written.append(folder / f"{sample.name}.png")
    return written
