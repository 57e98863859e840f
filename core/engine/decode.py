"""Latents to images with the VAE, bounded in memory.

At full resolution the VAE decoder holds a few full-size 128- and 256-channel activations: at
768x1024 about 3 GB in fp32 (measured on the CPU; 1.5 GB in fp16), more than everything else a
run holds besides the weights. So large images are decoded in tiles (diffusers' own tiled decode,
overlapping and blended), and several variants one at a time; small ones are decoded as the stock
pipelines decode them, so their images stay identical to the stock pipelines'.
"""

from __future__ import annotations


import torch
from PIL import Image

from core.config import config
from core.engine.conditioning import vae_scale_factor

SLICE_ABOVE_PIXELS = 1024 * 1024  # a batch larger than this in total is decoded one variant at a time


def decode(vae, latents: torch.Tensor, processor) -> tuple[list[Image.Image], str]:
    """RGB images of ``latents`` and how they were decoded: "full", "sliced" or "tiled", or
    "tiny" by TAESD (the tiny-autoencoder option: 64 channels at full size, never tiled)."""
    from diffusers import AutoencoderTiny

    rows, _, height, width = latents.shape
    pixels = height * width * vae_scale_factor(vae) ** 2
    scaled = latents / vae.config.scaling_factor
    if isinstance(vae, AutoencoderTiny):
        how = "tiny"
        decoded = vae.decode(scaled, return_dict=False)[0]
    elif pixels > config().vae_tile_pixels:  # per variant; default 512 x 768
        how = "tiled"
        decoded = torch.cat([vae.tiled_decode(scaled[i : i + 1], return_dict=False)[0] for i in range(rows)])
    elif pixels * rows > SLICE_ABOVE_PIXELS and rows > 1:
        how = "sliced"
        decoded = torch.cat([vae.decode(scaled[i : i + 1], return_dict=False)[0] for i in range(rows)])
    else:
        how = "full"
        decoded = vae.decode(scaled, return_dict=False)[0]
    images = processor.postprocess(decoded, output_type="pil", do_denormalize=[True] * rows)
    return [image.convert("RGB") for image in images], how

