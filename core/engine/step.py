"""One denoising step's network: the depth ControlNet and the inpainting UNet as ONE module.

The same module runs eagerly (CPU, or CUDA without graphs) and is what core.engine.cuda_graphs
captures: a single forward whose inputs are plain tensors, so a captured graph replays the whole
step with one launch. Its arithmetic is the stock diffusers inpainting pipelines' (ControlNet on
the scaled latents, its residuals scaled, then the UNet on latents + mask + masked-image
latents), which the tests check image for image.
"""

from __future__ import annotations

from typing import Callable

import torch

Predict = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (scaled latents, timestep) -> noise


class GuidedStep(torch.nn.Module):
    """ControlNet (optional) + UNet. ``extra`` is the mask and masked-image latents a 9-channel
    inpainting UNet reads beside the latents (None for a 4-channel UNet); ``control`` the
    control image (None runs the UNet alone); ``scale`` the ControlNet's strength, a number or
    a 0-dim tensor (a captured graph reads it from a tensor, so one graph serves every value)."""

    def __init__(self, unet: torch.nn.Module, controlnet: torch.nn.Module | None = None) -> None:
        super().__init__()
        self.unet = unet
        self.controlnet = controlnet

    def forward(self, sample, timestep, text, extra=None, control=None, scale=1.0):
        residuals = {}
        if self.controlnet is not None and control is not None:
            down, mid = self.controlnet(sample, timestep, encoder_hidden_states=text, controlnet_cond=control,
                                        conditioning_scale=scale, return_dict=False)
            residuals = {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}
        if extra is not None:
            sample = torch.cat([sample, extra], dim=1)
        return self.unet(sample, timestep, encoder_hidden_states=text, return_dict=False, **residuals)[0]


def eager_predictor(step: GuidedStep, cond) -> Predict:
    """The step run as ordinary PyTorch calls with this run's conditioning."""

    def predict(sample: torch.Tensor, timestep: torch.Tensor) -> torch.Tensor:
        return step(sample, timestep, cond.text, cond.extra, cond.control, cond.control_scale)

    return predict
