"""Framing benchmark: what putting a 12 MP photo on a canvas costs a whole non-AI generation.

``core.pipeline.run`` on a 4000x3000 photo with a given mask (the lemur's true matte, enlarged:
no segmentation, so the framing's share shows), a colour background with spill removal, against
the same run at the photo's own size (the identity framing) in the same process, alternating:
the marketplace square (2000x2000, the subject scaled and resampled once with Lanczos),
widening to 16:9 at the photo's own scale (5333x3000: the photo copied, new area filled), and
the blurred original on a 1920x1080 banner (the blur placed and mirrored). The framing stage
alone is timed too (``timings["frame"]``).

Usage: ``python bench/framing_bench.py`` (``--repeats N``, default 5). Writes
bench/results/framing-<date>.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from PIL import Image, ImageOps  # noqa: E402

from cpu_bench import load_average, timed_pair  # noqa: E402

MATTE = ROOT / "tests" / "data" / "lemur" / "lemur_alpha_fba.png"
PHOTO = ROOT / "tests" / "data" / "lemur" / "lemur.png"
CASES = {
    "marketplace-square": {"canvas": "2000x2000", "fill": 0.85},
    "widen-16-9": {"canvas": "16:9"},
    "banner-blur": {"canvas": "1920x1080", "fill": 0.8, "anchor": "0.3,0.5", "background": "blur"},
}


def main(argv: list[str] | None = None) -> int:
    from core.pipeline import run
    from core.request import GenerationRequest

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    size = (4000, 3000)
    photo = ImageOps.fit(Image.open(PHOTO).convert("RGB"), size, Image.Resampling.BICUBIC)
    alpha = ImageOps.fit(Image.open(MATTE).convert("L"), size, Image.Resampling.BICUBIC)
    load_before = load_average()
    results = {}
    for name, fields in CASES.items():
        base = GenerationRequest(background=fields.get("background", "color:#ffffff"))
        framed = base.replace(**{k: v for k, v in fields.items() if k != "background"})
        frames: list[float] = []

        def product(request=framed, seconds=frames):
            result = run(photo, request, mask=alpha)
            seconds.append(result.timings["frame"])
            return result

        mine, baseline = timed_pair(product, lambda request=base: run(photo, request, mask=alpha), args.repeats)
        out = product()
        results[name] = {"framed": mine, "photo_size": baseline, "ratio": round(mine["median_s"] / baseline["median_s"], 2),
                         "frame_stage_median_s": round(statistics.median(frames), 4),
                         "canvas": list(out.images[0].size), "subject_scale": out.record.get("subject_scale")}
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "load_average_before": load_before, "load_average_after": load_average()},
        "photo": list(size), "cases": results,
    }
    out_path = args.out or ROOT / "bench" / "results" / f"framing-{datetime.now():%Y%m%d-%H%M}.json"
    out_path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"12 MP photo, mask given, load {load_before} -> {result['machine']['load_average_after']}")
    for name, r in results.items():
        print(f"{name:20s} canvas {r['canvas'][0]}x{r['canvas'][1]}: {r['framed']['median_s']:.2f} s, at the photo's "
              f"size {r['photo_size']['median_s']:.2f} s ({r['ratio']}x); the framing stage {r['frame_stage_median_s']:.3f} s")
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
