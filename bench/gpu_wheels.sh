#!/usr/bin/env bash
# Run HERE (a machine with PyPI, after `make setup`): puts into .whl/ the packages the GPU
# machine's image lacks or holds at another version (it has torch, transformers, accelerate,
# numba, scikit-image, onnxruntime, opencv; no network), at the versions installed here, plus
# the u2netp segmenter weights from where the product keeps them (core/models/rembg_weights.py).
# The GPU run then installs them with --no-index (bench/README.md); bench/gpu_kit_check.py
# proves on this CPU that the kit alone is enough.
# WHL=folder and PYVER=3.11 make a kit for another folder and Python (the check uses both).
set -euo pipefail
cd "$(dirname "$0")/.."
WHL=${WHL:-.whl}
PYVER=${PYVER:-3.12}  # the GPU machine's Python
PY=${PY:-.venv/bin/python}
if [ "$WHL" = .whl ]; then
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
fi
mkdir -p "$WHL/u2net"
# the fast path's diffusers and peft, the cut-out's rembg and pymatting, and what they need that
# the image lacks; each at the version installed here (pip freeze), so the GPU runs what was tested
PACKAGES="diffusers rembg pymatting peft pooch jsonschema jsonschema-specifications referencing rpds-py platformdirs
importlib-metadata"
PINS=$("$PY" -m pip freeze --all | "$PY" -c '
import re, sys
wanted = {re.sub(r"[-_.]+", "-", name.lower()) for name in sys.argv[1:]}
pins = {}
for line in sys.stdin:
    name, _, version = line.strip().partition("==")
    if re.sub(r"[-_.]+", "-", name.lower()) in wanted and version:
        pins[re.sub(r"[-_.]+", "-", name.lower())] = f"{name}=={version}"
missing = sorted(wanted - set(pins))
if missing:
    sys.exit("not installed here: " + ", ".join(missing) + " (run make setup first)")
print(" ".join(pins[name] for name in sorted(pins)))
' $PACKAGES)
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$WHL" $PINS
U2NETP=$("$PY" -c 'from core.models.rembg_weights import model_file; print(model_file("u2netp") or "")')
if [ -z "$U2NETP" ]; then
  echo "u2netp is not installed here: run .venv/bin/backdrop models fetch u2netp first" >&2
  exit 1
fi
cp "$U2NETP" "$WHL/u2net/u2netp.onnx"
du -sh "$WHL"
