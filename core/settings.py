"""Persisted user settings: the default models and device the app's Models page lets a user pick.

Kept as a small JSON file, ``$BACKDROP_DATA_DIR/settings.json``, so choices survive restarts
without a database migration. Precedence for each value: what the user saved, then the
environment variable an operator set (the same ones core.models reads), then the built-in
default. Writes go through a temporary file and ``os.replace`` so a crash never leaves a
half-written file that would lose every setting.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from core.errors import InputError
from core.imaging import write_atomic
from core.models import DEFAULT_SAM_MODEL
from core.request import (
    DEFAULT_CONTROLNET_MODEL,
    DEFAULT_DEPTH_MODEL,
    DEFAULT_INPAINT_MODEL,
    DEFAULT_SEGMENTER,
)

DEVICES = ("auto", "cpu", "cuda", "mps")

# setting name -> (environment variable, built-in default)
FIELDS: dict[str, tuple[str, str]] = {
    "segmenter": ("BACKDROP_SEGMENTER", DEFAULT_SEGMENTER),
    "inpaint_model": ("BACKDROP_INPAINT_MODEL", DEFAULT_INPAINT_MODEL),
    "controlnet_model": ("BACKDROP_CONTROLNET_MODEL", DEFAULT_CONTROLNET_MODEL),
    "depth_model": ("BACKDROP_DEPTH_MODEL", DEFAULT_DEPTH_MODEL),
    "sam_model": ("BACKDROP_SAM_MODEL", DEFAULT_SAM_MODEL),  # click selection (core.click_select)
    "device": ("BACKDROP_DEVICE", "auto"),
}


def data_dir() -> Path:
    return Path(os.environ.get("BACKDROP_DATA_DIR") or "data")


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
    return {k: v for k, v in raw.items() if k in FIELDS and isinstance(v, str) and v.strip()}


def load_settings(root: Path | None = None) -> dict[str, str]:
    """Effective settings: saved value, else environment, else built-in default, for every field."""
    saved = saved_settings(root)
    return {
        name: saved.get(name) or os.environ.get(env) or default
        for name, (env, default) in FIELDS.items()
    }


def save_settings(values: dict[str, Any], root: Path | None = None) -> dict[str, str]:
    """Validate and atomically write ``values`` (a subset of FIELDS; blank means "back to the
    default"); returns the effective settings afterwards."""
    unknown = set(values) - set(FIELDS)
    if unknown:
        raise InputError(f"unknown setting(s): {', '.join(sorted(unknown))}")
    merged = saved_settings(root)
    for name, value in values.items():
        text = str(value or "").strip()
        if name == "device" and text and text not in DEVICES:
            raise InputError(f"device must be one of {', '.join(DEVICES)} (got {text!r})")
        if text:
            merged[name] = text
        else:
            merged.pop(name, None)
    path = settings_path(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(merged, indent=2, sort_keys=True)
    write_atomic(path, lambda stream: stream.write(text.encode("utf-8")))
    return load_settings(root)
