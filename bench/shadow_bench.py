"""Shadow benchmark: contact and cast shadows at a bounded resolution against full resolution.

``core.look.shadows.apply_shadows`` computes the shadow density on the mask reduced to at most
``SHADOW_SIDE`` px (1024) on its long side; before issue 12 it was computed at the photo's own
size, where its blurs cost the cube of the size. Measured: (1) at 12 MP (4000x3000), both
shadows, the product against the full-resolution computation (``SHADOW_SIDE`` set past the
photo's size) in the same run, and how far apart their images are; (2) at 80 MP (10000x8000),
the product alone in a fresh process, its time and peak memory (the full-resolution
computation there takes minutes and several GB).

The mask is the lemur's true matte, enlarged. Usage: ``python bench/shadow_bench.py``
(``--repeats N``, default 3). Writes bench/results/shadows-<date>.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402

from cpu_bench import load_average, timed_pair  # noqa: E402

MATTE = ROOT / "tests" / "data" / "lemur" / "lemur_alpha_fba.png"
LARGE = """
import json, resource, sys, time
sys.path.insert(0, sys.argv[1])
from PIL import Image, ImageOps
from core.request import GenerationRequest
from core.look.shadows import apply_shadows
size = (10000, 8000)
alpha = ImageOps.fit(Image.open(sys.argv[2]).convert("L"), size)
background = Image.new("RGB", size, (200, 210, 220))
request = GenerationRequest(contact_shadow=0.6, cast_shadow=0.6)
start = time.perf_counter()
apply_shadows(background, alpha, request)
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main(argv: list[str] | None = None) -> int:
    from core.look import shadows
    from core.request import GenerationRequest

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    size = (4000, 3000)
    alpha = ImageOps.fit(Image.open(MATTE).convert("L"), size)
    background = Image.new("RGB", size, (200, 210, 220))
    request = GenerationRequest(contact_shadow=0.6, cast_shadow=0.6)
    bounded_side = shadows.SHADOW_SIDE

    def product():
        shadows.SHADOW_SIDE = bounded_side
        return shadows.apply_shadows(background, alpha, request)

    def full_resolution():
        shadows.SHADOW_SIDE = 10**9
        try:
            return shadows.apply_shadows(background, alpha, request)
        finally:
            shadows.SHADOW_SIDE = bounded_side

    load_before = load_average()
    mine, full = timed_pair(product, full_resolution, args.repeats)
    difference = np.abs(np.asarray(product(), dtype=int) - np.asarray(full_resolution(), dtype=int))
    large = subprocess.run([sys.executable, "-c", LARGE, str(ROOT), str(MATTE)], capture_output=True, text=True,
                           check=True)
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "load_average_before": load_before, "load_average_after": load_average()},
        "shadow_side": bounded_side,
        "12mp_both_shadows": {"product": mine, "full_resolution": full,
                              "speedup": round(full["median_s"] / mine["median_s"], 1),
                              "mean_abs_difference": round(float(difference.mean()), 3),
                              "p999_abs_difference": float(np.percentile(difference, 99.9)),
                              "max_abs_difference": int(difference.max())},
        "80mp_both_shadows_product": json.loads(large.stdout),
    }
    out = args.out or ROOT / "bench" / "results" / f"shadows-{datetime.now():%Y%m%d-%H%M}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    r = result["12mp_both_shadows"]
    print(f"12 MP, both shadows: {r['product']['median_s']:.2f} s bounded, {r['full_resolution']['median_s']:.2f} s "
          f"full resolution ({r['speedup']}x); images differ by {r['mean_abs_difference']} on average, "
          f"{r['p999_abs_difference']} at the 99.9th percentile (0-255)")
    large_result = result["80mp_both_shadows_product"]
    print(f"80 MP, both shadows: {large_result['seconds']:.2f} s, peak {large_result['peak_rss_mb']:.0f} MB")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
