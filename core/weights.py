"""Which model weights are on this machine, and fetching them: one row per model slot.

Never downloads when asked what is here; ``fetch`` downloads hub models into the normal Hugging
Face cache and rembg models where rembg finds them (core.rembg_weights).
"""

from __future__ import annotations

import os
from typing import Any

from core import rembg_weights
from core import request as defaults
from core.errors import InputError, ModelMissingError
from core.hub import FETCH_COMMAND, local_folder, looks_local, model_revision, resolve_model

ENV = {
    "segmenter": ("BACKDROP_SEGMENTER", defaults.DEFAULT_SEGMENTER),
    "inpaint": ("BACKDROP_INPAINT_MODEL", defaults.DEFAULT_INPAINT_MODEL),
    "controlnet": ("BACKDROP_CONTROLNET_MODEL", defaults.DEFAULT_CONTROLNET_MODEL),
    "depth": ("BACKDROP_DEPTH_MODEL", defaults.DEFAULT_DEPTH_MODEL),
}
REQUEST_FIELD = {"segmenter": "segmenter", "inpaint": "inpaint_model", "controlnet": "controlnet_model", "depth": "depth_model"}


def default_model_ids() -> dict[str, str]:
    """The model id per slot: the ``BACKDROP_*`` environment variable, else core.request's default."""
    return {slot: os.environ.get(var) or default for slot, (var, default) in ENV.items()}


def fetch_hint(slot: str, model_id: str) -> str:
    """What to do about a missing model, as true for this slot and id."""
    if slot == "segmenter":
        if model_id == rembg_weights.EMBEDDED:
            return f"{FETCH_COMMAND} {model_id}"
        return f"{FETCH_COMMAND} {model_id} (downloads from rembg's releases: needs a network)"
    if looks_local(model_id):
        return "a local folder: fix the path"
    return f"{FETCH_COMMAND} {model_id}"


def model_status(request=None) -> list[dict[str, Any]]:
    """One row per slot: the id (from the request, else the defaults), the local path it
    resolves to, whether its weights are present, and how to get them. Never downloads."""
    ids = default_model_ids()
    if request is not None:
        ids = {slot: getattr(request, field) for slot, field in REQUEST_FIELD.items()}
    rows = []
    for slot, model_id in ids.items():
        if slot == "segmenter":
            try:
                path = rembg_weights.model_file(model_id)
            except InputError:
                path = None
        else:
            path = local_folder(model_id)
        rows.append({"slot": slot, "id": model_id, "resolved": str(path) if path else None, "present": path is not None,
                     "fetch": fetch_hint(slot, model_id)})
    return rows


def fetch(slot: str, model_id: str) -> dict[str, Any]:
    """Install one model (rembg's for the segmenter slot, a hub model otherwise); a result row,
    never raising for a model that cannot be had (its ``error`` says why)."""
    try:
        if slot == "segmenter":
            path, now = rembg_weights.install(model_id)
            return {"slot": slot, "id": model_id, "ok": True, "path": str(path), "installed_now": now,
                    "revision": rembg_weights.revision(model_id)}
        folder = resolve_model(model_id)
        return {"slot": slot, "id": model_id, "ok": True, "path": str(folder), "revision": model_revision(model_id, folder)}
    except (ModelMissingError, InputError) as exc:
        return {"slot": slot, "id": model_id, "ok": False, "error": getattr(exc, "reason", str(exc))}


def slot_of(name: str) -> str:
    """The slot a name given to ``fetch`` belongs to: a rembg model name is a segmenter, anything
    else a hub id or folder (for the inpainting, ControlNet or depth slot alike)."""
    try:
        rembg_weights.session_class(name)
        return "segmenter"
    except InputError:
        return "hub"
