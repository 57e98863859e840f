"""How a run samples: the standard settings of a request, or a fast mode's recipe.

Fast mode fuses an acceleration LoRA into the UNet (core.engine.lora) and samples as the LoRA
was distilled to be sampled: a few steps with its own scheduler, and guidance at most 1, so no
unguided row is computed at all (classifier-free guidance runs only above 1, as in diffusers).
Each recipe is the one its authors publish with the weights (their model cards and diffusers'
documentation): the scheduler, the steps, the guidance and the scheduler's eta. A recipe is
chosen by its LoRA's Hugging Face id (the request's ``fast_lora`` field, the ``fast_lora`` model
slot); its ``weight_name`` is the one file of that repository the slot fetches and loads.

This module is imported by core.request, so it imports nothing heavy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

# eta=1 makes DDIM stochastic like the reference pipeline's sampler (DDIM, 42 steps, eta 1)
DDIM_ETA = 1.0


@dataclass(frozen=True)
class Recipe:
    """One acceleration LoRA and how to sample with it."""

    lora: str  # Hugging Face id of the LoRA's repository
    weight_name: str  # the LoRA's file in that repository
    label: str
    scheduler: str  # a name core.engine.generate.make_scheduler knows
    steps: int
    guidance: float
    eta: float
    license: str

    def describe(self) -> str:
        """The recipe in words: LCMScheduler, 4 steps, guidance 1."""
        eta = f", eta {self.eta:g}" if self.eta else ""
        return f"{RECIPE_SCHEDULERS[self.scheduler][0]}, {self.steps} steps, guidance {self.guidance:g}{eta}"


RECIPES: dict[str, Recipe] = {recipe.lora: recipe for recipe in (
    # diffusers' LCM-LoRA guides (text-to-image, inpainting, ControlNet): LCMScheduler, 4 steps,
    # guidance 1 to 2; at 1 classifier-free guidance is off
    Recipe("latent-consistency/lcm-lora-sdv1-5", "pytorch_lora_weights.safetensors", "LCM-LoRA SD1.5", "lcm",
           4, 1.0, 0.0, "openrail++"),
    # Hyper-SD's model card: DDIM with trailing timestep spacing, guidance 0 (eta 0: DDIM's own default)
    Recipe("ByteDance/Hyper-SD", "Hyper-SD15-4steps-lora.safetensors", "Hyper-SD SD1.5 4-step", "ddim_trailing",
           4, 0.0, 0.0, "openrail++"),
    # TCD's model card: TCDScheduler, 4 steps, guidance 0, eta ("gamma") 0.3
    Recipe("h1t/TCD-SD15-LoRA", "pytorch_lora_weights.safetensors", "TCD SD1.5", "tcd", 4, 0.0, 0.3, "mit"),
)}
DEFAULT_LORA = "latent-consistency/lcm-lora-sdv1-5"

# a recipe's scheduler name -> (what it is, the sampler's name in AUTOMATIC1111's parameters
# text); the request's own schedulers are core.request.SCHEDULERS
RECIPE_SCHEDULERS = {"lcm": ("LCMScheduler", "LCM"), "ddim_trailing": ("DDIM with trailing timesteps", "DDIM"),
                     "tcd": ("TCDScheduler", "TCD")}


@dataclass(frozen=True)
class Sampling:
    """What one run samples with. ``lora`` is the fused LoRA's id (None: the model's own weights)."""

    scheduler: str
    steps: int
    guidance: float
    eta: float
    lora: str | None = None

    @property
    def guided(self) -> bool:
        """Classifier-free guidance (an unguided row beside each prompt row): diffusers' rule."""
        return self.guidance > 1

    @property
    def recipe(self) -> Recipe | None:
        return RECIPES[self.lora] if self.lora else None


def sampling(request) -> Sampling:
    """The request's own scheduler, steps and guidance, or in fast mode its LoRA's recipe."""
    return sampling_of(request.params())


def sampling_of(values: Mapping[str, Any]) -> Sampling:
    """``sampling`` for a request's field values (a stored request's too: storage estimates a
    job's work from it; a version-2 request, without fast mode, samples as asked)."""
    if values.get("fast"):
        recipe = RECIPES[values.get("fast_lora") or DEFAULT_LORA]
        return Sampling(recipe.scheduler, recipe.steps, recipe.guidance, recipe.eta, recipe.lora)
    scheduler = values.get("scheduler", "dpmpp")
    return Sampling(scheduler, int(values.get("steps", 25)), float(values.get("guidance", 7.5)),
                    DDIM_ETA if scheduler == "ddim" else 0.0)


def step_rows(values: Mapping[str, Any]) -> int:
    """How many network rows a run of these field values computes: steps x variants, twice when
    guided. What an AI job's time grows with."""
    plan = sampling_of(values)
    return max(plan.steps * int(values.get("variants", 1)) * (2 if plan.guided else 1), 1)

