"""Our denoising engine against the stock diffusers pipelines, on the CPU in fp32.

Tolerance: none. Our loop performs the stock pipelines' operations in the same order on the
same tensors and draws from each variant's generator in the same order, so in fp32 on one
device the final latents must be bit-identical (torch.equal), and so must the decoded images.
Checked for every scheduler, with and without the depth ControlNet, guided and unguided, for
one and several variants, and for 9- and 4-channel UNets.
"""

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from core.engine import generate as engine
from core.engine.generate import generate_backgrounds, make_scheduler
from core.engine.recipes import DDIM_ETA
from core.models.registry import ModelRegistry
from core.engine.prompts import encode_prompt_pair
from core.request import GenerationRequest

SIZE = (96, 64)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def registry():
    return ModelRegistry()


@pytest.fixture(scope="module")
def inputs(inpaint_inputs):
    return inpaint_inputs


@pytest.fixture(scope="module")
def four_channel_model(tmp_path_factory, tiny_models):
    """The tiny inpainting model with a 4-channel UNet (a base SD1.5-style model used for inpainting)."""
    from diffusers import StableDiffusionInpaintPipeline, UNet2DConditionModel

    from tiny_models import UNET

    pipe = StableDiffusionInpaintPipeline.from_pretrained(tiny_models["inpaint"], safety_checker=None,
                                                          requires_safety_checker=False)
    torch.manual_seed(5)
    pipe.unet = UNet2DConditionModel(**{**UNET, "in_channels": 4})
    folder = tmp_path_factory.mktemp("tiny-4ch")
    pipe.save_pretrained(folder, safe_serialization=True)
    return str(folder)


def ours(inputs, request, registry, monkeypatch, depth=True, record=None, preview=None):
    """(final latents, images) from the product's generate_backgrounds (``record``: what ran;
    showing ``preview``, a core.engine.preview.StepPreview, each step's estimate)."""
    photo, repaint, depth_map = inputs
    seen = {}
    real_decode = engine.decode

    def keep_latents(vae, latents, processor):
        seen["latents"] = latents.clone()
        return real_decode(vae, latents, processor)

    monkeypatch.setattr(engine, "decode", keep_latents)
    record = record if record is not None else {}
    images = generate_backgrounds(photo, repaint, depth_map if depth else None, request, registry=registry, record=record,
                                  preview=preview)
    assert record["step"] == "eager" and record["vae_decode"] == ("tiny" if request.tiny_vae else "full")
    return seen["latents"], images


def stock(inputs, request, registry, control: bool, vae=None):
    """(final latents, images) from StableDiffusionControlNetInpaintPipeline (or the plain
    StableDiffusionInpaintPipeline without control), given the same modules (the model's VAE or
    ``vae``), prompt embeddings, scheduler and generators."""
    from diffusers import StableDiffusionControlNetInpaintPipeline, StableDiffusionInpaintPipeline

    photo, repaint, depth = inputs
    base = registry.load("inpaint", request.inpaint_model, "cpu")
    parts = dict(vae=vae or base.vae, text_encoder=base.text_encoder, tokenizer=base.tokenizer, unet=base.unet,
                 scheduler=make_scheduler(request.scheduler, base.scheduler.config), safety_checker=None,
                 feature_extractor=None, requires_safety_checker=False)
    guided = request.guidance > 1
    with torch.inference_mode():
        positive, negative = encode_prompt_pair(base.tokenizer, base.text_encoder, request.prompt,
                                                engine.full_negative_prompt(request), guided, "cpu")
    kwargs = dict(prompt_embeds=positive, negative_prompt_embeds=negative, image=photo, mask_image=repaint,
                  height=SIZE[1], width=SIZE[0], strength=1.0, num_inference_steps=request.steps,
                  guidance_scale=request.guidance, num_images_per_prompt=request.variants,
                  eta=DDIM_ETA if request.scheduler == "ddim" else 0.0)
    if control:
        pipe = StableDiffusionControlNetInpaintPipeline(**parts, controlnet=registry.load("controlnet", request.controlnet_model, "cpu"))
        kwargs.update(control_image=depth.convert("RGB"), controlnet_conditioning_scale=request.control_scale)
    else:
        pipe = StableDiffusionInpaintPipeline(**parts)
    pipe.set_progress_bar_config(disable=True)
    results = {}
    for output_type in ("latent", "pil"):
        generators = [torch.Generator("cpu").manual_seed(request.seed + i) for i in range(request.variants)]
        with torch.inference_mode():
            results[output_type] = pipe(**kwargs, generator=generators, output_type=output_type).images
    return results["latent"], results["pil"]


def base_request(tiny_models, **changes) -> GenerationRequest:
    return GenerationRequest(background="ai", prompt="a photo of a beach at sunset", negative_prompt="blurry", seed=11,
                             steps=4, device="cpu", control_scale=0.7, inpaint_model=tiny_models["inpaint"],
                             controlnet_model=tiny_models["controlnet"], depth_model=tiny_models["depth"]).replace(**changes)


