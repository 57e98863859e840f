"""One cache of loaded models, shared by every stage.

Every stage gets its models through ``get_registry()``, so the Streamlit app (which wraps it in
``st.cache_resource``), the command line, workers and the tests share one loader and one cache.
Weights load with ``use_safetensors=True`` and never with ``trust_remote_code``; where they come
from is core.models.hub's job, which weights are here core.models.weights'.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Callable

from core.models.device import torch_dtype
from core.errors import InputError
from core.models.hub import first_line, missing, model_revision, resolve_model
from core.request import SAM_MODEL


class ModelRegistry:
    """Loaded models keyed by (kind, id, device, dtype), plus each model's resolved revision.

    Models load one at a time, under one lock: two sessions asking for the same weights load
    them once, and no two ``from_pretrained`` calls overlap (they are not thread-safe: the
    libraries build models on the meta device by patching module creation process-wide, and a
    second load in another thread then gets meta tensors). A load may still run on a thread
    while other work goes on (core.pipeline's preload, the worker's warm-up). The objects returned are shared; callers must not change them (the generator builds
    its per-run state (scheduler, tensors) afresh for each run).
    """

    def __init__(self) -> None:
        self._cache: dict[tuple, Any] = {}
        self._revisions: dict[str, str] = {}
        self._loading = threading.RLock()  # held while a model loads
        self._lock = threading.Lock()  # guards the dicts, never held while loading

    def _load(self, kind: str, model_id: str, device: str, build: Callable[[Path, Any], Any]) -> Any:
        """The one loader: resolve ``model_id`` to a folder, record its revision and call
        ``build(folder, dtype)`` once per (kind, id, device, dtype); a folder the library cannot
        read becomes a ModelMissingError naming the model."""
        dtype = torch_dtype(device)
        key = (kind, model_id, device, str(dtype))
        with self._loading:
            if key not in self._cache:
                folder = resolve_model(model_id)
                self._revisions[model_id] = model_revision(model_id, folder)
                try:
                    loaded = build(folder, dtype)
                except (OSError, ValueError) as exc:
                    raise missing(model_id, first_line(exc)) from exc
                with self._lock:
                    self._cache[key] = loaded
            return self._cache[key]

    def revision(self, model_id: str) -> str:
        """Revision of a model this registry has loaded ("" if it has not)."""
        return self._revisions.get(model_id, "")

    def record(self, model_id: str) -> dict[str, str]:
        """What a generation stores about a model it used: {"id", "revision"}."""
        return {"id": model_id, "revision": self.revision(model_id)}

    def loaded(self) -> list[tuple]:
        with self._lock:
            return list(self._cache)

    def inpaint_base(self, inpaint_id: str, device: str):
        """The plain ``StableDiffusionInpaintPipeline``: VAE, text encoder, tokenizer, UNet, scheduler."""

        def build(folder, dtype):
            from diffusers import StableDiffusionInpaintPipeline

            pipe = StableDiffusionInpaintPipeline.from_pretrained(
                folder, dtype=dtype, use_safetensors=True, safety_checker=None,
                feature_extractor=None, requires_safety_checker=False,
            )
            pipe.set_progress_bar_config(disable=True)
            return pipe.to(device)

        return self._load("inpaint", inpaint_id, device, build)

    def controlnet(self, controlnet_id: str, device: str):
        def build(folder, dtype):
            from diffusers import ControlNetModel

            return ControlNetModel.from_pretrained(folder, dtype=dtype, use_safetensors=True).to(device)

        return self._load("controlnet", controlnet_id, device, build)

    def step_runner(self, inpaint_id: str, controlnet_id: str | None, device: str):
        """How the guided step of these models runs on ``device`` (core.engine.runner): kept here so
        its CUDA graphs and compiled code live as long as the models."""
        from core.engine.runner import StepRunner

        unet = self.inpaint_base(inpaint_id, device).unet
        controlnet = self.controlnet(controlnet_id, device) if controlnet_id else None
        key = ("step", inpaint_id, controlnet_id, device, str(torch_dtype(device)))
        with self._loading:
            if key not in self._cache:
                runner = StepRunner(unet, controlnet, device)
                with self._lock:
                    self._cache[key] = runner
            return self._cache[key]

    def depth(self, model_id: str, device: str):
        """(image processor, depth model) for any transformers depth-estimation checkpoint."""

        def build(folder, dtype):
            from transformers import AutoImageProcessor, AutoModelForDepthEstimation

            return _processor_and_model(folder, AutoImageProcessor, AutoModelForDepthEstimation, dtype, device)

        return self._load("depth", model_id, device, build)

    def sam(self, model_id: str, device: str):
        """(SamProcessor, SamModel) for a Segment Anything checkpoint in transformers' format
        (click selection, core.masks.click_select)."""

        def build(folder, dtype):
            from transformers import SamModel, SamProcessor

            kind = _model_type(folder)
            if kind and kind != "sam":
                raise InputError(f"model {model_id!r} is a {kind} model; click selection needs a Segment "
                                 "Anything checkpoint in transformers' SamModel format, e.g. "
                                 f"{SAM_MODEL.default}")
            return _processor_and_model(folder, SamProcessor, SamModel, dtype, device)

        return self._load("sam", model_id, device, build)


def _processor_and_model(folder: Path, processor_class, model_class, dtype, device: str):
    """(processor, model in eval mode on ``device``) from a transformers folder; safetensors only."""
    processor = processor_class.from_pretrained(folder)
    model = model_class.from_pretrained(folder, dtype=dtype, use_safetensors=True)
    return processor, model.to(device).eval()


def _model_type(folder: Path) -> str:
    """``model_type`` from a transformers folder's config.json ("" when absent or unreadable)."""
    try:
        return str(json.loads((folder / "config.json").read_text()).get("model_type", ""))
    except (OSError, ValueError, AttributeError):
        return ""


_REGISTRY: ModelRegistry | None = None
_REGISTRY_LOCK = threading.Lock()


def get_registry() -> ModelRegistry:
    """The process-wide registry (the app wraps this in ``st.cache_resource``)."""
    global _REGISTRY
    with _REGISTRY_LOCK:
        if _REGISTRY is None:
            _REGISTRY = ModelRegistry()
        return _REGISTRY
