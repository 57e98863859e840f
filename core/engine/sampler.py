"""The denoising loop: the scheduler's own timesteps and ``step``, classifier-free guidance,
progress, the live preview (core.engine.preview) and cancel after every step. The network call
is a ``Predict`` function (core.engine.step), so the CPU's eager step and the GPU's captured
graph share everything else here."""

from __future__ import annotations

import inspect
from typing import Callable

import torch

from core.engine.preview import estimate
from core.errors import Cancelled


def set_timesteps(scheduler, steps: int, device: str) -> torch.Tensor:
    """The run's timesteps (full strength: every one of them), set on ``scheduler``."""
    scheduler.set_timesteps(steps, device=device)
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(0)
    return scheduler.timesteps


def step_kwargs(scheduler, eta: float, generators: list[torch.Generator]) -> dict:
    """``eta`` and the generators for the schedulers whose ``step`` takes them (DDIM's eta noise
    and Euler ancestral's noise are drawn from the variants' own generators)."""
    accepted = set(inspect.signature(scheduler.step).parameters)
    kwargs = {}
    if "eta" in accepted:
        kwargs["eta"] = eta
    if "generator" in accepted:
        kwargs["generator"] = generators
    return kwargs


def denoise(predict, scheduler, timesteps: torch.Tensor, latents: torch.Tensor, cond, guidance: float,
            extra_step: dict, progress: Callable[[int, int], None] | None = None,
            cancel: Callable[[], bool] | None = None, preview=None) -> torch.Tensor:
    """Run every timestep from ``latents``; returns the final latents. ``cancel()`` is asked
    after each step and stops the run with Cancelled. ``preview`` (a core.engine.preview.StepPreview)
    gets the step's estimate of the clean latents when it is ``due``."""
    total = len(timesteps)
    for i, t in enumerate(timesteps):
        model_input = torch.cat([latents] * 2) if cond.guided else latents
        model_input = scheduler.scale_model_input(model_input, t)
        noise = predict(model_input, t)
        if cond.guided:
            uncond, text = noise.chunk(2)
            noise = uncond + guidance * (text - uncond)
        output = scheduler.step(noise, t, latents, **extra_step)
        before, latents = latents, output.prev_sample
        if cond.image_latents is not None:  # a 4-channel UNet: put the kept region back, noised to the next step
            kept = cond.image_latents
            if i < total - 1:
                kept = scheduler.add_noise(kept, cond.noise, torch.tensor([timesteps[i + 1]]))
            latents = (1 - cond.mask) * kept + cond.mask * latents
        if preview is not None and preview.due(i + 1, total):
            clean = estimate(scheduler, output, noise, t, before)
            if clean is not None and cond.image_latents is not None:  # the kept region as it is
                clean = (1 - cond.mask) * cond.image_latents + cond.mask * clean
            preview.update(i + 1, total, clean)
        if progress is not None:
            progress(i + 1, total)
        if cancel is not None and cancel():
            raise Cancelled(f"generation cancelled at step {i + 1} of {total}")
    return latents
