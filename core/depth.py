"""Depth map for the ControlNet: any transformers depth-estimation model (Depth Anything V2 Small
by default, DPT-Large selectable).

It runs on the ORIGINAL photo, not the masked one: the control image has to show the subject so
the generated background's perspective and horizon fit around it.
"""

from __future__ import annotations

from PIL import Image

from core.models import ModelRegistry, get_registry, resolve_device


def estimate_depth(image: Image.Image, model_id: str, device: str = "auto", registry: ModelRegistry | None = None) -> Image.Image:
    """Relative depth as an 8-bit 'L' image at ``image``'s size, near = bright (the convention
    the SD1.5 depth ControlNet was trained on), stretched to the full 0-255 range."""
    import torch

    device = resolve_device(device)
    processor, model = (registry or get_registry()).depth(model_id, device)
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
