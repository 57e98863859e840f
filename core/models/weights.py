"""Which model weights are on this machine, and fetching them: one row per model slot.

The slots are the request's model fields (core.request.SLOTS). Never downloads when asked
what is here; ``fetch`` downloads hub models into the normal Hugging Face cache and rembg
models where rembg finds them (core.models.rembg_weights).
"""

from __future__ import annotations

from typing import Any

from core.models import rembg_weights
from core.errors import InputError, ModelMissingError
from core.models.hub import fetch_command, local_folder, looks_local, model_revision, resolve_model
from core.request import SAM_MODEL, SLOTS


def slot_ids(request) -> dict[str, str]:
    """Model slot -> the id ``request`` names for it."""
    return {slot: getattr(request, spec.name) for slot, spec in SLOTS.items()}


def fetch_hint(slot: str, model_id: str) -> tuple[str, str]:
    """(the command that fetches a missing model, or "" when no command can; a note on it, or
    ""), as true for this slot and id: commands and prose apart, so a page can show the
    commands as something to paste into a terminal."""
    if slot == "segmenter":
        if model_id == rembg_weights.EMBEDDED:
            return f"{fetch_command()} {model_id}", ""
        return f"{fetch_command()} {model_id}", "downloads from rembg's releases: needs a network"
    if looks_local(model_id):
        return "", "a local folder that is missing or holds no weights: fix the path"
    return f"{fetch_command()} {model_id}", ""


def model_status(request, sam_model: str | None = None) -> list[dict[str, Any]]:
    """One row per slot of ``request`` (and for click selection's ``sam_model`` when given): see
    ``status_row``. Never downloads."""
    ids = slot_ids(request) | ({SAM_MODEL.slot: sam_model} if sam_model else {})
    return [status_row(slot, model_id) for slot, model_id in ids.items()]


def status_row(slot: str, model_id: str) -> dict[str, Any]:
    """One model slot: the id, the local path it resolves to, whether its weights are present,
    and how to get them (``fetch``: the command, ``note``: what to know; see ``fetch_hint``)."""
    if slot == "segmenter":
        try:
            path = rembg_weights.model_file(model_id)
        except InputError:
            path = None
    else:
        path = local_folder(model_id)
    command, note = fetch_hint(slot, model_id)
    return {"slot": slot, "id": model_id, "resolved": str(path) if path else None, "present": path is not None,
            "fetch": command, "note": note}


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


# What an AI background needs. The inpainting model is required: without it nothing is
# generated. The depth estimator and the ControlNet are depth control: without either the
# generator runs without depth control and says so in a warning (core.engine.generate). The app
# asks this before a run, the pipeline acts on the same rule during it.
AI_REQUIRED = ("inpaint",)
AI_DEPTH_CONTROL = ("depth", "controlnet")


def ai_readiness(request) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(blocking, degraded): the status rows of the models an AI background with ``request``
    lacks; blocking ones stop it, degraded ones (depth control, while it is on) only mean it
    runs without depth control."""
    missing = [row for row in model_status(request) if not row["present"]]
    depth = AI_DEPTH_CONTROL if request.control_scale > 0 else ()
    return ([row for row in missing if row["slot"] in AI_REQUIRED],
            [row for row in missing if row["slot"] in depth])
