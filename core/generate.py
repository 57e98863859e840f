"""The AI background: SD1.5 inpainting with the depth ControlNet, at the working size.

Only the background comes from here. The pipeline composites the ORIGINAL photo over the
(upscaled) result, because the VAE round trip and the 9-channel UNet also change pixels outside
the mask; the subject's pixels therefore never depend on this module.

Seeds: variant ``i`` uses its own ``torch.Generator`` (on the CPU, so the starting noise is the
same whatever the device) seeded with ``request.seed + i``. All variants run as one batch; the
same request and seed give the same images on the same device.
"""

from __future__ import annotations

from typing import Callable

from PIL import Image

from core.cache import get_cache
from core.errors import Cancelled, InputError, ModelMissingError
from core.device import resolve_device
from core.models import ModelRegistry, get_registry
from core.presets import full_negative_prompt
from core.request import SCHEDULERS
from core.prompts import encode_prompt_pair, token_count, truncation_warning
from core.record import note

# eta=1 makes DDIM stochastic like the reference pipeline's sampler (DDIM, 42 steps, eta 1)
DDIM_ETA = 1.0


def make_scheduler(name: str, config):
    """A fresh scheduler of the request's kind from the checkpoint's scheduler config."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler

    if name == "dpmpp":
        return DPMSolverMultistepScheduler.from_config(config, algorithm_type="dpmsolver++")
    if name == "ddim":
        return DDIMScheduler.from_config(config)
    if name == "euler_a":
        return EulerAncestralDiscreteScheduler.from_config(config)
    raise InputError(f"unknown scheduler {name!r}: use one of {', '.join(SCHEDULERS)}")


NO_DEPTH_CONTROL = "without depth control"  # in every warning that says the depth map is not used


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
) -> list[Image.Image]:
    """``request.variants`` RGB images at ``image``'s (working) size; the mask is 255 where the
    background is repainted. Depth None or control scale 0 runs without the ControlNet; that,
    a missing ControlNet and an over-long prompt are appended to ``warnings`` (the missing depth
    map only when no warning there already says so). What ran (the texts encoded, their token
    counts, eta, depth control) is noted in ``record`` (core.record)."""
    import torch

    width, height = image.size
    if width % 8 or height % 8:
        raise InputError(f"working size must be a multiple of 8 (got {width}x{height})")
    for name, other in (("inpaint mask", inpaint_mask), ("depth map", depth)):
        if other is not None and other.size != image.size:
            raise InputError(f"{name} is {other.width}x{other.height}, image is {width}x{height}")
    warnings = warnings if warnings is not None else []
    registry = registry or get_registry()
    device = resolve_device(request.device)

    registry.inpaint_base(request.inpaint_model, device)  # no inpainting weights: fail fast
    use_control = depth is not None and request.control_scale > 0
    if request.control_scale == 0:
        warnings.append("depth control is off (control scale 0)")
    elif depth is None and not any(NO_DEPTH_CONTROL in w for w in warnings):  # said once, with its cause
        warnings.append(f"no depth map: the background was generated {NO_DEPTH_CONTROL}")
    if use_control:
        try:
            registry.controlnet(request.controlnet_model, device)
        except ModelMissingError as exc:
            warnings.append(f"depth ControlNet unavailable, generated {NO_DEPTH_CONTROL}: {exc}")
            use_control = False
    pipe = registry.inpaint_pipeline(request.inpaint_model, request.controlnet_model if use_control else None, device)
    pipe.scheduler = make_scheduler(request.scheduler, pipe.scheduler.config)

    negative = full_negative_prompt(request)
    for text, what in ((request.prompt, "prompt"), (negative, "negative prompt")):
        message = truncation_warning(pipe.tokenizer, text, what)
        if message:
            warnings.append(message)

    if cancel is not None and cancel():
        raise Cancelled("generation cancelled before it started")
    stopped_at: list[int] = []

    def on_step_end(p, step, timestep, tensors):
        if progress is not None:
            progress("generate", step + 1, p.num_timesteps)
        if cancel is not None and cancel() and not stopped_at:
            stopped_at.append(step + 1)
            p._interrupt = True  # diffusers skips the remaining steps
        return tensors

    prompt_embeds, negative_embeds = _text_embeddings(pipe, request, negative, device, registry)
    kwargs = dict(
        prompt_embeds=prompt_embeds,
        negative_prompt_embeds=negative_embeds,
        image=image.convert("RGB"),
        mask_image=inpaint_mask.convert("L"),
        height=height,
        width=width,
        strength=1.0,
        num_inference_steps=request.steps,
        guidance_scale=request.guidance,
        num_images_per_prompt=request.variants,
        generator=[torch.Generator("cpu").manual_seed(request.seed + i) for i in range(request.variants)],
        callback_on_step_end=on_step_end,
        output_type="pil",
    )
    if request.scheduler == "ddim":
        kwargs["eta"] = DDIM_ETA
    note(record, prompt=request.prompt, negative_prompt=negative, depth_control=use_control,
         prompt_tokens=token_count(pipe.tokenizer, request.prompt),
         negative_prompt_tokens=token_count(pipe.tokenizer, negative), **({"eta": kwargs["eta"]} if "eta" in kwargs else {}))
    if use_control:
        kwargs.update(control_image=depth.convert("RGB"), controlnet_conditioning_scale=request.control_scale)
    with torch.inference_mode():
        images = pipe(**kwargs).images
    if stopped_at:
        raise Cancelled(f"generation cancelled at step {stopped_at[0]} of {request.steps}")
    return [im.convert("RGB") for im in images]


def _text_embeddings(pipe, request, negative: str, device: str, registry: ModelRegistry):
    """CLIP embeddings of the prompt pair (negative None without guidance), cached per model,
    revision, device, dtype and text, so re-runs and remixes with the same text skip the encoder."""
    import torch

    guided = request.guidance > 1  # diffusers' rule for classifier-free guidance

    def encode():
        with torch.inference_mode():
            return encode_prompt_pair(pipe.tokenizer, pipe.text_encoder, request.prompt, negative, guided, device)

    key = (request.inpaint_model, registry.revision(request.inpaint_model), device, str(pipe.text_encoder.dtype),
           request.prompt, negative if guided else None)
    return get_cache().get_or_compute("text", key, encode)
