"""Acceleration LoRAs fused into the UNet's own weights, and the model's weights put back exactly.

Fast mode (core.engine.recipes) reads a LoRA with diffusers' LoRA loader, which understands the
layouts the real files use (diffusers' and peft's ``unet.<module>.lora_A.weight`` keys, and the
kohya ``lora_unet_<module>.lora_down.weight`` keys with alphas that LCM-LoRA's file has),
loads it into the UNet with diffusers and peft, fuses it into the weights in place (peft's
merge: ``weight += scale * B @ A``) and removes the LoRA layers again. The step then runs plain
weights at the addresses they always had, so the eager step, a captured CUDA graph (which reads
those addresses) and a compiled step all compute with the fused weights without being rebuilt.

Fusing is not undone exactly by subtracting (floating point), so the original values of the
touched weights are kept, on the CPU, while a LoRA is fused, and copied back in place to return
to the standard model: bit for bit what was loaded. That copy is the memory fast mode costs
(bench/fast_bench.py measures it); switching back and forth fuses again, which gives the same
weights each time (the same operations on the same values).

The registry shares one UNet between requests (core.models.registry): ``UNetWeights`` is its one
switch. Any number of users of the current weights at once (runs of that mode, a background
compile, which works for any), a switch only when none is running.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import torch

from core.errors import InputError

ADAPTER = "backdrop_fast"


@dataclass(frozen=True)
class LoRA:
    """A LoRA read from its file (the ``fast_lora`` slot's loaded model), in diffusers' layout."""

    name: str
    state_dict: dict[str, torch.Tensor]
    network_alphas: dict[str, float] | None
    metadata: dict[str, Any] | None = None


def read_lora(path: Path, name: str) -> LoRA:
    """The LoRA in the safetensors file ``path``, named ``name`` (what tells two LoRAs apart). A LoRA for
    the UNet only: one that also changes the text encoder is refused (fast mode fuses the UNet;
    the prompt's embeddings are shared with standard runs)."""
    from diffusers.loaders import StableDiffusionLoraLoaderMixin

    state_dict, alphas, metadata = StableDiffusionLoraLoaderMixin.lora_state_dict(
        str(path.parent), weight_name=path.name, use_safetensors=True, return_lora_metadata=True)
    if not state_dict:
        raise InputError(f"{name}: {path.name} holds no LoRA weights")
    others = sorted({key.split(".")[0] for key in state_dict if not key.startswith("unet.")})
    if others:
        raise InputError(f"{name}: this LoRA also changes {', '.join(others)}; fast mode fuses LoRAs for the UNet only")
    return LoRA(name, state_dict, alphas, metadata)


def fuse(unet: torch.nn.Module, lora: LoRA) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Fuse ``lora`` into ``unet``'s weights in place, as ``pipe.load_lora_weights`` and
    ``pipe.fuse_lora()`` do, then remove the LoRA layers. Returns (weight, its original values
    on the CPU) for every weight it changed, for ``restore``."""
    from diffusers.loaders import StableDiffusionLoraLoaderMixin
    from peft.tuners.tuners_utils import BaseTunerLayer

    originals: list[tuple[torch.Tensor, torch.Tensor]] = []
    try:
        with torch.no_grad():
            StableDiffusionLoraLoaderMixin.load_lora_into_unet(
                dict(lora.state_dict), lora.network_alphas, unet, adapter_name=ADAPTER, metadata=lora.metadata)
            for module in unet.modules():
                if isinstance(module, BaseTunerLayer):  # a merge changes the weight (the bias too for a lora_bias)
                    base = module.get_base_layer()
                    changed = [base.weight] + ([base.bias] if any(getattr(module, "lora_bias", {}).values()) else [])
                    originals += [(tensor, tensor.detach().to("cpu", copy=True)) for tensor in changed]
            unet.fuse_lora(lora_scale=1.0, safe_fusing=False, adapter_names=[ADAPTER])
    except BaseException as exc:
        restore(originals)
        if isinstance(exc, (RuntimeError, ValueError, KeyError)):  # shapes or names of another architecture
            raise InputError(f"the fast-mode LoRA {lora.name} does not fit this inpainting model (an SD1.5 "
                             f"LoRA needs an SD1.5 UNet): {type(exc).__name__}: {str(exc).splitlines()[0][:200]}") from exc
        raise
    finally:
        unet.unload_lora()
    return originals


def restore(originals: list[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Copy the original values back in place (the addresses graphs and compiled code hold stay)."""
    with torch.no_grad():
        for tensor, original in originals:
            tensor.copy_(original)


class UNetWeights:
    """The one switch of a shared UNet's weights: its own, or one LoRA fused in."""

    def __init__(self, unet: torch.nn.Module) -> None:
        self.unet = unet
        self.fused: str | None = None  # the fused LoRA's name
        self._originals: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._users = 0
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def using(self, lora: LoRA | None) -> Iterator[dict]:
        """Run with ``lora`` fused (None: the model's own weights), switching first when needed
        (once no other run uses the weights). Yields what was done, for the run record:
        ``fused_now`` and the seconds the switch took."""
        with self._changed:
            wanted = lora.name if lora is not None else None
            while self._users and self.fused != wanted:
                self._changed.wait()
            done: dict = {"fused_now": False}
            if self.fused != wanted:
                start = time.perf_counter()
                self._switch(lora)
                done = {"fused_now": lora is not None, "weights_switch_s": time.perf_counter() - start}
            self._users += 1
        try:
            yield done
        finally:
            self.release()

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        """Use the weights as they are (a compile traces the module, whatever the values), so no
        switch rebuilds the module meanwhile."""
        with self._changed:
            self._users += 1
        try:
            yield
        finally:
            self.release()

    def release(self) -> None:
        with self._changed:
            self._users -= 1
            self._changed.notify_all()

    def _switch(self, lora: LoRA | None) -> None:
        if self.fused is not None:
            restore(self._originals)
            self._originals, self.fused = [], None
        if lora is not None:
            self._originals = fuse(self.unet, lora)
            self.fused = lora.name

    def kept_bytes(self) -> int:
        """Memory the kept original weights take (0 with the model's own weights)."""
        return sum(original.numel() * original.element_size() for _, original in self._originals)
