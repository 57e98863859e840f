"""The live preview: after a diffusion step, the current estimate of the final background.

A person waiting minutes for an AI background on a CPU sees it form and can cancel a bad start
early. Each step's estimate is the predicted clean latents (``x0``): the scheduler's own where
its ``step`` gives it (DDIM and Euler ancestral: ``pred_original_sample``; LCM: ``denoised``),
else computed from the noise prediction and the scheduler's ``alphas_cumprod`` exactly as DDIM
computes it (DPM-Solver++, TCD). It is decoded cheaply: by default with a fixed linear map from
SD1.5's four latent channels to RGB that needs no weights (the factors ComfyUI's latent2rgb
preview publishes for SD1.5; AUTOMATIC1111's "approximate" preview works the same way), at the
latent size (1/8 of the working size), or with TAESD (``AutoencoderTiny``, the ``preview``
model slot) when its weights are here. The estimate is then composited like the result: the
original photo over it with the soft alpha, at a small size, the variants side by side.

Nothing here changes the run: the estimate is read from tensors the step already made and
never consumes a generator's numbers, so the images are the same with and without a preview.
A preview that fails is logged and turned off for the rest of the run; it never fails one.
Torch is imported where a run uses it: storage imports ``LivePreview`` from here.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

# SD1.5 latent channel -> (R, G, B), applied to the scaled latents the UNet works on; RGB in -1..1
LATENT_RGB_SD15 = (
    (0.3512, 0.2297, 0.3227),
    (0.3250, 0.4974, 0.2350),
    (-0.2829, 0.1762, 0.2721),
    (-0.2120, -0.2616, -0.7177),
)
SIDE = 384  # the long side of each variant's preview, in pixels (half that from three variants on)
GAP = 8  # pixels between the variants' previews
COLUMNS = 4  # variants' previews in a row
EVERY_S = 0.25  # at most this often a preview is made (every step on a CPU, where a step takes seconds)
BUDGET = 0.05  # and at most this share of the run's time goes to previews (TAESD on a CPU: every few steps)

Show = Callable[[Image.Image, int, int], None]  # (preview image, step, of steps)


@dataclass(frozen=True)
class LivePreview:
    """What a caller of core.pipeline.run asks for: ``show(image, step, total)`` receives each
    preview (RGB); at most one every ``every_s`` seconds (the first step's always), and at most
    ``budget`` of the run's time spent on them; ``model`` is the TAESD model (id or folder) to
    decode with when its weights are here (never downloaded), else the linear map is used."""

    show: Show
    every_s: float = EVERY_S
    model: str | None = None
    budget: float = BUDGET


def estimate(scheduler, output, noise: torch.Tensor, timestep, sample: torch.Tensor) -> torch.Tensor | None:
    """The predicted clean latents of a step: ``output`` is what ``scheduler.step`` returned for
    the (guided) ``noise`` prediction at ``timestep`` from ``sample`` (the latents before the
    step). None for a scheduler that gives none and has no ``alphas_cumprod``."""
    for name in ("pred_original_sample", "denoised"):
        given = getattr(output, name, None)
        if given is not None:
            return given
    alphas = getattr(scheduler, "alphas_cumprod", None)
    if alphas is None:
        return None
    alpha = alphas[int(timestep)].to(device=sample.device, dtype=sample.dtype)
    kind = scheduler.config.prediction_type
    if kind == "epsilon":
        return (sample - (1 - alpha) ** 0.5 * noise) / alpha**0.5
    if kind == "v_prediction":
        return alpha**0.5 * sample - (1 - alpha) ** 0.5 * noise
    if kind == "sample":
        return noise
    raise ValueError(f"unknown prediction type {kind!r}")


def linear_rgb(latents: torch.Tensor) -> torch.Tensor:
    """(rows, 3, h, w) RGB in -1..1 at the latent size, by the fixed SD1.5 map."""
    import torch

    factors = torch.tensor(LATENT_RGB_SD15, device=latents.device, dtype=latents.dtype)
    return torch.einsum("bchw,cr->brhw", latents, factors)


def taesd_rgb(taesd, latents: torch.Tensor) -> torch.Tensor:
    """(rows, 3, 8h, 8w) RGB in -1..1 by TAESD, called as diffusers' pipelines call a VAE."""
    return taesd.decode(latents.to(taesd.dtype) / taesd.config.scaling_factor, return_dict=False)[0]


def to_uint8(rgb: torch.Tensor) -> np.ndarray:
    """(rows, H, W, 3) uint8 from RGB in -1..1."""
    import torch

    return ((rgb.float() + 1) * 127.5).clamp(0, 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


class StepPreview:
    """One run's previews: decodes each estimate, composites it with the subject and hands it to
    ``show``. Built before the denoising starts (the photo and alpha shrunk once); the sampler
    asks ``due`` after each step and calls ``update`` with the estimate when it is."""

    def __init__(self, show: Show, photo: Image.Image, alpha: Image.Image, place, every_s: float = EVERY_S,
                 taesd=None, budget: float = BUDGET) -> None:
        self.show_image, self.place, self.every_s, self.taesd, self.budget = show, place, every_s, taesd, budget
        self.decoder = "taesd" if taesd is not None else "linear"
        self._photo, self._alpha = photo.convert("RGB"), alpha.convert("L")
        self._subjects: dict[int, tuple[Image.Image, Image.Image]] = {}
        self._last: float | None = None  # when the last preview started
        self._spent = 0.0  # and how long it took
        self.failed = False

    def subject(self, side: int) -> tuple[Image.Image, Image.Image]:
        """(photo, alpha) with the long side ``side``, shrunk once."""
        if side not in self._subjects:
            scale = side / max(self._photo.size)
            size = (max(1, round(self._photo.width * scale)), max(1, round(self._photo.height * scale)))
            self._subjects[side] = (self._photo.resize(size, Image.Resampling.BILINEAR),
                                    self._alpha.resize(size, Image.Resampling.BILINEAR))
        return self._subjects[side]

    def due(self, done: int, total: int) -> bool:
        """Whether to make a preview after step ``done``: the first step's, then at most one every
        ``every_s`` seconds (on a GPU many steps pass between two), and no sooner than keeps the
        previews within ``budget`` of the time (the linear map: every step on a CPU; TAESD, 2-3 s
        there at 512 px: about every 40-60 s)."""
        if self.failed:
            return False
        return self._last is None or time.monotonic() - self._last >= max(self.every_s, self._spent / self.budget)

    def update(self, done: int, total: int, latents: torch.Tensor | None) -> None:
        """Decode ``latents`` (the estimate, one row per variant; None: the scheduler gives none),
        composite and show them."""
        self._last = time.monotonic()
        try:
            if latents is None:
                raise ValueError("this scheduler gives no estimate of the clean latents")
            self.show_image(self.image(latents), done, total)
        except Exception:  # noqa: BLE001 - a preview must never fail the generation it shows
            log.warning("the step preview failed and is off for the rest of this run", exc_info=True)
            self.failed = True
        self._spent = time.monotonic() - self._last

    def image(self, latents: torch.Tensor) -> Image.Image:
        """The composited preview of every variant: one or two side by side at SIDE px, more at
        half that, COLUMNS to a row."""
        rgb = to_uint8(taesd_rgb(self.taesd, latents) if self.taesd is not None else linear_rgb(latents))
        photo, alpha = self.subject(SIDE if len(rgb) <= 2 else SIDE // 2)
        columns = min(len(rgb), COLUMNS)
        rows = -(-len(rgb) // columns)
        width, height = photo.size
        out = Image.new("RGB", (columns * (width + GAP) - GAP, rows * (height + GAP) - GAP), (255, 255, 255))
        for index, pixels in enumerate(rgb):
            out.paste(self._composite(pixels, photo, alpha), ((index % columns) * (width + GAP),
                                                              (index // columns) * (height + GAP)))
        return out

    def _composite(self, pixels: np.ndarray, photo: Image.Image, alpha: Image.Image) -> Image.Image:
        """One variant: the photo's part of the bucket, at the preview's size, under the subject."""
        scale = pixels.shape[1] / self.place.bucket[0]
        box = tuple(value * scale for value in self.place.box)
        background = Image.fromarray(pixels, "RGB").resize(photo.size, Image.Resampling.BILINEAR, box=box)
        background.paste(photo, mask=alpha)
        return background


def for_run(live: LivePreview, photo: Image.Image, alpha: Image.Image, place, registry, device: str) -> StepPreview:
    """The run's StepPreview: TAESD when ``live.model`` names weights that are here (loaded once,
    through the registry, on the run's device), else the linear map."""
    from core.errors import BackdropError
    from core.models.slots import SLOTS

    taesd = None
    if live.model and SLOTS["preview"].present(live.model):
        try:
            taesd = registry.load("preview", live.model, device)
        except BackdropError as exc:  # unusable weights: the linear map still shows the run
            log.warning("step preview model %r not used: %s", live.model, exc)
    return StepPreview(live.show, photo, alpha, place, every_s=live.every_s, taesd=taesd, budget=live.budget)
