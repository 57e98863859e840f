"""Every ``BACKDROP_*`` environment variable, declared once: its name, what it sets, how its text
is read and its default. Everything reads them through ``config()``, never ``os.environ``.

Each variable is parsed when it is first used, never at import, and again only when its text
has changed (tests change it between calls; a served process does not). A bad value stops only
what needs it, with an InputError that names the variable (``BACKDROP_MAX_PIXELS='lots': must
be a whole number above 0``): the app can still start and say so when one model setting is wrong.

The model and device settings are request fields or model slots' settings (those with an
``env``): their variable, default and check are declared there (core.request, core.models.slots)
and listed here from them. The README's
"Configuration" section lists them all for users (a test keeps it complete).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import InputError
from core.models.slots import SETTINGS_OF_SLOTS
from core.request import FIELDS

PREFIX = "BACKDROP_"


@dataclass(frozen=True)
class Variable:
    """One environment variable: ``parse`` turns its text (never empty) into the value, or
    raises InputError saying what is wrong; unset or blank, it is ``default``."""

    name: str
    default: Any
    parse: Callable[[str], Any]
    help: str

    @property
    def key(self) -> str:
        """Its attribute on Config: BACKDROP_MAX_PIXELS -> max_pixels."""
        return self.name.removeprefix(PREFIX).lower()


def _text(text: str) -> str:
    return text


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise InputError("must be a whole number above 0")
    return int(text)


def _whole(text: str) -> int:
    if not text.isdigit():
        raise InputError("must be a whole number (0 or more)")
    return int(text)


def _megabytes(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise InputError("must be a number of megabytes (0 or more)")
    return value


SWITCH = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def _switch(text: str) -> bool:
    try:
        return SWITCH[text.lower()]
    except KeyError:
        raise InputError(f"must be one of {', '.join(SWITCH)}") from None


def _setting(spec) -> Callable[[str], str]:
    """A model or device setting: checked as its request field checks it."""
    def parse(text: str) -> str:
        spec.validate(text)
        return text

    return parse


VARIABLES: tuple[Variable, ...] = (
    Variable("BACKDROP_DATA_DIR", Path("data"), Path,
             "the data folder: the SQLite database, the image store and the saved settings (relative to the "
             "working directory)"),
    Variable("BACKDROP_DATABASE_URL", "", _text,
             "a SQLAlchemy database URL (postgresql+psycopg://user@host/db); unset: SQLite in the data folder"),
    Variable("BACKDROP_MAX_PIXELS", 50_000_000, _positive,
             "the largest photo one queued job may have, in pixels (a 48 MP phone photo fits)"),
    Variable("BACKDROP_MAX_QUEUED_PER_USER", 20, _positive,
             "how many jobs one account may have queued or running (a batch counts each photo)"),
    Variable("BACKDROP_RAY_ADDRESS", "", _text,
             "serve the queue on a Ray cluster: local, auto or the head node's HOST:PORT; unset: in the process"),
    Variable("BACKDROP_RAY_WORKERS", None, _positive,
             "how many Ray workers serve the queue; unset: one per GPU in the cluster, or one"),
    Variable("BACKDROP_CACHE_MB", 512.0, _megabytes,
             "memory for cached cut-outs, depth maps and prompt encodings, in MB; 0 turns the cache off"),
    Variable("BACKDROP_CUDA_GRAPHS", True, _switch, "replay the diffusion step as a CUDA graph on CUDA; 0 turns it off"),
    Variable("BACKDROP_COMPILE", False, _switch,
             "compile the diffusion step with torch.compile in the background, and use it once ready"),
    Variable("BACKDROP_COMPILE_BACKEND", "inductor", _text, "the torch.compile backend"),
    Variable("BACKDROP_COMPILE_CACHE", None, Path,
             "where compiled steps are kept; unset: the data folder's compile-cache"),
    Variable("BACKDROP_VAE_TILE_PIXELS", 512 * 768, _whole,
             "an image larger than this (pixels per variant) is decoded in tiles; 0 tiles every image"),
    *(Variable(spec.env, spec.default, _setting(spec), f"the default {spec.label[0].lower()}{spec.label[1:]} "
               "(a saved setting of the Models page wins)")
      for spec in (*FIELDS, *SETTINGS_OF_SLOTS) if spec.env),
)
VARIABLE = {variable.key: variable for variable in VARIABLES}
NAMED = {variable.name: variable for variable in VARIABLES}


class Config:
    """The ``BACKDROP_*`` variables: ``config().max_pixels`` is BACKDROP_MAX_PIXELS's value,
    parsed the first time it is asked for, and again only if the variable's text has changed
    since (one look at the environment per use: about a microsecond)."""

    def __init__(self) -> None:
        self._parsed: dict[str, tuple[str, Any]] = {}  # name -> (the text it was parsed from, value)

    def get(self, name: str) -> Any:
        """The value of the variable ``name`` (BACKDROP_...)."""
        variable = NAMED[name]
        text = os.environ.get(name, "").strip()
        parsed = self._parsed.get(name)
        if parsed is None or parsed[0] != text:
            try:
                parsed = text, variable.parse(text) if text else variable.default
            except InputError as exc:
                raise InputError(f"{name}={text!r}: {exc}") from None
            self._parsed[name] = parsed
        return parsed[1]

    def __getattr__(self, key: str) -> Any:
        variable = VARIABLE.get(key)
        if variable is None:
            raise AttributeError(key)
        return self.get(variable.name)

    def __dir__(self) -> list[str]:
        return [*super().__dir__(), *VARIABLE]


_current: Config | None = None
_lock = threading.Lock()


def config() -> Config:
    """This process's configuration, made on first use."""
    global _current
    if _current is None:
        with _lock:
            _current = _current or Config()
    return _current
