"""Where fast mode starts: on a CPU, where a standard AI background takes minutes, when the
fast-mode LoRA's weights are here (with the tiny autoencoder when TAESD's are too). The app's
forms start from it; standard mode stays one switch away. (Not in core.engine.recipes, which
core.request imports: this one reads the slot table.)"""

from __future__ import annotations

from core.engine.recipes import RECIPES, sampling_of
from core.errors import InputError
from core.models.device import resolve_device
from core.models.slots import SLOTS


def starts_fast(request) -> str | None:
    """Why the Studio starts in fast mode for ``request``'s device and LoRA, or None: on a CPU,
    where a standard AI background takes minutes, when the LoRA's weights are here (never
    downloads). Standard mode stays one switch away."""
    try:
        on_cpu = resolve_device(request.device) == "cpu"
    except InputError:  # a device that is not here: the form says so elsewhere
        return None
    if not on_cpu or not SLOTS["fast_lora"].present(request.fast_lora):
        return None
    standard, fast = sampling_of({**request.params(), "fast": False}), RECIPES[request.fast_lora]
    twice = ", each run twice for the prompt's guidance" if standard.guided else ""
    tiny = (" It also encodes and decodes with the tiny autoencoder (TAESD), which saves most of the VAE's time "
            "on a CPU (about 18 s of a fast run at 512x512 on 2 cores), at the cost of slightly softer background "
            "texture; the subject is always the photo's own pixels."
            if _tiny_here(request) else "")
    return (f"This computer has no GPU, so the Studio starts in fast mode: a standard AI background takes minutes "
            f"here ({standard.steps} steps{twice}); fast mode runs {fast.steps} steps, once each, with {fast.label}."
            f"{tiny} Switch it off for the standard mode.")


def start_request(request):
    """``request`` as the Studio starts it here: in fast mode where ``starts_fast`` says so, with
    the tiny autoencoder when its weights are here too; unchanged elsewhere."""
    if starts_fast(request) is None:
        return request
    return request.replace(fast=True, tiny_vae=request.tiny_vae or _tiny_here(request))


def _tiny_here(request) -> bool:
    return SLOTS["tiny_vae"].present(request.tiny_vae_model)
