"""Depth map for the ControlNet: any transformers depth-estimation model (Depth Anything V2 Small
by default, DPT-Large selectable).

It runs on the ORIGINAL photo, not the masked one: the control image has to show the subject so
the generated background's perspective and horizon fit around it.
"""

from __future__ import annotations

from PIL import Image

from core.cache import get_cache, image_digest
from core.models.device import resolve_device
from core.models.registry import ModelRegistry, get_registry


def estimate_depth(image: Image.Image, model_id: str, device: str = "auto", registry: ModelRegistry | None = None) -> Image.Image:
    """Relative depth as an 8-bit 'L' image at ``image``'s size, near = bright (the convention
    the SD1.5 depth ControlNet was trained on), stretched to the full 0-255 range. Cached per
    (pixels, model, revision, device): a re-run or remix of the same photo skips it."""
    registry = registry or get_registry()
    device = resolve_device(device)
    processor, model = registry.load("depth", model_id, device)
    key = (image_digest(image), model_id, registry.revision(model_id), device, str(model.dtype))
    return get_cache().get_or_compute("depth", key, lambda: _predict(image, processor, model, device))


def _predict(image: Image.Image, processor, model, device: str) -> Image.Image:
    import torch

    inputs = processor(images=image.convert("RGB"), return_tensors="pt")
    pixels = inputs["pixel_values"].to(device=device, dtype=model.dtype)
    with torch.inference_mode():
        predicted = model(pixel_values=pixels).predicted_depth
    depth = torch.nn.functional.interpolate(
        predicted.float().reshape(1, 1, *predicted.shape[-2:]),
        size=(image.height, image.width),
        mode="bicubic",
        align_corners=False,
    )[0, 0]
    low, high = depth.min(), depth.max()
    if not bool(high > low):  # a flat prediction carries no depth: return a flat map
        scaled = torch.zeros_like(depth)
    else:
        scaled = (depth - low) / (high - low) * 255.0
    return Image.fromarray(scaled.round().clamp(0, 255).to(torch.uint8).cpu().numpy(), mode="L")
