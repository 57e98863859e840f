"""The README's before/after pictures of the size presets, made by the product itself.

    .venv/bin/python scripts/framing_examples.py [docs/framing]

Each size preset (core.look.framing.SIZE_PRESETS) runs once through core.pipeline.run on a photo
of the synthetic test set (core/quality/testset.py, built here from scikit-image's photos and
the lemur in tests/data) with the set's exact mask given as the user's own (as ``replace
--mask`` gives it: the pictures show the framing, not the cut-out model's mistakes) and a
background that suits it; the photo and the result are fitted side by side into one small JPEG
per preset. Nothing is drawn by hand: run it again after a change and the pictures follow.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.look.framing import SIZE_PRESETS, with_size_preset  # noqa: E402
from core.pipeline import run  # noqa: E402
from core.quality.testset import build  # noqa: E402
from core.request import GenerationRequest  # noqa: E402

# preset -> (sample of the synthetic set, the background and look it is shown with)
EXAMPLES = {
    "marketplace-square": ("espresso_ihc", {}),
    "square-post": ("plush_dark", {"background": "gradient:#f4efe6,#d9cbb3", "contact_shadow": 0.5}),
    "feed-portrait": ("lemur_gravel", {"background": "gradient:#e8eef5,#aab8c8", "contact_shadow": 0.6}),
    "story": ("bangle_hubble", {"background": "gradient:#1d2433,#4a5a78"}),
    "banner": ("lemur_gradient", {"background": "gradient:#20242c,#5a6b82", "contact_shadow": 0.5}),
    "widen-16-9": ("lemur_frame", {"background": "blur"}),
}
HEIGHT = 240  # px: each picture's height in the README
GAP = 16
PAPER = (250, 250, 250)
INK = (60, 64, 72)


def side_by_side(before: Image.Image, after: Image.Image) -> Image.Image:
    """``before`` and ``after`` at HEIGHT px high with an arrow between them, outlined (so a
    white result shows its canvas)."""
    fitted = [image.resize((round(image.width * HEIGHT / image.height), HEIGHT), Image.Resampling.LANCZOS)
              for image in (before, after)]
    width = fitted[0].width + fitted[1].width + 3 * GAP + 40
    out = Image.new("RGB", (width, HEIGHT + 2 * GAP), PAPER)
    draw = ImageDraw.Draw(out)
    x = GAP
    for i, image in enumerate(fitted):
        out.paste(image, (x, GAP))
        draw.rectangle([x - 1, GAP - 1, x + image.width, GAP + HEIGHT], outline=INK)
        x += image.width + GAP
        if i == 0:
            mid = GAP + HEIGHT // 2
            draw.line([(x + 4, mid), (x + 32, mid)], fill=INK, width=3)
            draw.polygon([(x + 36, mid), (x + 26, mid - 7), (x + 26, mid + 7)], fill=INK)
            x += 40
    return out


def main(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory() as scratch:
        samples = sorted({sample for sample, _ in EXAMPLES.values()})
        build(Path(scratch), names=samples)
        for name, (sample, look) in EXAMPLES.items():
            photo = Image.open(Path(scratch) / f"{sample}.png").convert("RGB")
            mask = Image.open(Path(scratch) / f"{sample}_alpha.png")
            request = GenerationRequest(**with_size_preset(look, name))
            result = run(photo, request, mask=mask)
            path = folder / f"{name}.jpg"
            side_by_side(photo, result.images[0].convert("RGB")).save(path, quality=85, optimize=True)
            written.append(path)
            canvas = result.images[0].size
            print(f"{path}: {SIZE_PRESETS[name].label}, {photo.width}x{photo.height} -> {canvas[0]}x{canvas[1]}")
    return written


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "framing")