def assert_same(a, b):
    (latents_a, images_a), (latents_b, images_b) = a, b
    assert latents_a.shape == latents_b.shape and torch.equal(latents_a, latents_b)
    assert len(images_a) == len(images_b)
    for x, y in zip(images_a, images_b):
        assert np.array_equal(np.asarray(x), np.asarray(y.convert("RGB")))


@pytest.mark.parametrize("scheduler", ["dpmpp", "ddim", "euler_a"])
@pytest.mark.parametrize("control", [True, False], ids=["control", "no-control"])
@pytest.mark.parametrize("variants", [1, 3])
def test_engine_equals_stock_pipeline(scheduler, control, variants, tiny_models, inputs, registry, monkeypatch):
    request = base_request(tiny_models, scheduler=scheduler, variants=variants,
                           control_scale=0.7 if control else 0.0)
    mine = ours(inputs, request, registry, monkeypatch)
    theirs = stock(inputs, request, registry, control)
    assert_same(mine, theirs)
    assert mine[0].abs().max() > 0.1 and len({np.asarray(im).tobytes() for im in mine[1]}) == variants


def test_engine_equals_stock_unguided(tiny_models, inputs, registry, monkeypatch):
    request = base_request(tiny_models, guidance=1.0, variants=2)
    assert_same(ours(inputs, request, registry, monkeypatch), stock(inputs, request, registry, True))


@pytest.mark.parametrize("control", [True, False], ids=["control", "no-control"])
def test_engine_equals_stock_with_a_four_channel_unet(control, tiny_models, four_channel_model, inputs, registry, monkeypatch):
    request = base_request(tiny_models, inpaint_model=four_channel_model, scheduler="ddim", variants=2,
                           control_scale=0.7 if control else 0.0)
    assert_same(ours(inputs, request, registry, monkeypatch), stock(inputs, request, registry, control))


@pytest.mark.parametrize("scheduler", ["dpmpp", "ddim", "euler_a", "ddim-4-channel"])
def test_engine_with_the_live_preview_equals_stock_pipeline(scheduler, tiny_models, four_channel_model, inputs, registry,
                                                            monkeypatch):
    """The live preview reads each step's estimate and changes nothing: with a preview after
    every step the images are still the stock pipeline's, byte for byte."""
    from core.engine.buckets import Placement
    from core.engine.preview import StepPreview

    changes = {"inpaint_model": four_channel_model, "scheduler": "ddim"} if scheduler == "ddim-4-channel" else {
        "scheduler": scheduler}
    request = base_request(tiny_models, variants=2, **changes)
    photo, repaint, _ = inputs
    shown = []
    preview = StepPreview(lambda image, done, total: shown.append(done), photo, ImageOps.invert(repaint),
                          Placement(bucket=photo.size, content=photo.size), every_s=0.0, budget=1.0)
    assert_same(ours(inputs, request, registry, monkeypatch, preview=preview), stock(inputs, request, registry, True))
    assert shown == list(range(1, request.steps + 1)) and not preview.failed


def test_unusable_unet_is_refused(tiny_models, inputs, tmp_path, monkeypatch):
    """A model whose UNet is neither inpainting (9 channels) nor base (4) gets a clear error."""
    from diffusers import StableDiffusionInpaintPipeline, UNet2DConditionModel

    from core.errors import InputError
    from tiny_models import UNET

    pipe = StableDiffusionInpaintPipeline.from_pretrained(tiny_models["inpaint"], safety_checker=None,
                                                          requires_safety_checker=False)
    pipe.unet = UNet2DConditionModel(**{**UNET, "in_channels": 5})
    pipe.save_pretrained(tmp_path, safe_serialization=True)
    with pytest.raises(InputError, match="5 input channels"):
        generate_backgrounds(*inputs, base_request(tiny_models, inpaint_model=str(tmp_path)), registry=ModelRegistry())


@pytest.mark.slow
def test_compiled_step_is_prepared_in_the_background(tiny_models, inputs, monkeypatch, tmp_path):
    """BACKDROP_COMPILE=1: the first run is served by the plain step while the compile runs on a
    background thread; later runs of that shape use the compiled step, with the same images.
    (The "eager" torch.compile backend traces the real module with dynamo but skips Inductor's
    C++ codegen, about a minute on these cores; the Inductor path is exercised by the GPU bench.)"""
    monkeypatch.setenv("BACKDROP_COMPILE", "1")
    monkeypatch.setenv("BACKDROP_COMPILE_BACKEND", "eager")
    monkeypatch.setenv("BACKDROP_COMPILE_CACHE", str(tmp_path))
    registry = ModelRegistry()
    request = base_request(tiny_models, steps=3)
    first: dict = {}
    plain = generate_backgrounds(*inputs, request, registry=registry, record=first)
    assert first["step"] == "eager" and first["compile"] in ("compiling", "ready")
    compiled = registry.step_runner(request.inpaint_model, request.controlnet_model, "cpu").compiled()
    (key,) = compiled.requested()
    assert compiled.wait(key, timeout=120), compiled.status(key)
    second: dict = {}
    again = generate_backgrounds(*inputs, request, registry=registry, record=second)
    assert second["step"] == "compiled"
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(plain, again))
    other: dict = {}  # another shape is not compiled yet: the plain step serves it again
    generate_backgrounds(*inputs, request.replace(variants=2), registry=registry, record=other)
    assert other["step"] == "eager"


