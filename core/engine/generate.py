"""The AI background: SD1.5 inpainting with the depth ControlNet, at the working size.

This module is the policy (which models run, what the user is warned about); the work is in
core.engine.conditioning (prompt, mask and control tensors, starting noise), core.engine.sampler (the
denoising loop), core.engine.runner (the step: eager, CUDA graph or compiled) and core.engine.decode.

Only the background comes from here. The pipeline composites the ORIGINAL photo over the
(upscaled) result, because the VAE round trip and the 9-channel UNet also change pixels outside
the mask; the subject's pixels therefore never depend on this module.

Seeds: variant ``i`` uses its own ``torch.Generator`` (on the CPU, so the starting noise is the
same whatever the device) seeded with ``request.seed + i``. All variants run as one batch; the
same request and seed give the same images on the same device.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any, Callable

from PIL import Image

from core.engine import conditioning, sampler
from core.cache import get_cache
from core.engine.decode import decode
from core.errors import BackdropError, Cancelled, InputError, ModelMissingError
from core.models.device import resolve_device
from core.models.registry import ModelRegistry, get_registry
from core.models.slots import NO_DEPTH_CONTROL, SLOTS, needed
from core.presets import full_negative_prompt
from core.engine.prompts import encode_prompt_pair, token_count, truncation_warning
from core.record import note
from core.engine.recipes import sampling
from core.request import SCHEDULERS

# scheduler name -> (diffusers class, settings over the checkpoint's config): the request's
# choices (core.request.SCHEDULERS), then the fast-mode recipes' (core.engine.recipes)
_SCHEDULERS = {
    "dpmpp": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "ddim": ("DDIMScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "lcm": ("LCMScheduler", {}),
    "ddim_trailing": ("DDIMScheduler", {"timestep_spacing": "trailing"}),
    "tcd": ("TCDScheduler", {}),
}


def make_scheduler(name: str, config):
    """A fresh scheduler of the request's kind (or a fast-mode recipe's) from the checkpoint's
    scheduler config."""
    import diffusers

    if name not in _SCHEDULERS:
        raise InputError(f"unknown scheduler {name!r}: use one of {', '.join(SCHEDULERS)}")
    kind, settings = _SCHEDULERS[name]
    return getattr(diffusers, kind).from_config(config, **settings)


@dataclass
class InpaintModels:
    """The loaded modules one generation uses (shared by the registry: never modified)."""

    unet: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any
    scheduler_config: Any
    controlnet: Any = None
    lora: Any = None  # fast mode's LoRA (core.engine.lora.LoRA), fused into the UNet for the run


def generate_backgrounds(
    image: Image.Image,
    inpaint_mask: Image.Image,
    depth: Image.Image | None,
    request,
    progress: Callable[[str, int, int], None] | None = None,
    cancel: Callable[[], bool] | None = None,
    registry: ModelRegistry | None = None,
    warnings: list[str] | None = None,
    record: dict | None = None,
    preview=None,
) -> list[Image.Image]:
    """``request.variants`` RGB images at ``image``'s (working) size; the mask is 255 where the
    background is repainted. Depth None or control scale 0 runs without the ControlNet; that,
    a missing ControlNet and an over-long prompt are appended to ``warnings`` (the missing depth
    map only when no warning there already says so). ``record`` receives what ran (core.record):
    how the step ran (eager, CUDA graph, compiled), the VAE decode mode, the scheduler, steps,
    guidance and eta (a fast-mode recipe's in fast mode, core.engine.recipes), whether the
    unguided row ran, the prompt and negative prompt that were encoded and their token counts,
    and whether depth control ran. ``preview`` (core.engine.preview.StepPreview) is shown each
    step's estimate; it changes nothing."""
    import torch

    width, height = image.size
    if width % 8 or height % 8:
        raise InputError(f"working size must be a multiple of 8 (got {width}x{height})")
    for name, other in (("inpaint mask", inpaint_mask), ("depth map", depth)):
        if other is not None and other.size != image.size:
            raise InputError(f"{name} is {other.width}x{other.height}, image is {width}x{height}")
    warnings = warnings if warnings is not None else []
    record = record if record is not None else {}
    registry = registry or get_registry()
    device = resolve_device(request.device)
    models = _models(request, depth, registry, device, warnings)

    negative = full_negative_prompt(request)
    for text, what in ((request.prompt, "prompt"), (negative, "negative prompt")):
        message = truncation_warning(models.tokenizer, text, what)
        if message:
            warnings.append(message)
    if cancel is not None and cancel():
        raise Cancelled("generation cancelled before it started")

    plan = sampling(request)  # the request's scheduler, steps and guidance, or fast mode's recipe
    scheduler = make_scheduler(plan.scheduler, models.scheduler_config)
    guided = plan.guided  # no unguided row at guidance <= 1
    generators = [torch.Generator("cpu").manual_seed(request.seed + i) for i in range(request.variants)]
    runner = registry.step_runner(request.inpaint_model, request.controlnet_model if models.controlnet else None, device)
    weights = registry.unet_weights(request.inpaint_model, device)
    with weights.using(models.lora) as switched, torch.inference_mode(), _attention(device):
        positive, negative_embeds = _text_embeddings(models, request, negative, guided, device, registry)
        text = conditioning.text_rows(positive, negative_embeds, request.variants)
        timesteps = sampler.set_timesteps(scheduler, plan.steps, device)
        latents, cond = conditioning.prepare(
            models, image.convert("RGB"), inpaint_mask.convert("L"), depth if models.controlnet else None, text,
            generators, scheduler, request.control_scale, guided, device)
        sample_shape = (cond.rows, *latents.shape[1:])
        predict, how = runner.predictor(sample_shape, cond)
        latents = sampler.denoise(
            predict, scheduler, timesteps, latents, cond, plan.guidance, sampler.step_kwargs(scheduler, plan.eta, generators),
            progress=(lambda done, total: progress("generate", done, total)) if progress else None, cancel=cancel,
            preview=preview)
        images, decoded = decode(models.vae, latents, conditioning.processors(conditioning.vae_scale_factor(models.vae))[0])
    note(record, **how, **switched, vae_decode=decoded, scheduler=type(scheduler).__name__,
         timestep_spacing=scheduler.config.get("timestep_spacing"), steps=plan.steps, guidance=plan.guidance,
         eta=plan.eta, fast_lora=plan.lora, rows=cond.rows,
         prompt=request.prompt, negative_prompt=negative, guided=guided,
         prompt_tokens=token_count(models.tokenizer, request.prompt),
         negative_prompt_tokens=token_count(models.tokenizer, negative), depth_control=models.controlnet is not None)
    return images


def preload(request, registry: ModelRegistry | None = None, present_only: bool = False) -> list[str]:
    """Load what an AI run of ``request`` will need (the AI stage's slots it needs: core.models.slots),
    so a run started later, or meanwhile in another thread, finds them loaded. ``present_only``
    skips models not already on this machine (a warm-up must never start a download). Returns
    the slots loaded; never raises for a missing model (the run itself reports it)."""
    registry = registry or get_registry()
    device = resolve_device(request.device)
    loaded = []
    for name in needed(request, "ai"):
        model_id = SLOTS[name].model_id(request)
        if present_only and not SLOTS[name].present(model_id):
            continue
        try:
            registry.load(name, model_id, device)
        except BackdropError:
            continue
        loaded.append(name)
    return loaded


def warm_up(request, registry: ModelRegistry | None = None) -> dict:
    """Make a long-lived worker's first AI image fast: load the models already on this machine
    and, on CUDA, run one step at the request's bucket so cuDNN picks its kernels and the
    step's CUDA graph is captured. Returns what was done (for the log)."""
    import torch

    from core.engine.buckets import placement

    registry = registry or get_registry()
    started = time.perf_counter()
    loaded = preload(request, registry, present_only=True)
    done: dict = {"loaded": loaded}
    if resolve_device(request.device).startswith("cuda") and "inpaint" in loaded:
        size = placement(512, 512).bucket
        photo, repaint = Image.new("RGB", size, (128, 128, 128)), Image.new("L", size, 255)
        depth = Image.new("L", size, 128) if "controlnet" in loaded else None
        record: dict = {}
        generate_backgrounds(photo, repaint, depth, request.replace(steps=1), registry=registry, record=record)
        torch.cuda.synchronize()
        done["step"] = record.get("step")
    done["seconds"] = time.perf_counter() - started
    return done


def _models(request, depth, registry: ModelRegistry, device: str, warnings: list[str]) -> InpaintModels:
    """The policy: which models this run uses, and the warnings that explain what it runs without."""
    base = registry.load("inpaint", request.inpaint_model, device)  # no inpainting weights: fail fast
    if base.unet.config.in_channels not in (4, 9):
        raise InputError(f"{request.inpaint_model!r} has a UNet with {base.unet.config.in_channels} input channels: "
                         "use a Stable Diffusion 1.5 inpainting (9) or base (4) model")
    use_control = depth is not None and "controlnet" in needed(request, "ai")
    if request.control_scale == 0:
        warnings.append("depth control is off (control scale 0)")
    elif depth is None and not any(NO_DEPTH_CONTROL in w for w in warnings):  # said once, with its cause
        warnings.append(f"no depth map: the background was generated {NO_DEPTH_CONTROL}")
    controlnet = None
    if use_control:
        try:
            controlnet = registry.load("controlnet", request.controlnet_model, device)
        except ModelMissingError as exc:
            warnings.append(f"depth ControlNet unavailable, generated {NO_DEPTH_CONTROL}: {exc}")
    lora = registry.load("fast_lora", request.fast_lora, device) if request.fast else None  # missing: say how to fetch
    vae = registry.load("tiny_vae", request.tiny_vae_model, device) if request.tiny_vae else base.vae
    return InpaintModels(unet=base.unet, vae=vae, text_encoder=base.text_encoder, tokenizer=base.tokenizer,
                         scheduler_config=base.scheduler.config, controlnet=controlnet, lora=lora)


def _attention(device: str):
    """cuDNN / flash attention on CUDA (captured graphs keep the kernels chosen at capture)."""
    if device.startswith("cuda"):
        from core.engine.cuda_graphs import attention_backends

        return attention_backends()
    return contextlib.nullcontext()


def _text_embeddings(models: InpaintModels, request, negative: str, guided: bool, device: str, registry: ModelRegistry):
    """CLIP embeddings of the prompt pair (negative None without guidance), cached per model,
    revision, device, dtype and text, so re-runs and remixes with the same text skip the encoder."""
    key = (request.inpaint_model, registry.revision(request.inpaint_model), device, str(models.text_encoder.dtype),
           request.prompt, negative if guided else None)
    return get_cache().get_or_compute(
        "text", key, lambda: encode_prompt_pair(models.tokenizer, models.text_encoder, request.prompt, negative, guided, device))
