"""CPU benchmark: what the live preview costs a step, and how soon after the press it shows.

The full-size SD1.5 inpainting UNet, VAE and CLIP-L, the depth ControlNet and Depth Anything V2
Small with random weights (bench/gpu_bench.py's builder), plus TAESD's architecture
(``AutoencoderTiny``'s defaults are madebyollin/taesd's config) with random weights; fp32 on
this CPU, a 512x512 photo (the lemur). Each run goes the product's way, as a worker runs a job:
``storage.service.generate_and_record`` into a scratch data folder, so every preview is decoded,
composited, encoded as a JPEG and written to the database (storage.previews) as in the app.
Runs, after one warm-up that loads the models:

- ``linear``: the default settings (DPM-Solver++, guidance 7.5: two rows a step), the linear
  latent-to-RGB preview;
- ``one_row``: guidance 1 (one row a step, as fast mode runs), the linear preview;
- ``taesd``: as ``linear`` but the preview decoded by TAESD.

Each with ``--steps`` steps (3). A step's own time is the time between two step callbacks less
the preview made in it; the preview's time is everything it adds to a step: the estimate of the
clean latents, the decode, the composite, the JPEG and the database write. ``share`` is the
median preview over the median step. ``first_preview_s_512`` is from the call (the press, with
the models loaded and the stage cache emptied) to the first preview written to the database.

``PreviewClock`` and ``live_preview`` are for other benchmarks (bench/fast_bench.py): pass
``preview=live_preview(clock)`` to ``core.pipeline.run`` with ``clock = PreviewClock()`` made
just before the call, then read ``clock.first_s``.

Usage: ``python bench/preview_bench.py`` (about 6 minutes on 2 quiet cores; 10 GB of memory);
``--smoke`` runs the same code on tiny configs in seconds. Writes bench/results/preview-<date>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import gpu_bench  # noqa: E402

SIZE = (512, 512)
NO_TAESD = "nobody/no-taesd"  # a preview model that is not here: the linear map
TARGET_SHARE = 0.05  # issue 20: the preview costs at most 5% of a step on a CPU


class PreviewClock:
    """A live preview's ``show`` that notes when each preview arrives, in seconds from when the
    clock was made, after encoding it as storage stores it (a JPEG)."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.arrivals: list[tuple[int, float]] = []  # (step, seconds)

    def __call__(self, image, step: int, total: int) -> None:
        from storage.previews import encode

        encode(image)
        self.arrivals.append((step, time.perf_counter() - self.start))

    @property
    def first_s(self) -> float | None:
        return self.arrivals[0][1] if self.arrivals else None


def live_preview(show, model: str | None = None):
    """The LivePreview a worker asks for (storage.service), showing to ``show``."""
    from core.engine.preview import LivePreview
    from storage.service import PROGRESS_INTERVAL_S

    return LivePreview(show, every_s=PROGRESS_INTERVAL_S, model=model)


class PreviewTimer:
    """Times the preview's part of each step: the estimate (core.engine.sampler calls
    core.engine.preview.estimate) and StepPreview.update (decode, composite, JPEG, database)."""

    def __init__(self) -> None:
        import core.engine.preview as preview
        import core.engine.sampler as sampler

        self.seconds: list[float] = []
        self.steps: list[int] = []  # the step each preview followed
        self.decoders: list[str] = []
        self._estimate_s = 0.0
        real_estimate, real_update = sampler.estimate, preview.StepPreview.update

        def estimate(*args, **kwargs):
            start = time.perf_counter()
            try:
                return real_estimate(*args, **kwargs)
            finally:
                self._estimate_s = time.perf_counter() - start

        def update(step_preview, done, total, latents):
            start = time.perf_counter()
            real_update(step_preview, done, total, latents)
            self.seconds.append(self._estimate_s + time.perf_counter() - start)
            self.steps.append(done)
            self.decoders.append(step_preview.decoder)
            if step_preview.failed:
                raise RuntimeError("the preview failed: see the log")

        sampler.estimate, preview.StepPreview.update = estimate, update


def timed_run(db, photo, request, timer: PreviewTimer) -> dict:
    """One generation the way a worker runs it, with its step times and preview times."""
    from core.cache import get_cache
    from storage import history, previews
    from storage.service import generate_and_record

    get_cache().clear()
    timer.seconds.clear()
    timer.steps.clear()
    timer.decoders.clear()
    steps: list[float] = []
    first: dict = {}

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "generate" and total == request.steps and done >= 1:  # a step (not the stage's start)
            steps.append(time.perf_counter())
            if "s" not in first:  # the step's preview is written before its progress is reported
                running = history.list_generations(status="running", db=db)
                if running and previews.latest(db, running[0].id) is not None:
                    first["s"] = time.perf_counter() - start

    start = time.perf_counter()
    _, result = generate_and_record(photo, request, db=db, progress=progress)
    seconds = time.perf_counter() - start
    previews_at = dict(zip(timer.steps, timer.seconds))
    # the time between step k-1's callback and step k's holds step k and its preview, if it had one
    own = [b - a - previews_at.get(k, 0.0) for k, (a, b) in enumerate(zip(steps, steps[1:]), start=2)]
    return {"seconds": seconds, "steps": request.steps, "first_preview_s": first.get("s"), "step_s": own,
            "preview_s": list(timer.seconds),
            "preview_after_steps": list(timer.steps), "decoders": sorted(set(timer.decoders)),
            "stages_s": {k: round(v, 3) for k, v in result.timings.items()}}