def test_large_images_decode_in_tiles_and_batches_one_at_a_time(tiny_models, inputs, registry, monkeypatch):
    from core.engine import decode as decode_module

    request = base_request(tiny_models, variants=2, steps=2)
    full: dict = {}
    reference = generate_backgrounds(*inputs, request, registry=registry, record=full)
    monkeypatch.setattr(decode_module, "SLICE_ABOVE_PIXELS", SIZE[0] * SIZE[1])
    sliced: dict = {}
    one_by_one = generate_backgrounds(*inputs, request, registry=registry, record=sliced)
    monkeypatch.setenv("BACKDROP_VAE_TILE_PIXELS", str(SIZE[0] * SIZE[1] - 1))
    tiled: dict = {}
    tiles = generate_backgrounds(*inputs, request, registry=registry, record=tiled)
    assert (full["vae_decode"], sliced["vae_decode"], tiled["vae_decode"]) == ("full", "sliced", "tiled")
    for a, b, c in zip(reference, one_by_one, tiles):
        a, b, c = (np.asarray(x, dtype=np.int16) for x in (a, b, c))
        assert np.abs(a - b).max() <= 1  # the same decode, batch of one: rounding at most
        # tiles see only their part of the image, blended at the seams: close, not identical
        assert 0 < np.abs(a - c).max() and np.corrcoef(a.ravel(), c.ravel())[0, 1] > 0.9


def test_preload_and_warm_up_load_only_what_is_here(tiny_models, monkeypatch):
    import huggingface_hub

    from core.engine.generate import preload, warm_up

    real_download = huggingface_hub.snapshot_download

    def no_download(*args, **kwargs):
        if not kwargs.get("local_files_only"):
            raise AssertionError("a warm-up must never download")
        return real_download(*args, **kwargs)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_download)
    registry = ModelRegistry()
    request = base_request(tiny_models, depth_model="nobody/not-downloaded-depth")
    done = warm_up(request, registry)
    assert done["loaded"] == ["inpaint", "controlnet"] and "step" not in done  # no warm-up step on a CPU
    assert {key[0] for key in registry.loaded()} == {"inpaint", "controlnet"}
    assert preload(request.replace(control_scale=0.0), ModelRegistry()) == ["inpaint"]


def test_worker_warms_up_at_start(tiny_models, tmp_path):
    """The worker loads the default models when it starts, before its first job."""
    import time

    from storage.db import Database
    from storage.jobs import JobQueue, Worker

    registry = ModelRegistry()
    queue = JobQueue(Database(data_dir=tmp_path))
    worker = Worker(queue, registry=registry, poll_interval=0.05, warm_up=base_request(tiny_models))
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while {key[0] for key in registry.loaded()} != {"inpaint", "controlnet", "depth"} and time.monotonic() < deadline:
            time.sleep(0.05)
        assert {key[0] for key in registry.loaded()} == {"inpaint", "controlnet", "depth"}
    finally:
        worker.stop(timeout=10)


def test_compile_cache_lives_in_the_data_folder(monkeypatch, tmp_path, lemur_path):
    from core.engine import compile as compile_module
    from storage.db import Database
    from storage.service import generate_and_record

    monkeypatch.delenv("BACKDROP_COMPILE_CACHE", raising=False)
    monkeypatch.setattr(compile_module, "_configured", None)
    monkeypatch.setenv("BACKDROP_COMPILE", "1")
    db = Database(data_dir=tmp_path)
    generate_and_record(lemur_path, GenerationRequest(background="color:#ffffff"), db=db)
    assert compile_module.cache_dir() == tmp_path / "compile-cache"


def test_models_loading_on_several_threads_at_once(tiny_models):
    """The pipeline preloads on a thread while the main thread goes on, and the worker warms up:
    loads from several threads must neither fail nor load twice. (from_pretrained is not
    thread-safe: concurrent loads used to fail with "Cannot copy out of meta tensor".)"""
    import threading

    for _ in range(5):
        registry = ModelRegistry()
        barrier = threading.Barrier(4)
        errors: list[BaseException] = []
        loads = [lambda: registry.load("inpaint", tiny_models["inpaint"], "cpu"),
                 lambda: registry.load("depth", tiny_models["depth"], "cpu"),
                 lambda: registry.load("controlnet", tiny_models["controlnet"], "cpu"),
                 lambda: registry.load("depth", tiny_models["depth"], "cpu")]

        def load(fn):
            barrier.wait()
            try:
                fn()
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion
                errors.append(exc)

        threads = [threading.Thread(target=load, args=(fn,)) for fn in loads]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == [] and sorted(key[0] for key in registry.loaded()) == ["controlnet", "depth", "inpaint"]
