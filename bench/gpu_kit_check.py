"""Prove the GPU kit on this CPU: the GPU machine's image plus only what bench/gpu_wheels.sh carries
is enough to run bench/gpu_bench.py (--smoke: every code path, the fast mode's too).

The GPU machine's image holds a known list of packages (IMAGE below) and no network. This builds
the same situation here, in a scratch folder: a bare virtual environment (no site packages), the
image's packages that this machine has (links into .venv's site-packages; nothing else of .venv
is visible), and the kit made by gpu_wheels.sh for this machine's Python, installed as the GPU
run installs it (pip --no-index --no-deps --target from the kit's folder). Then it checks that the
kit's packages are the ones imported and that a package neither holds is not importable, and runs
``gpu_bench.py --smoke`` there with the kit's u2netp (U2NET_HOME) and nothing else.

Differences from the GPU machine: Python 3.11 and this machine's versions of the image's packages
(torch 2.13 CPU, transformers 5.23, huggingface_hub 2.4 here; 2.11, 5.17 and 1.33 there), with what
those versions need, and the kit is downloaded for 3.11 (the same packages and versions
gpu_wheels.sh puts in .whl/ for 3.12).

Usage: ``.venv/bin/python bench/gpu_kit_check.py`` (a few minutes; needs PyPI for the download).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import venv
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# The Python packages of the GPU machines' image ('cuda'), as this workplace listed them (2026-11-17).
IMAGE = """absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build
certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core
cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock flatbuffers
flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize
hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib
kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown markdown-it-py
markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind
narwhals networkx ninja numba numba-cuda numpy numpyro nvidia-ml-py onnx onnx-ir onnxruntime onnxscript
opencv-python-headless optax opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy peft
pillow pip pluggy portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments
pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist
python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six sortedcontainers
statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm
tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope
triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray xxhash yarl
zipp""".split()


def normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name.lower())


def image_closure() -> set[str]:
    """The image's packages installed here and what they need at this machine's versions (the
    image is consistent with itself: its huggingface_hub 1.33 needs no httpx2, this one's 2.4 does)."""
    from packaging.requirements import Requirement

    installed = {normal(dist.metadata["Name"]): dist for dist in metadata.distributions()}
    todo, found = [normal(name) for name in IMAGE if normal(name) in installed], set()
    while todo:
        name = todo.pop()
        if name in found:
            continue
        found.add(name)
        for line in installed[name].requires or []:
            requirement = Requirement(line)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                if normal(requirement.name) in installed:
                    todo.append(normal(requirement.name))
    return found


def link_image(folder: Path, carried: set[str]) -> list[str]:
    """Links in ``folder`` to the files of every installed distribution of the image (and the
    kit does not carry: the kit's copy is what the GPU run imports). Returns their names."""
    image, linked = image_closure() - carried, []
    for dist in metadata.distributions():
        name = normal(dist.metadata["Name"])
        if name not in image or not dist.files:
            continue
        for top in {Path(file).parts[0] for file in dist.files if not str(file).startswith("..")}:
            source = Path(dist.locate_file(top))
            if source.exists() and not (folder / top).exists():
                (folder / top).symlink_to(source)
        linked.append(name)
    return sorted(linked)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (its path is printed)")
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="backdrop-gpu-kit-"))
    print(f"scratch folder: {scratch}")
    try:
        kit = scratch / "kit"
        pyver = f"{sys.version_info.major}.{sys.version_info.minor}"
        subprocess.run(["bash", str(ROOT / "bench" / "gpu_wheels.sh")], check=True, cwd=ROOT,
                       env={**os.environ, "WHL": str(kit), "PYVER": pyver, "PY": sys.executable})
        wheels = sorted(kit.glob("*.whl"))
        carried = {normal(w.name.split("-")[0]) for w in wheels}
        site, image = scratch / "site", scratch / "image"
        image.mkdir()
        # the GPU run's own install line (bench/README.md)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                        "--target", str(site), *map(str, wheels)], check=True)
        linked = link_image(image, carried)
        venv.create(scratch / "venv", with_pip=False)  # a bare interpreter: no site packages at all
        python = scratch / "venv" / "bin" / "python"
        env = {"PATH": os.environ["PATH"], "HOME": str(scratch), "PYTHONPATH": f"{site}{os.pathsep}{image}",
               "U2NET_HOME": str(kit / "u2net"), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
        probe = ("import importlib, json, sys\n"
                 "found = {n: importlib.import_module(n).__file__ for n in ('diffusers', 'peft', 'rembg', 'pymatting')}\n"
                 "try:\n    import streamlit\n    found['streamlit'] = streamlit.__file__\nexcept ImportError:\n"
                 "    found['streamlit'] = None\n"
                 "print(json.dumps(found))")
        found = json.loads(subprocess.run([str(python), "-c", probe], env=env, check=True, capture_output=True,
                                          text=True).stdout)
        assert all(path.startswith(str(site)) for name, path in found.items() if name != "streamlit"), found
        assert found["streamlit"] is None, "a package outside the kit and the image is visible"
        out = scratch / "smoke.json"
        subprocess.run([str(python), str(ROOT / "bench" / "gpu_bench.py"), "--smoke", "--model-dir",
                        str(scratch / "models"), "--out", str(out)], env=env, check=True, cwd=scratch)
        report = json.loads(out.read_text())
        assert report["fast_s_512"] and report["product_s_512"] and report["reference_s_512"], report
        print(f"kit: {len(wheels)} wheels ({', '.join(sorted(carried))}) and u2netp; image packages linked: "
              f"{len(linked)}; imported from the kit: {', '.join(n for n in found if n != 'streamlit')}")
        print(f"gpu_bench.py --smoke ran there: product {report['product_s_512']:.2f} s, fast {report['fast_s_512']:.2f} s"
              f", first image in a fresh process {report['first_image_s']:.1f} s")
        print("the kit is complete")
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
