"""Where Backdrop keeps its data, and the user's saved defaults: the models and device.

``BACKDROP_DATA_DIR`` (default ``./data``) is the data folder: the SQLite database, the image
store and ``settings.json``, the defaults the Models page saves so they survive restarts. Which
request fields are settings, and their environment variables, is declared on the request
(core.request: the fields with an ``env``), and the model slots that no request chooses declare
their setting in core.models.slots. Each setting's value: what the user saved, else
the environment variable an operator set, else the request's default. The app and the
`backdrop` command both start from these.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.config import config
from core.errors import InputError
from core.files import write_atomic
from core.models.slots import SETTINGS_OF_SLOTS, SLOTS
from core.request import FIELD, FIELDS, GenerationRequest

SETTINGS = {spec.name: spec for spec in (*FIELDS, *SETTINGS_OF_SLOTS) if spec.env}


def data_dir() -> Path:
    """The data folder (absolute, resolved against the working directory when relative)."""
    return config().data_dir.absolute()


def settings_path(root: Path | None = None) -> Path:
    return (root or data_dir()) / "settings.json"


def saved_settings(root: Path | None = None) -> dict[str, str]:
    """Only what the user explicitly saved (unknown keys and a damaged file are ignored: settings
    are a convenience, never a reason for the app not to start)."""
    try:
        raw = json.loads(settings_path(root).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(raw, dict):
        return {}
    return {k: v for k, v in raw.items() if k in SETTINGS and isinstance(v, str) and v.strip()}


def load_settings(root: Path | None = None) -> dict[str, str]:
    """Effective settings: saved value, else environment, else the request's default. An
    environment variable with an invalid value is an InputError that names it."""
    saved, environment = saved_settings(root), config()
    return {name: saved.get(name) or environment.get(spec.env) for name, spec in SETTINGS.items()}


def base_request(root: Path | None = None) -> GenerationRequest:
    """A request with the effective default models and device: what the app's forms, the
    command line's options, the HTTP API's requests and the workers' warm-up start from."""
    return GenerationRequest(**{name: value for name, value in load_settings(root).items() if name in FIELD})


def _check_folder(spec, value: str) -> None:
    """A model setting written as a path must name a folder that exists: a typo saved as a
    default would only fail later, in the middle of a generation."""
    from core.models.hub import looks_local

    slot = next((slot for slot in SLOTS.values() if slot.choice.name == spec.name), None)
    if slot is None or not slot.source.torch or not looks_local(value):
        return
    if not Path(value).expanduser().is_dir():
        label = spec.label.split(" (")[0]
        raise InputError(f"{label}: there is no folder {value!r} on this machine (a local model is a folder saved "
                         "with save_pretrained; a Hugging Face id is written owner/name)")


def save_settings(values: dict[str, Any], root: Path | None = None) -> dict[str, str]:
    """Validate and atomically write ``values`` (a subset of the settings; blank means "back to
    the default"); returns the effective settings afterwards."""
    unknown = set(values) - set(SETTINGS)
    if unknown:
        raise InputError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    merged = saved_settings(root)
    for name, value in values.items():
        text = str(value or "").strip()
        if text:
            SETTINGS[name].validate(text)
            _check_folder(SETTINGS[name], text)
            merged[name] = text
        else:
            merged.pop(name, None)
    path = settings_path(root)
    text = json.dumps(merged, indent=2, sort_keys=True)
    write_atomic(path, lambda stream: stream.write(text.encode("utf-8")), make_folder=True)
    return load_settings(root)
