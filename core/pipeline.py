"""One generation, stage by stage: prepare, (prompt), segment, frame, (depth, generate), composite.

The generator only ever provides the background: the final image is always the ORIGINAL
full-resolution photo composited over it with the soft alpha, so the subject's pixels survive
the VAE round trip untouched. The request's framing (core.look.framing) puts the photo and its
mask on the output canvas first, resampled once if the subject is scaled; the background is
made for the whole canvas and the subject composited where it was placed.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageChops
from scipy import ndimage

from core.look.backgrounds import render_background
from core.look.composite import composite, cutout
from core.look.framing import SOFT_SCALE, Frame, frame_for, subject_box
from core.errors import Cancelled, ModelMissingError
from core.engine.buckets import crop, pad, placement
from core.imaging import check_mask, fit_mask, to_rgb
from core.masks.matting import refine_alpha
from core.record import note
from core.models.rembg_weights import revision as segmenter_revision
from core.prompting.denylist import DenyList
from core.prompting.stage import PromptRun, prepare as prepare_prompt
from core.request import GenerationRequest
from core.masks.segment import automatic_mask


@dataclass
class GenerationResult:
    images: list[Image.Image]  # one per variant, the canvas's size (the input's by default; RGBA for transparent)
    mask: Image.Image  # 'L', the input's size: the mask that was used
    cutout: Image.Image  # RGBA, the canvas's size: the subject where it was placed
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    device: str = "cpu"
    warnings: list[str] = field(default_factory=list)
    models: dict[str, dict] = field(default_factory=dict)  # {slot: {"id": ..., "revision": ...}}
    record: dict = field(default_factory=dict)  # what ran (core.record): sizes, bucket, texts, step kind...


def run(image: Image.Image, request: GenerationRequest, mask: Image.Image | None = None,
        progress=None, cancel=None, registry=None, picture: Image.Image | None = None,
        denylist: DenyList | None = None, preview=None) -> GenerationResult:
    """Replace the background of ``image`` as ``request`` says.

    ``mask`` ('L', white = subject) replaces the automatic one; it must have the image's size
    or its working size. ``picture`` is the background picture of an ``image`` background.
    ``denylist`` takes its terms out of an AI background's prompt (core.prompting).
    ``progress(stage, done, total)`` reports stages (and diffusion steps and the prompt
    assistant's tokens); ``cancel()`` returning True stops the run with Cancelled between stages,
    steps and variants. ``preview`` (core.engine.preview.LivePreview) is shown an AI background's
    estimate after its diffusion steps, composited with the subject; it never changes the result.
    """
    timings: dict[str, float] = {}
    notify = progress or (lambda stage, done, total: None)

    def check(where: str) -> None:
        """Stop here if asked to: between stages, and between the parts of a long stage (a 12 MP
        composite takes seconds)."""
        if cancel is not None and cancel():
            raise Cancelled(f"cancelled {where}")

    @contextmanager
    def stage(name: str):
        check(f"before {name}")
        notify(name, 0, 1)
        start = time.perf_counter()
        yield
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - start
        notify(name, 1, 1)

    with stage("prepare"):
        photo = to_rgb(image)
        background = request.background_spec
        background.check_picture(picture)
        record: dict = {}
        note(record, input_size=photo.size)
    prompt = PromptRun(request)
    if background.declared.generated:  # the weights load from disk while the photo is cut out
        _start_preload(request, registry)
        with stage("prompt") if request.enhance_prompt else nullcontext():
            prompt = prepare_prompt(request, denylist, registry, notify, cancel)
        request = prompt.request  # the prompt that runs; the stored request keeps the user's
        note(record, **prompt.record)
    with stage("segment"):
        if mask is not None:
            alpha = fit_mask(mask, photo.size)
        else:
            alpha = automatic_mask(photo, request.segmenter)
            check_mask(alpha)
    refine_warnings: list[str] = []  # a refinement past its time limit falls back, and says so
    if request.refine_matting:
        with stage("refine"):
            alpha = refine_alpha(photo, alpha, warnings=refine_warnings)
    models = {"segmenter": {"id": request.segmenter, "revision": segmenter_revision(request.segmenter)}
              if mask is None else {"id": "user mask", "revision": ""}}
    if prompt.model:
        models["prompt"] = prompt.model
    result = GenerationResult(images=[], mask=alpha, cutout=None, timings=timings, models=models, record=record,
                              warnings=prompt.warnings + refine_warnings)
    with stage("frame"):
        frame = frame_for(request, photo.size, alpha)
        placed, placed_alpha = frame.place(photo), frame.place(alpha, outside="clear")
        if not frame.identity:
            note(record, **frame.record(subject_box(alpha)))
        if frame.scale > SOFT_SCALE:
            result.warnings.append(f"the subject was enlarged {frame.scale:.1f} times to fill the canvas and may look "
                                   "soft: a larger photo of it, or a smaller fill, keeps it sharp")

    if background.declared.generated:
        # the cut-out's spill removal (numba, releases the GIL) runs while the background is generated
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="backdrop-cutout") as pool:
            cut = pool.submit(cutout, placed, placed_alpha, spill_removal=request.spill_removal)
            backgrounds = _ai_backgrounds(placed, placed_alpha, frame, request, result, stage, notify, cancel,
                                          registry,
                                          preview)
            with stage("composite"):
                result.cutout = cut.result()
    else:
        with stage("background"):
            backgrounds = [render_background(background, photo, alpha, picture, frame)]
    with stage("composite"):
        if result.cutout is None:
            result.cutout = cutout(placed, placed_alpha, spill_removal=request.spill_removal)
        for bg in backgrounds:
            check("during composite")
            result.images.append(composite(placed, placed_alpha, bg, request, cut=result.cutout))
    result.timings["total"] = sum(timings.values())
    return result


def _start_preload(request: GenerationRequest, registry) -> None:
    from core.engine.generate import preload

    threading.Thread(target=preload, args=(request, registry), name="backdrop-preload", daemon=True).start()


def inpaint_mask(alpha: Image.Image, size: tuple[int, int], grow: int) -> Image.Image:
    """What the generator repaints ('L', 255 = repaint) at working ``size``: the background,
    grown ``grow`` px into the subject so the old background's fringe is repainted too."""
    subject = np.asarray(alpha.resize(size, Image.Resampling.BILINEAR)) >= 128
    if grow > 0:  # a Euclidean distance keeps the cost flat for any grow (a MinFilter is grow^2)
        subject = ndimage.distance_transform_edt(subject) > grow
    return Image.fromarray(np.where(subject, 0, 255).astype(np.uint8), "L")


def new_area_mask(frame: Frame, size: tuple[int, int]) -> Image.Image:
    """'L' at ``size`` (the canvas's working size): 255 where the canvas is new area, which the
    photo does not cover, 0 where it does."""
    x0, y0, x1, y1 = frame.covered
    fx, fy = size[0] / frame.canvas[0], size[1] / frame.canvas[1]
    new = Image.new("L", size, 255)
    new.paste(0, (round(x0 * fx), round(y0 * fy), round(x1 * fx), round(y1 * fy)))
    return new


def continued_depth(work: Image.Image, new: Image.Image, estimate) -> Image.Image:
    """Depth for the whole working canvas ``work``: ``estimate`` (an image's depth map) run on
    the part the photo covers (``new`` 0), then continued into the new area by repeating its
    edge, so the depth runs on past the photo's border instead of dropping off a cliff."""
    box = Image.eval(new, lambda v: 255 - v).getbbox()
    if box is None or box == (0, 0, *work.size):
        return estimate(work)
    depth = np.asarray(estimate(work.crop(box)))
    widths = ((box[1], work.height - box[3]), (box[0], work.width - box[2]))
    return Image.fromarray(np.pad(depth, widths, mode="edge"), "L")


def _ai_backgrounds(placed, alpha, frame: Frame, request: GenerationRequest, result: GenerationResult, stage,
                    notify, cancel, registry, preview=None) -> list[Image.Image]:
    """The background of the whole canvas (``placed``: the photo on it, ``alpha``: its mask
    there), generated in the canvas's bucket (core.engine.buckets): the new area the photo does
    not cover is repainted with the rest of the background; depth (unless control is off or
    its weights are missing) is estimated on the placed photo, unmasked, and continued into the
    new area. Cropped and enlarged to the canvas's size. Fills in the models used with their
    revisions (result.models) and what ran (result.record)."""
    from core.engine.depth import estimate_depth
    from core.engine.generate import generate_backgrounds
    from core.engine.preview import for_run
    from core.models.slots import NO_DEPTH_CONTROL, SLOTS, needed
    from core.models.device import resolve_device
    from core.models.registry import get_registry

    registry = registry or get_registry()
    result.device = resolve_device(request.device)
    place = placement(*frame.canvas)
    note(result.record, bucket=place.name, content=place.content)
    with stage("resize"):
        work = placed.resize(place.content, Image.Resampling.LANCZOS)
        new = new_area_mask(frame, place.content)
        repaint = ImageChops.lighter(inpaint_mask(alpha, place.content, request.mask_grow), new)
    depth = None
    roles = needed(request, "ai")
    if "depth" in roles:
        with stage("depth"):
            try:
                def estimate(image):
                    return estimate_depth(image, request.depth_model, result.device, registry=registry)

                depth = pad(continued_depth(work, new, estimate), place)
            except ModelMissingError as exc:
                result.warnings.append(f"running {NO_DEPTH_CONTROL}: {exc}")
    # the slots the run cannot do without (the inpainting model, and fast mode's LoRA or the tiny
    # autoencoder when asked for); depth and its ControlNet only when they ran
    used = {name: SLOTS[name].model_id(request) for name, role in roles.items() if role == "required"}
    if depth is not None:
        used.update(depth=request.depth_model, controlnet=request.controlnet_model)
    with stage("generate"):
        steps = for_run(preview, placed, alpha, place, registry, result.device) if preview is not None else None
        # the bucket's strips outside the photo are repainted like the rest of the background
        generated = generate_backgrounds(pad(work, place, fill=(0, 0, 0)), pad(repaint, place, fill=255), depth,
                                         request, progress=notify, cancel=cancel, registry=registry,
                                         warnings=result.warnings, record=result.record, preview=steps)
    result.models.update({slot: registry.record(model_id) for slot, model_id in used.items()})
    with stage("upscale"):
        return [crop(image, place).resize(frame.canvas, Image.Resampling.LANCZOS) for image in generated]
