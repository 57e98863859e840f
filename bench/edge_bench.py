"""Edge benchmark: what the mask clean-up costs, and edge refinement on every photo the tests use.

(1) The automatic mask's clean-up (core.masks.segment: remap, unsure regions, guided filter, band)
    at 1024x768 and 4000x3000, against the model call itself (u2netp) in the same run.
(2) ``core.masks.matting.refine_alpha`` (the product's bounded refinement: its promise is at most
    2 s on 2 cores for any photo) on the synthetic set, the lemur, scikit-image's astronaut,
    coffee, chelsea and rocket, and the lemur at 4000x3000, against pymatting's
    ``estimate_alpha_cf`` with its defaults on the same trimap at the same solve size.

Usage: ``python bench/edge_bench.py`` (``--repeats N``, default 3).
Writes bench/results/edges-<date>.json and prints a table.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import tempfile
from contextlib import redirect_stdout
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from cpu_bench import load_average, make_photo, timed_pair  # noqa: E402


def test_photos(folder: Path) -> dict[str, Image.Image]:
    from skimage import data

    from core.quality.testset import build

    photos = {p.stem: Image.open(p).convert("RGB") for p in build(folder)}
    photos["lemur"] = Image.open(ROOT / "tests" / "data" / "lemur" / "lemur.png").convert("RGB")
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        photos[name] = Image.fromarray(getattr(data, name)()).convert("RGB")
    photos["lemur_4000x3000"] = make_photo((4000, 3000))
    return photos


def cleanup_costs(repeats: int) -> dict:
    from core.masks import segment

    out = {}
    for size in ((1024, 768), (4000, 3000)):
        photo = make_photo(size)
        small, _ = segment._model_input(photo, "u2netp")
        raw = segment._predict(small, "u2netp")
        product, baseline = timed_pair(lambda: segment._clean(small, raw, photo.size, {}),
                                       lambda: segment._predict(small, "u2netp"), repeats)
        out[f"{size[0]}x{size[1]}"] = {"cleanup": product, "model": baseline,
                                       "ratio": product["median_s"] / baseline["median_s"]}
    return out


def pymatting_default(photo: Image.Image, mask: Image.Image) -> None:
    """The baseline: pymatting's estimate_alpha_cf, its defaults, on the product's trimap at
    the product's solve size (whole image, no crop, no deadline)."""
    from pymatting import estimate_alpha_cf

    from core.masks import matting

    scale = min(1.0, matting.MAX_SOLVE_SIDE / max(photo.size))
    size = (round(photo.width * scale), round(photo.height * scale))
    radius = int(np.clip(round(matting.BAND_FRACTION * max(size)), matting.MIN_BAND, matting.MAX_BAND))
    trimap = matting.build_trimap(np.asarray(mask.resize(size), dtype=np.float64) / 255.0, radius)
    with redirect_stdout(io.StringIO()):
        estimate_alpha_cf(np.asarray(photo.resize(size), dtype=np.float64) / 255.0, trimap)


def refine_costs(photos: dict[str, Image.Image], repeats: int) -> dict:
    from core.masks.matting import refine_alpha
    from core.masks.segment import automatic_mask

    out = {}
    for name, photo in photos.items():
        mask = automatic_mask(photo)
        warnings: list[str] = []
        product, baseline = timed_pair(lambda: refine_alpha(photo, mask, warnings=warnings),
                                       lambda: pymatting_default(photo, mask), repeats)
        out[name] = {"size": list(photo.size), "refine": product, "pymatting_default": baseline,
                     "ratio": product["median_s"] / baseline["median_s"], "fallbacks": sorted(set(warnings))}
        print(f"{name:18s} {photo.width}x{photo.height:<5d} refine {product['median_s']:.2f} s "
              f"(max {product['max_s']:.2f})  pymatting {baseline['median_s']:.2f} s", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    import pymatting

    report: dict = {
        "label": "edges", "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "cpu": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
        "versions": {"python": platform.python_version(), "pymatting": pymatting.__version__, "numpy": np.__version__},
        "repeats": args.repeats, "load_average_start": load_average(),
    }
    report["cleanup"] = cleanup_costs(args.repeats * 2 + 1)
    for size, row in report["cleanup"].items():
        print(f"mask clean-up {size}: {row['cleanup']['median_s']:.3f} s, u2netp {row['model']['median_s']:.3f} s "
              f"(ratio {row['ratio']:.2f})", flush=True)
    with tempfile.TemporaryDirectory(prefix="edge-bench-") as tmp:
        report["refine"] = refine_costs(test_photos(Path(tmp)), args.repeats)
    report["load_average_end"] = load_average()
    slowest = max(report["refine"].items(), key=lambda item: item[1]["refine"]["max_s"])
    report["refine_max_s"] = slowest[1]["refine"]["max_s"]
    report["refine_median_of_medians_s"] = statistics.median(r["refine"]["median_s"] for r in report["refine"].values())
    report["baseline_median_of_medians_s"] = statistics.median(r["pymatting_default"]["median_s"] for r in report["refine"].values())
    report["fallbacks"] = {name: r["fallbacks"] for name, r in report["refine"].items() if r["fallbacks"]}
    print(f"refine: slowest run {report['refine_max_s']:.2f} s ({slowest[0]}); median photo "
          f"{report['refine_median_of_medians_s']:.2f} s vs pymatting's defaults {report['baseline_median_of_medians_s']:.2f} s; "
          f"fallbacks: {report['fallbacks'] or 'none'}; load {report['load_average_start']} -> {report['load_average_end']}")
    out_path = args.out or ROOT / "bench" / "results" / f"edges-{datetime.now(timezone.utc):%Y%m%d-%H%M}.json"
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out_path.relative_to(ROOT) if out_path.is_relative_to(ROOT) else out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
