#!/usr/bin/env bash
# Run HERE (a machine with PyPI): puts into .whl/ the pure-Python packages the GPU machine's
# image lacks (it has torch, transformers, numba, scikit-image, onnxruntime; no network), plus
# the u2netp segmenter weights. The GPU run then installs them with --no-index (bench/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
mkdir -p .whl/u2net
PY=${PY:-.venv/bin/python}
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  diffusers==0.42.1 rembg==2.0.86 pymatting==1.1.16 pooch==1.9.0 jsonschema==4.26.0 \
  jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1 platformdirs==4.14.7 \
  importlib_metadata==10.2.0
cp "${U2NET_HOME:-$HOME/.u2net}/u2netp.onnx" .whl/u2net/
du -sh .whl
