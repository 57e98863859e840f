"""One cache of loaded models, shared by every stage.

Every stage gets its models through ``get_registry()``, so the Streamlit app (which wraps it in
``st.cache_resource``), the command line, workers and the tests share one loader and one cache.
Weights load with ``use_safetensors=True`` and never with ``trust_remote_code``; what each slot
is, where its weights come from and how it is built is core.models.slots' table.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from core.models.device import torch_dtype
from core.models.hub import unusable
from core.models.slots import SLOTS

log = logging.getLogger(__name__)


class ModelRegistry:
    """Loaded models keyed by (slot, id, device, dtype), plus each model's resolved revision.

    One loader for every slot of core.models.slots. Torch models load one at a time, under one
    lock: two sessions asking for the same weights load them once, and no two
    ``from_pretrained`` calls overlap (they are not thread-safe: the libraries build models on
    the meta device by patching module creation process-wide, and a second load in another
    thread then gets meta tensors). A load may still run on a thread while other work goes on
    (core.pipeline's preload, the worker's warm-up); rembg sessions (onnxruntime) have a lock of
    their own, so cutting a photo out never waits for a diffusion model to load. The objects
    returned are shared; callers must not change them (the generator builds its per-run state
    (scheduler, tensors) afresh for each run).
    """

    def __init__(self) -> None:
        self._cache: dict[tuple, Any] = {}
        self._revisions: dict[str, str] = {}
        self._loading = threading.RLock()  # held while a torch model loads
        self._loading_sessions = threading.Lock()  # held while a rembg session is created
        self._lock = threading.Lock()  # guards the dicts, never held while loading

    def load(self, slot: str, model_id: str, device: str) -> Any:
        """The one loader: the model ``model_id`` in ``slot`` on ``device``, built once per (slot,
        id, device, dtype) from the files its source resolves (ModelMissingError naming the model
        and the command that fetches it when they are not here); its revision is recorded."""
        declared = SLOTS[slot]
        dtype = torch_dtype(device) if declared.source.torch else None
        key = (slot, model_id, device, str(dtype))
        with self._loading if declared.source.torch else self._loading_sessions:
            if key not in self._cache:
                path = declared.source.resolve(model_id)
                self._revisions[model_id] = declared.source.revision(model_id, path)
                try:
                    loaded = declared.build(path, dtype, device)
                except (OSError, ValueError) as exc:  # the library's own words go to the log
                    log.warning("loading %s %r from %s failed", slot, model_id, path, exc_info=exc)
                    raise unusable(model_id, declared.label.lower()) from exc
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

    def step_runner(self, inpaint_id: str, controlnet_id: str | None, device: str):
        """How the guided step of these models runs on ``device`` (core.engine.runner): kept here so
        its CUDA graphs and compiled code live as long as the models."""
        from core.engine.runner import StepRunner

        unet = self.load("inpaint", inpaint_id, device).unet
        controlnet = self.load("controlnet", controlnet_id, device) if controlnet_id else None
        weights = self.unet_weights(inpaint_id, device)
        return self._kept(("step", inpaint_id, controlnet_id, device, str(torch_dtype(device))),
                          lambda: StepRunner(unet, controlnet, device, weights))

    def unet_weights(self, inpaint_id: str, device: str):
        """The one switch of this model's shared UNet between its own weights and a fused
        fast-mode LoRA (core.engine.lora)."""
        from core.engine.lora import UNetWeights

        unet = self.load("inpaint", inpaint_id, device).unet
        return self._kept(("weights", inpaint_id, device, str(torch_dtype(device))), lambda: UNetWeights(unet))

    def _kept(self, key: tuple, make) -> Any:
        """The object kept under ``key``, made once."""
        with self._loading:
            if key not in self._cache:
                made = make()
                with self._lock:
                    self._cache[key] = made
            return self._cache[key]


_REGISTRY: ModelRegistry | None = None
_REGISTRY_LOCK = threading.Lock()


def get_registry() -> ModelRegistry:
    """The process-wide registry (the app wraps this in ``st.cache_resource``)."""
    global _REGISTRY
    with _REGISTRY_LOCK:
        if _REGISTRY is None:
            _REGISTRY = ModelRegistry()
        return _REGISTRY