def summary(runs: list[dict]) -> dict:
    """Medians; ``share``: a preview over a step; ``share_of_run``: all previews over all steps
    (below ``share`` where the budget skips steps: TAESD on a CPU)."""
    step = statistics.median(s for r in runs for s in r["step_s"])
    preview = statistics.median(p for r in runs for p in r["preview_s"])
    steps = [statistics.mean(r["step_s"]) * r["steps"] for r in runs]  # every step of the run, the first included
    return {"step_s": step, "preview_ms": preview * 1000, "share": preview / step,
            "share_of_run": sum(sum(r["preview_s"]) for r in runs) / sum(steps),
            "first_preview_s": statistics.median(r["first_preview_s"] for r in runs),
            "decoder": runs[0]["decoders"], "runs": runs}


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="steps of each timed run")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs of each kind")
    parser.add_argument("--model-dir", type=Path, default=ROOT / "bench" / ".models")
    parser.add_argument("--smoke", action="store_true", help="tiny configs: checks the script in seconds")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    import torch

    from storage.db import Database
    from storage.settings import save_settings

    kind = "smoke" if args.smoke else "full"
    report: dict = {
        "label": f"cpu, {'tiny configs (smoke)' if args.smoke else 'full-size SD1.5 architecture'} with random "
                 f"weights, fp32, {SIZE[0]}x{SIZE[1]}",
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cpu": cpu_name(),
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "versions": gpu_bench.versions(),
        "load_average_start": load_average(), "full_size": not args.smoke, "size": list(SIZE), "steps": args.steps,
    }
    paths = gpu_bench.build_models(args.model_dir / kind, smoke=args.smoke, device="cpu")
    taesd = gpu_bench.build_taesd(args.model_dir / kind / "taesd", args.smoke)
    if args.smoke:
        import storage.service

        gpu_bench.shrink_working_size_for_smoke()
        storage.service.PROGRESS_INTERVAL_S = 0.0  # tiny steps take milliseconds: a preview after each anyway
    photo = gpu_bench._photo(SIZE)
    default = gpu_bench.product_request(paths, "cpu", "u2netp", smoke=False).replace(steps=args.steps)
    requests = {"linear": default, "one_row": default.replace(guidance=1.0), "taesd": default}
    timer = PreviewTimer()
    with tempfile.TemporaryDirectory(prefix="preview-bench-") as scratch:
        db = Database(None, Path(scratch) / "data")
        save_settings({"preview_model": NO_TAESD}, db.data_dir)
        warm = timed_run(db, photo, default.replace(steps=1), timer)  # loads the models
        runs: dict[str, list[dict]] = {name: [] for name in requests}
        for _ in range(args.repeats):
            for name, request in requests.items():
                model = taesd if name == "taesd" else NO_TAESD
                save_settings({"preview_model": model}, db.data_dir)
                runs[name].append(timed_run(db, photo, request, timer))
                print(f"{name}: {runs[name][-1]['seconds']:.1f} s, previews {runs[name][-1]['preview_s']} "
                      f"(load {load_average()})", flush=True)
        db.dispose()
    report["load_average_end"] = load_average()
    report["warmup_s"] = round(warm["seconds"], 2)
    report.update({name: summary(kind_runs) for name, kind_runs in runs.items()})
    report["first_preview_s_512"] = report["linear"]["first_preview_s"]
    report["first_preview_s_512_one_row"] = report["one_row"]["first_preview_s"]
    report["targets"] = {f"{name}_share_of_run": {"target": f"<= {TARGET_SHARE}", "value": report[name]["share_of_run"],
                                                  "met": report[name]["share_of_run"] <= TARGET_SHARE}
                         for name in requests}
    out = args.out or ROOT / "bench" / "results" / (
        f"preview-{'smoke-' if args.smoke else ''}{datetime.now(timezone.utc):%Y%m%d-%H%M}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"load average {report['load_average_start']} -> {report['load_average_end']}; {report['cpu']}")
    for name in requests:
        row = report[name]
        print(f"  {name:8s} step {row['step_s']:.3f} s, preview {row['preview_ms']:.1f} ms ({row['share']:.2%} of a "
              f"step, {row['share_of_run']:.2%} of the run's steps), first preview {row['first_preview_s']:.1f} s, "
              f"decoder {row['decoder']}, after steps {[r['preview_after_steps'] for r in row['runs']]}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
