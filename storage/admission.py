"""What a generation must pass before it is recorded: whatever would fail its run at once is
refused when it is submitted, so the app, the command line and the API say why at once and no
failed row is left behind.

- The photo and a background picture decode, within the server's pixel limit (storage.limits).
- A mask given with it has the photo's size and marks a subject and a background.
- Without one, the segmenter is a known, local rembg model whose weights are on this machine.
- With ``cut_out``, the automatic mask is made now and must mark a subject and a background
  (core.imaging.check_mask: a 20000x20 strip, or a photo of nothing, fails here). It is cached
  (core.cache), so the run in this process reuses it. Single submissions (the API, ``backdrop
  replace``) do this; a batch does not, where every photo's cut-out would come before the first job.
"""

from __future__ import annotations

import os

from PIL import Image as PILImage

from core.request import GenerationRequest
from storage import limits


def check(request: GenerationRequest, image: PILImage.Image | bytes | str | os.PathLike,
          mask: PILImage.Image | bytes | str | os.PathLike | None = None,
          picture: bytes | str | os.PathLike | None = None, cut_out: bool = False) -> None:
    """InputError (or ModelMissingError) for what would fail the generation at once."""
    from core.imaging import check_mask, fit_mask, load_image, load_mask

    photo = image if isinstance(image, PILImage.Image) else load_image(image, what="photo")
    limits.check_pixels(*photo.size)
    if picture is not None:
        limits.check_pixels(*load_image(picture, what="background picture").size, what="the background picture")
    if isinstance(mask, PILImage.Image):
        fit_mask(mask, photo.size)
    elif mask is not None:
        load_mask(mask, photo.size)
    if mask is not None:
        return
    from core.masks.segment import SESSION_DEVICE, automatic_mask
    from core.models.registry import get_registry

    get_registry().load("segmenter", request.segmenter, SESSION_DEVICE)  # unknown, remote, or weights not here
    if cut_out:
        check_mask(automatic_mask(photo, request.segmenter))
