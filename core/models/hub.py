"""Hugging Face models on disk: where a model id's weights are, downloading them, and their revision.

A model id is a Hugging Face id or a local folder. Loading never downloads: a hub id loads from
the local Hugging Face cache, and what is not there is a ``ModelMissingError`` that names the
model and the command that fetches it (``backdrop models fetch``, the one place that downloads,
never when ``HF_HUB_OFFLINE`` is set). Every message is a sentence a user can act on; a
library's own error goes to the log.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
from pathlib import Path

from core.errors import ModelMissingError

log = logging.getLogger(__name__)
# What a download takes from a hub repo: configs, tokenizer files and the full-precision
# safetensors; not the .ckpt/.bin duplicates, fp16 copies or the safety checker we never load.
ALLOW_PATTERNS = ["*.json", "*.txt", "*.safetensors"]
IGNORE_PATTERNS = ["*fp16*", "*.ema.*", "*non_ema*", "safety_checker/*", "*.onnx*"]


def fetch_command() -> str:
    """``backdrop models fetch`` as it runs from the current folder: the ``backdrop`` script
    installed beside the running Python (``.venv/bin/backdrop`` after ``make run`` in the app's
    folder), so the command works whether or not the environment is activated."""
    script = Path(sys.executable).parent / "backdrop"
    if not script.exists():
        return "backdrop models fetch"
    try:
        shown = str(script.relative_to(Path.cwd()))
    except ValueError:
        shown = str(script)
    return f"{shown} models fetch"


def offline() -> bool:
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().lower()
    return bool(constants.HF_HUB_OFFLINE) or env in ("1", "true", "yes", "on")


def looks_local(model_id: str) -> bool:
    """A folder that exists, or text written as a path (so a typo'd path is reported as a
    missing folder, not looked up on the hub)."""
    return Path(model_id).expanduser().is_dir() or model_id.startswith(("/", ".", "~")) or "\\" in model_id or model_id.count("/") > 1


def missing(model_id: str, why: str) -> ModelMissingError:
    """The error a user sees; ``.reason`` keeps just the cause (for fetch's own report)."""
    if looks_local(model_id):
        error = ModelMissingError(f"model folder {model_id!r} is not usable: {why}; point to a diffusers/transformers "
                                  "folder saved with save_pretrained")
    else:
        error = ModelMissingError(f"model {model_id!r} is not on this machine ({why}); fetch it with: "
                                  f"{fetch_command()} {model_id}")
    error.reason = why
    return error


def unusable(model_id: str, what: str) -> ModelMissingError:
    """The error for weights that are here but do not load as ``what`` (the library's message is
    for the log)."""
    if looks_local(model_id):
        return missing(model_id, f"its files are incomplete or are not a {what} (the server's log has the details)")
    return ModelMissingError(f"model {model_id!r} does not load as a {what}: its files in the Hugging Face cache are "
                             f"incomplete or of another kind (the server's log has the details); fetch it again with: "
                             f"{fetch_command()} {model_id}, or choose another model")


def cached_snapshot(model_id: str) -> Path | None:
    """The local Hugging Face cache folder for a hub id, or None if it was never downloaded."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(model_id, local_files_only=True, allow_patterns=ALLOW_PATTERNS, ignore_patterns=IGNORE_PATTERNS))
    except Exception:  # not cached, or an id the hub client rejects
        return None


def has_weights(folder: Path) -> bool:
    return any(folder.rglob("*.safetensors"))


def local_folder(model_id: str) -> Path | None:
    """The folder ``model_id`` names or the cached snapshot, if it holds weights; never downloads."""
    folder = Path(model_id).expanduser() if looks_local(model_id) else cached_snapshot(model_id)
    return folder if folder is not None and folder.is_dir() and has_weights(folder) else None


def resolve_model(model_id: str) -> Path:
    """The local folder ``model_id`` names, or its cached hub snapshot; never downloads
    (ModelMissingError naming the command that does)."""
    if not model_id:
        raise ModelMissingError(f"no model given; set one or download the defaults with: {fetch_command()}")
    if looks_local(model_id):
        folder = Path(model_id).expanduser()
        if not folder.is_dir():
            raise missing(model_id, "no such folder")
        return folder
    folder = cached_snapshot(model_id)
    if folder is not None and has_weights(folder):
        return folder
    raise missing(model_id, "not in the Hugging Face cache")


def download_model(model_id: str) -> tuple[Path, bool]:
    """(the folder of ``model_id``, whether it was downloaded now): a local folder or the cached
    snapshot as they are, else a download from the Hugging Face hub into its cache
    (``backdrop models fetch``). ModelMissingError says in a sentence why it cannot."""
    from huggingface_hub import snapshot_download

    try:
        return resolve_model(model_id), False
    except ModelMissingError:
        if looks_local(model_id) or not model_id:
            raise
    if offline():
        raise missing(model_id, "this machine is set offline (HF_HUB_OFFLINE), so nothing is downloaded")
    try:
        return Path(snapshot_download(model_id, allow_patterns=ALLOW_PATTERNS, ignore_patterns=IGNORE_PATTERNS)), True
    except Exception as exc:  # noqa: BLE001 - network down, unknown or gated repo...
        log.warning("downloading %s failed", model_id, exc_info=exc)
        raise missing(model_id, download_failure(exc)) from exc


def download_failure(exc: BaseException) -> str:
    """Why a download failed, in words (the library's message, often pages long, goes to the log)."""
    from huggingface_hub.errors import (GatedRepoError, LocalEntryNotFoundError, OfflineModeIsEnabled,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    if isinstance(exc, GatedRepoError):
        return "its licence must be accepted on huggingface.co first, then sign in with `hf auth login`"
    if isinstance(exc, (RepositoryNotFoundError, RevisionNotFoundError)):
        return "the Hugging Face hub has no such model (or it is private): check the id"
    if isinstance(exc, (LocalEntryNotFoundError, OfflineModeIsEnabled, ConnectionError, TimeoutError)) \
            or "connect" in type(exc).__name__.lower():
        return "the Hugging Face hub cannot be reached from this machine (no network?)"
    return f"the download stopped ({type(exc).__name__}; the server's log has the details)"


def local_file(repo: str, filename: str) -> Path | None:
    """One file of a hub repository from the local Hugging Face cache, or None; never downloads
    (a repository such as ByteDance/Hyper-SD holds many large files, of which a slot needs one)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo, filename)  # the cache only: no request, not even the client's headers
    except Exception:  # noqa: BLE001 - an id the hub client rejects
        return None
    return Path(found) if isinstance(found, str) else None


def resolve_file(repo: str, filename: str) -> Path:
    """``local_file``, or ModelMissingError naming the repository (loading never downloads)."""
    found = local_file(repo, filename)
    if found is None:
        raise missing(repo, f"{filename} is not in the Hugging Face cache")
    return found


def download_file(repo: str, filename: str) -> tuple[Path, bool]:
    """(one file of a hub repository, whether it was downloaded now), for ``backdrop models
    fetch``; ModelMissingError says in a sentence why it cannot."""
    from huggingface_hub import hf_hub_download

    found = local_file(repo, filename)
    if found is not None:
        return found, False
    if offline():
        raise missing(repo, "this machine is set offline (HF_HUB_OFFLINE), so nothing is downloaded")
    try:
        return Path(hf_hub_download(repo, filename)), True
    except Exception as exc:  # noqa: BLE001 - network down, unknown repo or file...
        log.warning("downloading %s from %s failed", filename, repo, exc_info=exc)
        raise missing(repo, download_failure(exc)) from exc


def file_revision(path: Path) -> str:
    """The hub commit hash of a cached file (its snapshot folder's name)."""
    return path.parent.name if path.parent.parent.name == "snapshots" else ""


def model_revision(model_id: str, folder: Path) -> str:
    """The hub commit hash of a cached snapshot, or for a local folder ``local:`` + a sha256 over
    its config files and its weight files' names and sizes (cheap, and changes when the model
    is replaced; hashing gigabytes of weights on every load would not be)."""
    if not looks_local(model_id) and folder.parent.name == "snapshots":
        return folder.name
    digest = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(folder).as_posix()
        if path.suffix in (".json", ".txt"):
            digest.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
        else:
            digest.update(f"{rel}\0{path.stat().st_size}\0".encode())
    return "local:" + digest.hexdigest()[:16]
