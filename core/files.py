"""Atomic file writes: the one way Backdrop writes a file a reader may open at any moment.

Outputs, stored images, exports, settings and model files are written to a temporary file in
the target's folder and renamed over the target, so a crash or a full disk never leaves a
half-written file under the final name. The temporary file is created with mode 0666 and the
operating system applies the process's umask, as for any ordinary file (nothing here reads or
changes the umask).
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import BinaryIO, Callable

from core.errors import InputError


def write_atomic(path: str | Path, write: Callable[[BinaryIO], None], make_folder: bool = False) -> Path:
    """Call ``write(stream)`` on a temporary file beside ``path``, then rename it into place; on
    any failure the temporary file is removed and ``path`` is untouched. ``make_folder`` creates
    missing parent folders (stores, caches); otherwise a missing folder is an InputError."""
    path = Path(path)
    if make_folder:
        path.parent.mkdir(parents=True, exist_ok=True)
    temp = output_folder(path) / f".{path.name}.{secrets.token_hex(6)}.tmp"
    handle = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path


def output_folder(path: Path) -> Path:
    """The folder ``path`` will be written into; InputError when it does not exist."""
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(f"output folder {str(folder)!r} does not exist")
    return folder
