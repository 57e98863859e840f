"""CPU benchmark: what the VAE costs at 512x512 against what this processor can compute.

Why fast mode has a floor on a CPU: its 4 steps are cheap, the VAE's encode and decode are not.
This script measures, fp32, in one process:

- ``sgemm_gflops``: a 4096x4096 matrix product, the processor's practical peak;
- the SD1.5 VAE (full-size architecture, random weights) encoding a 512x512 image and decoding a
  64x64 latent, with its convolutions' arithmetic counted (``*_conv_gflop``) and the rate they
  ran at, contiguous and channels_last (the layout the product uses on a CPU);
- TAESD (``AutoencoderTiny``, its published architecture) doing the same, channels_last.

Usage: ``python bench/vae_bench.py [--repeats 3]`` (about 3 minutes on 2 cores). Writes
bench/results/vae-<date>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import gpu_bench  # noqa: E402
from bench.preview_bench import cpu_name  # noqa: E402


def median_s(work, repeats: int) -> float:
    work()  # warm-up: oneDNN picks and caches its kernels
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def conv_gflop(module, work) -> float:
    """The multiply-adds (x2) of every Conv2d ``work`` runs through ``module``."""
    import torch

    total = [0]

    def count(layer, _inputs, output):
        total[0] += 2 * output.numel() * layer.in_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1]

    hooks = [m.register_forward_hook(count) for m in module.modules() if isinstance(m, torch.nn.Conv2d)]
    work()
    for hook in hooks:
        hook.remove()
    return total[0] / 1e9


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model-dir", type=Path, default=ROOT / "bench" / ".models")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    import torch
    from diffusers import AutoencoderKL, AutoencoderTiny

    paths = gpu_bench.build_models(args.model_dir / "full", smoke=False, device="cpu")
    vae = AutoencoderKL.from_pretrained(paths["inpaint"], subfolder="vae").eval()
    taesd = AutoencoderTiny.from_pretrained(gpu_bench.build_taesd(args.model_dir / "full" / "taesd", False)).eval()
    generator = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, 512, 512, generator=generator) * 2 - 1
    latents = torch.randn(1, 4, 64, 64, generator=generator)
    report: dict = {"label": "cpu, fp32, 512x512; full-size SD1.5 VAE and TAESD architectures, random weights",
                    "date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cpu": cpu_name(),
                    "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "versions": gpu_bench.versions(), "load_average_start": [round(v, 2) for v in os.getloadavg()],
                    "repeats": args.repeats}
    with torch.inference_mode():
        a, b = torch.randn(4096, 4096), torch.randn(4096, 4096)
        report["sgemm_gflops"] = 2 * 4096**3 / median_s(lambda: a @ b, args.repeats) / 1e9
        works = {"encode": lambda model: model.encode(image), "decode": lambda model: model.decode(latents)}
        for name, work in works.items():
            report[f"vae_{name}_conv_gflop"] = conv_gflop(vae, lambda: work(vae))
        for layout in ("contiguous", "channels_last"):
            if layout == "channels_last":
                vae.to(memory_format=torch.channels_last)
            for name, work in works.items():
                seconds = median_s(lambda: work(vae), args.repeats)
                report[f"vae_{name}_s_{layout}"] = seconds
                report[f"vae_{name}_conv_gflops_{layout}"] = report[f"vae_{name}_conv_gflop"] / seconds
        taesd.to(memory_format=torch.channels_last)
        for name, work in works.items():
            report[f"taesd_{name}_s"] = median_s(lambda: work(taesd), args.repeats)
    report["vae_s_channels_last"] = report["vae_encode_s_channels_last"] + report["vae_decode_s_channels_last"]
    report["taesd_s"] = report["taesd_encode_s"] + report["taesd_decode_s"]
    report["vae_decode_share_of_peak"] = report["vae_decode_conv_gflops_channels_last"] / report["sgemm_gflops"]
    report["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    out = args.out or ROOT / "bench" / "results" / f"vae-{datetime.now(timezone.utc):%Y%m%d-%H%M}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    for key, value in report.items():
        if isinstance(value, float):
            print(f"  {key:36s} {value:.4g}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
