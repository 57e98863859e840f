"""Atomic file writes: the one way Backdrop writes a file a reader may open at any moment.

Outputs, stored images, exports, settings and model files are written to a temporary file in
the target's folder and renamed over the target, so a crash or a full disk never leaves a
half-written file under the final name. Several outputs of one command are staged together
(``StagedFiles``): all are written first and renamed only once every one was, so a failure
leaves none of them. The temporary file is created with mode 0666 and the operating system
applies the process's umask, as for any ordinary file (nothing here reads or changes the umask).
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path
from typing import BinaryIO, Callable

from core.errors import InputError, OutputError


def write_atomic(path: str | Path, write: Callable[[BinaryIO], None], make_folder: bool = False) -> Path:
    """Call ``write(stream)`` on a temporary file beside ``path``, then rename it into place; on
    any failure the temporary file is removed and ``path`` is untouched. ``make_folder`` creates
    missing parent folders (stores, caches); otherwise a missing folder is an InputError."""
    path = Path(path)
    if make_folder:
        path.parent.mkdir(parents=True, exist_ok=True)
    temp = _write_temp(path, write)
    try:
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return path


def _write_temp(path: Path, write: Callable[[BinaryIO], None]) -> Path:
    temp = output_folder(path) / f".{path.name}.{secrets.token_hex(6)}.tmp"
    handle = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp


def output_folder(path: Path) -> Path:
    """The folder ``path`` will be written into; InputError when it does not exist."""
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(f"output folder {str(folder)!r} does not exist")
    return folder


def check_target(path: str | Path) -> Path:
    """A path a user asked Backdrop to write, checked before any work: its folder exists and can
    be written, and the path is a new name or an ordinary file (never a folder, a device, a pipe)."""
    path = Path(path)
    folder = output_folder(path)
    if path.exists():
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            raise InputError(f"{str(path)!r} is a folder: give the name of a file to write (in it, or elsewhere)")
        if not stat.S_ISREG(mode):
            raise InputError(f"{str(path)!r} is not an ordinary file (a device, a pipe or a socket): Backdrop "
                             "only writes ordinary files")
    if not os.access(folder, os.W_OK):
        raise InputError(f"cannot write in the folder {str(folder)!r}: it is read-only or not yours")
    return path


def same_file(a: str | Path, b: str | Path) -> bool:
    """Whether two paths name the same file (an existing one, or the same path once resolved)."""
    a, b = Path(a), Path(b)
    try:
        return os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


class StagedFiles:
    """Files written beside their targets now and renamed into place together by ``publish``;
    ``discard`` removes what was staged. A failure while staging discards it all."""

    def __init__(self) -> None:
        self._staged: list[tuple[Path, Path]] = []

    def stage(self, path: str | Path, data: bytes) -> None:
        path = Path(path)
        try:
            self._staged.append((_write_temp(path, lambda stream: stream.write(data)), path))
        except OSError as exc:
            self.discard()
            raise OutputError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None
        except BaseException:
            self.discard()
            raise

    def publish(self) -> list[Path]:
        done: list[Path] = []
        try:
            for temp, path in self._staged:
                os.replace(temp, path)
                done.append(path)
        except OSError as exc:
            self.discard()
            raise OutputError(f"cannot write {str(path)!r}: {exc.strerror or exc} (written before it: "
                              f"{', '.join(map(str, done)) or 'nothing'})") from None
        self._staged = []
        return done

    def discard(self) -> None:
        for temp, _ in self._staged:
            temp.unlink(missing_ok=True)
        self._staged = []
