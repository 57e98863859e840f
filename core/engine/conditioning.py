"""What a denoising run reads besides the latents, and the starting latents themselves.

Built in the order diffusers' inpainting pipelines build them, because the per-variant CPU
generators are consumed in that order: (4-channel UNets: the photo's latents), the starting
noise of every variant, then the masked photo's latents. Keeping that order is what keeps a
seed's meaning: the same request gives the same image as the stock pipeline would.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
from PIL import Image


@dataclass
class Conditioning:
    """Tensors a run's steps read. Guided runs hold two rows per variant (negative first)."""

    text: torch.Tensor  # (rows, tokens, width) prompt embeddings
    extra: torch.Tensor | None  # (rows, 5, h, w) mask + masked-image latents for a 9-channel UNet
    control: torch.Tensor | None  # (rows, 3, H, W) depth control image; None runs without ControlNet
    control_scale: float
    guided: bool
    mask: torch.Tensor  # (variants, 1, h, w) 1 = repaint, at latent size
    image_latents: torch.Tensor | None  # (variants, 4, h, w) a 4-channel UNet keeps these where mask is 0
    noise: torch.Tensor  # (variants, 4, h, w) the starting noise (4-channel UNets re-noise kept latents with it)

    @property
    def rows(self) -> int:
        return self.text.shape[0]


@lru_cache(maxsize=8)
def processors(vae_scale_factor: int):
    """(photo, mask, control image) preprocessors, configured as the stock pipelines configure them."""
    from diffusers.image_processor import VaeImageProcessor

    photo = VaeImageProcessor(vae_scale_factor=vae_scale_factor, do_convert_rgb=True)
    mask = VaeImageProcessor(vae_scale_factor=vae_scale_factor, do_normalize=False, do_binarize=True,
                             do_convert_grayscale=True)
    control = VaeImageProcessor(vae_scale_factor=vae_scale_factor, do_convert_rgb=True, do_normalize=False)
    return photo, mask, control


def vae_scale_factor(vae) -> int:
    return 2 ** (len(vae.config.block_out_channels) - 1)


def encode_latents(vae, image: torch.Tensor, generators: list[torch.Generator]) -> torch.Tensor:
    """VAE latents of ``image`` (a batch), each row sampled with its own generator, scaled; TAESD
    gives its latents as they are, drawing nothing (diffusers' ``retrieve_latents``)."""
    from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion_inpaint import retrieve_latents

    rows = [retrieve_latents(vae.encode(image[i : i + 1]), generators[i]) for i in range(image.shape[0])]
    return vae.config.scaling_factor * torch.cat(rows, dim=0)


def text_rows(positive: torch.Tensor, negative: torch.Tensor | None, variants: int) -> torch.Tensor:
    """Prompt embeddings (1, N, D) repeated per variant; the negative rows first when guided."""
    rows = [negative, positive] if negative is not None else [positive]
    return torch.cat([r.repeat(1, variants, 1).view(variants, r.shape[1], -1) for r in rows])


def prepare(models, image: Image.Image, repaint: Image.Image, depth: Image.Image | None, text: torch.Tensor,
            generators: list[torch.Generator], scheduler, control_scale: float, guided: bool, device: str):
    """(starting latents, Conditioning) for ``len(generators)`` variants of ``image`` (RGB, the
    working size) where ``repaint`` ('L', 255 = repaint) is repainted, controlled by ``depth``
    ('L') unless it is None. ``scheduler`` must already have its timesteps set (its initial
    noise scale depends on them)."""
    from diffusers.utils.torch_utils import randn_tensor

    width, height = image.size
    variants = len(generators)
    factor = vae_scale_factor(models.vae)
    photo_proc, mask_proc, control_proc = processors(factor)
    dtype = text.dtype
    control = None
    if depth is not None:
        control = control_proc.preprocess(depth.convert("RGB"), height=height, width=width).to(dtype=torch.float32)
        control = control.repeat_interleave(variants, dim=0).to(device=device, dtype=models.controlnet.dtype)
        control = torch.cat([control] * 2) if guided else control
    photo = photo_proc.preprocess(image, height=height, width=width).to(dtype=torch.float32)
    mask = mask_proc.preprocess(repaint, height=height, width=width)
    masked_photo = photo * (mask < 0.5)

    image_latents = None
    if models.unet.config.in_channels == 4:
        image_latents = encode_latents(models.vae, photo.to(device=device, dtype=dtype), generators)
        image_latents = image_latents.repeat(variants // image_latents.shape[0], 1, 1, 1)
    shape = (variants, models.vae.config.latent_channels, height // factor, width // factor)
    noise = randn_tensor(shape, generator=generators, device=torch.device(device), dtype=dtype)
    latents = noise * scheduler.init_noise_sigma

    mask = torch.nn.functional.interpolate(mask, size=(height // factor, width // factor)).to(device=device, dtype=dtype)
    masked_latents = encode_latents(models.vae, masked_photo.to(device=device, dtype=dtype), generators)
    mask = mask.repeat(variants // mask.shape[0], 1, 1, 1)
    masked_latents = masked_latents.repeat(variants // masked_latents.shape[0], 1, 1, 1).to(device=device, dtype=dtype)
    extra = None
    if models.unet.config.in_channels == 9:
        extra = torch.cat([mask, masked_latents], dim=1)
        extra = torch.cat([extra] * 2) if guided else extra
    cond = Conditioning(text=text, extra=extra, control=control, control_scale=control_scale, guided=guided,
                        mask=mask, image_latents=image_latents, noise=noise)
    return latents, cond
