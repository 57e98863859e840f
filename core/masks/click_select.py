"""Click and box selection with Segment Anything: the part of a photo a user points at.

A click on a part the automatic mask missed adds the region Segment Anything finds there; a
click on an object wrongly kept (a picture frame behind the subject) removes it. Points say
"this is in the region", negative points "this is not", a box "the region lies in here".
The image encoder is the expensive half of SAM (about a second on a CPU for the default
SlimSAM, several for SAM ViT-B); its embedding is kept in the stage cache (core.cache) per
photo and model, so each further click on the same photo only runs the prompt decoder.

Typical use (what the Studio does on each click)::

    region = select_region(photo, points=[(412, 230)])
    mask = combine(mask, region, "add")       # or "remove" for a wrongly kept object
"""

from __future__ import annotations


from typing import Iterable, Sequence

import numpy as np
from PIL import Image

from core.cache import get_cache, image_digest
from core.config import config
from core.errors import InputError
from core.models.device import resolve_device, torch_dtype
from core.models.registry import get_registry
from core.models.slots import SAM_MODEL

MODEL_SIDE = 1024  # SAM sees the photo at 1024 px on its long side; larger photos are reduced first
MODES = ("add", "remove", "replace")

Point = Sequence[float]


def select_region(photo: Image.Image, points: Iterable[Point] = (), negative_points: Iterable[Point] = (),
                  box: Sequence[float] | None = None, model_id: str | None = None, device: str = "auto",
                  registry=None) -> Image.Image:
    """The region Segment Anything selects ('L', the photo's size, 255 inside, 0 outside).

    ``points`` (in the region) and ``negative_points`` (not in it) are (x, y) in the photo's
    pixels; ``box`` is (x0, y0, x1, y1). At least one point or a box is needed. ``model_id``:
    a Hugging Face id or local folder of a SamModel checkpoint (default: the ``sam`` slot,
    ``BACKDROP_SAM_MODEL`` or core.models.slots.SAM_MODEL's default; the app and the command line pass
    the saved setting). Missing weights raise
    ModelMissingError naming the model and the fetch command."""
    import torch

    points, negative_points = _points(points, photo.size, "point"), _points(negative_points, photo.size, "negative point")
    box = _box(box, photo.size)
    if not points and box is None:
        raise InputError("click selection needs at least one point on the region, or a box around it")
    model_id = model_id or config().get(SAM_MODEL.env)
    device = resolve_device(device)
    registry = registry or get_registry()
    processor, model = registry.load("sam", model_id, device)

    small = _reduce(photo)
    scale = (small.width / photo.width, small.height / photo.height)
    embedding, reshaped = image_embedding(small, model_id, device, registry)
    to_model = _to_model_frame(small.size, reshaped)
    prompt: dict = {}
    labelled = [(p, 1) for p in points] + [(p, 0) for p in negative_points]
    if labelled:
        xy = [to_model(x * scale[0], y * scale[1]) for (x, y), _ in labelled]
        prompt["input_points"] = torch.tensor([[xy]], dtype=torch.float32, device=device)
        prompt["input_labels"] = torch.tensor([[[label for _, label in labelled]]], dtype=torch.long, device=device)
    if box is not None:
        (bx0, by0), (bx1, by1) = to_model(box[0] * scale[0], box[1] * scale[1]), to_model(box[2] * scale[0], box[3] * scale[1])
        prompt["input_boxes"] = torch.tensor([[[bx0, by0, bx1, by1]]], dtype=torch.float32, device=device)
    prompt = {k: v.to(torch_dtype(device)) if v.is_floating_point() else v for k, v in prompt.items()}
    # one point is ambiguous (a shirt, or the person wearing it): ask for SAM's three masks and
    # keep the one it scores best; more points or a box pin the region down
    multimask = len(labelled) == 1 and box is None
    with torch.no_grad():
        out = model(image_embeddings=embedding, multimask_output=multimask, **prompt)
    best = int(out.iou_scores[0, 0].float().argmax()) if multimask else 0
    logits = processor.image_processor.post_process_masks(
        out.pred_masks[:, :, best:best + 1].float().cpu(), [(photo.height, photo.width)], [reshaped], binarize=False,
    )[0][0, 0]
    return Image.fromarray(np.where(logits.numpy() > 0.0, 255, 0).astype(np.uint8), "L")


def image_embedding(small: Image.Image, model_id: str, device: str, registry=None):
    """(SAM's image embedding of ``small``, the (height, width) SAM resized it to), computed
    once per pixels, model revision and device (core.cache stage ``sam_embedding``)."""
    import torch

    registry = registry or get_registry()
    processor, model = registry.load("sam", model_id, device)

    def embed():
        inputs = processor(images=small, return_tensors="pt")
        with torch.no_grad():
            embedding = model.get_image_embeddings(inputs["pixel_values"].to(device, torch_dtype(device)))
        return embedding, tuple(int(v) for v in inputs["reshaped_input_sizes"][0])

    key = (image_digest(small), model_id, registry.revision(model_id), device)
    return get_cache().get_or_compute("sam_embedding", key, embed)


def combine(base: Image.Image, region: Image.Image, mode: str = "add") -> Image.Image:
    """``base`` ('L') with ``region`` (255 = selected) added (the union: selected pixels become
    opaque), removed (selected pixels become 0) or replacing it. Pixels outside the region keep
    their value, soft edges included."""
    if mode not in MODES:
        raise InputError(f"unknown selection mode {mode!r}: use one of {', '.join(MODES)}")
    if base.size != region.size:
        raise InputError(f"the region is {region.size[0]}x{region.size[1]}, the mask {base.size[0]}x{base.size[1]}")
    selected = np.asarray(region.convert("L")) >= 128
    if mode == "replace":
        return Image.fromarray(np.where(selected, 255, 0).astype(np.uint8), "L")
    out = np.array(base.convert("L"))
    out[selected] = 255 if mode == "add" else 0
    return Image.fromarray(out, "L")


def _reduce(photo: Image.Image) -> Image.Image:
    small = photo if photo.mode == "RGB" else photo.convert("RGB")
    factor = -(-max(small.size) // MODEL_SIDE)
    return small.reduce(factor) if factor > 1 else small


def _to_model_frame(size: tuple[int, int], reshaped: tuple[int, int]):
    """(x, y) in ``size`` (w, h) pixels -> SAM's frame, the image resized to ``reshaped`` (h, w)."""
    sx, sy = reshaped[1] / size[0], reshaped[0] / size[1]
    return lambda x, y: (x * sx, y * sy)


def _points(points: Iterable[Point], size: tuple[int, int], what: str) -> list[tuple[float, float]]:
    out = []
    for point in points:
        if len(point) != 2:
            raise InputError(f"a {what} is (x, y) (got {tuple(point)!r})")
        x, y = (float(v) for v in point)
        if not (0 <= x < size[0] and 0 <= y < size[1]):
            raise InputError(f"{what} ({x:g}, {y:g}) is outside the {size[0]}x{size[1]} photo")
        out.append((x, y))
    return out


def _box(box: Sequence[float] | None, size: tuple[int, int]) -> tuple[float, float, float, float] | None:
    if box is None:
        return None
    if len(box) != 4:
        raise InputError(f"a box is (x0, y0, x1, y1) (got {tuple(box)!r})")
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (0 <= x0 < x1 <= size[0] and 0 <= y0 < y1 <= size[1]):
        raise InputError(f"box ({x0:g}, {y0:g}, {x1:g}, {y1:g}) must be x0 < x1, y0 < y1 inside the {size[0]}x{size[1]} photo")
    return x0, y0, x1, y1
