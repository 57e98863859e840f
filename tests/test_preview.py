"""The live preview (core.engine.preview) on the tiny models in the real formats, loaded through
the product's own loader: an estimate after every step for each scheduler the engine runs (the
request's three and fast mode's LCM, TCD and DDIM with trailing timesteps), the estimate being
the scheduler's own or computed as DDIM computes it, converging to the final latents; the linear
map and TAESD decodes; the composite with the subject; and never a change to the images.
"""

import functools

import numpy as np
import pytest
import torch
from PIL import Image

from core.engine import generate as engine, preview as live
from core.engine.buckets import Placement, placement
from core.models.registry import ModelRegistry
from core.request import GenerationRequest

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# scheduler name -> (diffusers class, settings over the checkpoint's config): the request's
# three as core.engine.generate makes them, and fast mode's recipes' three (issue 20)
SCHEDULERS = {
    "dpmpp": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++"}),
    "ddim": ("DDIMScheduler", {}),
    "euler_a": ("EulerAncestralDiscreteScheduler", {}),
    "lcm": ("LCMScheduler", {}),
    "tcd": ("TCDScheduler", {}),
    "ddim_trailing": ("DDIMScheduler", {"timestep_spacing": "trailing"}),
}
FAST = ("lcm", "tcd", "ddim_trailing")  # sampled unguided (guidance 1), as fast mode samples
STEPS = 6


@pytest.fixture(scope="module")
def registry():
    return ModelRegistry()


def make_scheduler(name, config):
    import diffusers

    kind, settings = SCHEDULERS[name]
    return getattr(diffusers, kind).from_config(config, **settings)


def request_for(tiny_models, scheduler: str, **changes) -> GenerationRequest:
    base = "ddim" if scheduler in FAST else scheduler  # the request names one of its own; the test swaps it
    return GenerationRequest(background="ai", prompt="a beach at sunset", seed=3, steps=STEPS, variants=2, device="cpu",
                             guidance=1.0 if scheduler in FAST else 7.5, scheduler=base, control_scale=0.7,
                             inpaint_model=tiny_models["inpaint"], controlnet_model=tiny_models["controlnet"],
                             depth_model=tiny_models["depth"]).replace(**changes)


def whole(photo) -> Placement:
    """generate_backgrounds works at the size it is given: the whole image is the bucket."""
    return Placement(bucket=photo.size, content=photo.size)


class Recorder:
    """A StepPreview that also keeps each step's estimate (``images``: what it showed)."""

    def __init__(self, steps: live.StepPreview, images: list):
        self.steps, self.estimates, self.images = steps, [], images

    def due(self, done, total):
        return self.steps.due(done, total)

    def update(self, done, total, latents):
        self.estimates.append((done, total, latents.clone()))
        self.steps.update(done, total, latents)


def run(inputs, request, registry, monkeypatch, scheduler: str, preview=True, taesd=None):
    """(final latents, images, Recorder or None, the scheduler's step calls) of generate_backgrounds
    with ``scheduler``; the step calls are (model output, timestep, sample) as the scheduler got them."""
    photo, repaint, depth = inputs
    seen, calls = {}, []
    real_decode = engine.decode

    def keep_latents(vae, latents, processor):
        seen["latents"] = latents.clone()
        return real_decode(vae, latents, processor)

    def recording_scheduler(_name, config):
        made = make_scheduler(scheduler, config)
        step = made.step

        @functools.wraps(step)  # the same signature: the sampler passes eta and generators by it
        def recorded(model_output, timestep, sample, **kwargs):
            calls.append((model_output.clone(), timestep, sample.clone()))
            return step(model_output, timestep, sample, **kwargs)

        made.step = recorded
        return made

    monkeypatch.setattr(engine, "decode", keep_latents)
    monkeypatch.setattr(engine, "make_scheduler", recording_scheduler)
    recorder = None
    if preview:
        shown = []
        steps = live.StepPreview(lambda image, done, total: shown.append((image, done, total)), photo,
                                 Image.fromarray(255 - np.asarray(repaint)), whole(photo), every_s=0.0,
                                 taesd=taesd, budget=1.0)
        recorder = Recorder(steps, shown)
    images = engine.generate_backgrounds(photo, repaint, depth, request, registry=registry, preview=recorder)
    return seen["latents"], images, recorder, calls


@pytest.mark.parametrize("scheduler", list(SCHEDULERS))
def test_an_estimate_after_every_step_that_converges_to_the_result(scheduler, tiny_models, inpaint_inputs, registry,
                                                                   monkeypatch):
    final, _, recorder, calls = run(inpaint_inputs, request_for(tiny_models, scheduler), registry, monkeypatch,
                                    scheduler)
    assert [(done, total) for done, total, _ in recorder.estimates] == [(i, STEPS) for i in range(1, STEPS + 1)]
    assert [(done, total) for _, done, total in recorder.images] == [(i, STEPS) for i in range(1, STEPS + 1)]
    for image, _, _ in recorder.images:  # two variants side by side, each the photo's shape at 384 px
        assert image.mode == "RGB" and image.size == (2 * 384 + live.GAP, 256)
    estimates = [latents for _, _, latents in recorder.estimates]
    assert all(e.shape == final.shape for e in estimates)
    distance = [float((e - final).abs().mean()) for e in estimates]
    scale = float(final.abs().mean())
    # measured here: from 0.29-0.47 of the latents' mean size after step 1 down to 0-0.003 after the last
    assert distance[-1] < 0.01 * scale, f"the last step's estimate is the result ({distance[-1]:.4f} of {scale:.3f})"
    assert all(a > b for a, b in zip(distance, distance[1:])), f"each step's estimate is nearer the result: {distance}"
    assert len({im.tobytes() for im, _, _ in recorder.images}) == STEPS, "the preview changes step by step"

    # where the scheduler gives no estimate (DPM-Solver++, TCD), it is computed as DDIM computes it
    if scheduler in ("dpmpp", "tcd"):
        ddim = make_scheduler("ddim", registry.load("inpaint", tiny_models["inpaint"], "cpu").scheduler.config)
        ddim.set_timesteps(STEPS)
        for (noise, t, sample), estimate in zip(calls, estimates):
            torch.testing.assert_close(estimate, ddim.step(noise, t, sample).pred_original_sample, rtol=1e-5, atol=1e-5)


def test_dpm_solver_estimate_is_the_solvers_own_data_prediction(tiny_models, inpaint_inputs, registry, monkeypatch):
    """DPM-Solver++ turns each noise prediction into a data prediction (x0) for its update: the
    preview's estimate is that same tensor's value."""
    from diffusers import DPMSolverMultistepScheduler

    solver_x0 = []
    real = DPMSolverMultistepScheduler.convert_model_output

    def keep(self, model_output, *args, **kwargs):
        out = real(self, model_output, *args, **kwargs)
        solver_x0.append(out.clone())
        return out

    monkeypatch.setattr(DPMSolverMultistepScheduler, "convert_model_output", keep)
    _, _, recorder, _ = run(inpaint_inputs, request_for(tiny_models, "dpmpp"), registry, monkeypatch, "dpmpp")
    assert len(solver_x0) == STEPS
    for (_, _, estimate), theirs in zip(recorder.estimates, solver_x0):
        torch.testing.assert_close(estimate, theirs, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scheduler", list(SCHEDULERS))
def test_the_preview_never_changes_the_images(scheduler, tiny_models, inpaint_inputs, registry, monkeypatch, tiny_taesd):
    request = request_for(tiny_models, scheduler)
    without_latents, without, _, _ = run(inpaint_inputs, request, registry, monkeypatch, scheduler, preview=False)
    taesd = registry.load("preview", tiny_taesd, "cpu") if scheduler == "dpmpp" else None
    with_latents, with_preview, recorder, _ = run(inpaint_inputs, request, registry, monkeypatch, scheduler,
                                                  taesd=taesd)
    assert len(recorder.images) == STEPS
    assert torch.equal(with_latents, without_latents)
    assert [im.tobytes() for im in with_preview] == [im.tobytes() for im in without]


def test_the_linear_map_is_sd15s_published_factors():
    latents = torch.zeros(1, 4, 2, 4)
    for channel in range(4):
        latents[0, channel, channel % 2, channel] = 1.0
    rgb = live.linear_rgb(latents)
    assert rgb.shape == (1, 3, 2, 4)
    for channel in range(4):
        assert tuple(rgb[0, :, channel % 2, channel].tolist()) == pytest.approx(live.LATENT_RGB_SD15[channel])
    pixels = live.to_uint8(torch.tensor([-1.0, 0.0, 1.0, 3.0]).view(1, 1, 1, 4).expand(1, 3, 1, 4))
    assert pixels.shape == (1, 1, 4, 3) and pixels[0, 0, :, 0].tolist() == [0, 128, 255, 255]


def test_taesd_decodes_through_the_products_loader(tiny_taesd, registry):
    """The slot's model decodes as diffusers' own AutoencoderTiny does, at 8x the latent size."""
    from diffusers import AutoencoderTiny

    taesd = registry.load("preview", tiny_taesd, "cpu")
    reference = AutoencoderTiny.from_pretrained(tiny_taesd)
    latents = torch.randn(2, 4, 8, 12, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        mine = live.taesd_rgb(taesd, latents)
        theirs = reference.decode(latents, return_dict=False)[0]
    assert mine.shape == (2, 3, 64, 96) and torch.equal(mine, theirs)


def test_the_preview_is_the_photo_over_the_estimate_with_the_soft_alpha(astronaut):
    """Where the subject is opaque the preview shows the photo (shrunk), elsewhere the decoded
    estimate of the photo's part of the bucket: the strips the bucket adds are cropped away."""
    photo = astronaut.resize((600, 260))
    alpha = Image.new("L", photo.size, 0)
    alpha.paste(255, (0, 0, 300, 260))  # the left half is the subject
    place = placement(*photo.size)
    assert place.content == (512, 222) and place.bucket == (512, 256)  # strips above and below
    shown = []
    steps = live.StepPreview(lambda image, done, total: shown.append(image), photo, alpha, place, every_s=0.0)
    height, width = place.bucket[1] // 8, place.bucket[0] // 8
    latents = torch.zeros(1, 4, height, width)
    _, top, _, bottom = place.box
    latents[:, :, : top // 8] = latents[:, :, -(-bottom // 8):] = 50.0  # the latent rows outside the photo: saturated
    steps.update(1, 4, latents)
    (image,) = shown
    pixels = np.asarray(image).astype(int)
    small_photo, _ = steps.subject(live.SIDE)
    assert image.size == small_photo.size == (384, 166)
    subject = np.asarray(small_photo).astype(int)
    assert np.array_equal(pixels[:, :180], subject[:, :180])  # opaque: the photo's pixels
    grey = live.to_uint8(live.linear_rgb(torch.zeros(1, 4, 1, 1)))[0, 0, 0]
    # the background is the estimate's, without the strips (but where the edge pixels blend them in)
    assert np.abs(pixels[4:-4, 200:] - grey).max() <= 1


def test_many_variants_are_shown_smaller_four_to_a_row(astronaut):
    shown = []
    photo = astronaut.resize((120, 80))
    steps = live.StepPreview(lambda image, done, total: shown.append(image), photo, Image.new("L", photo.size, 255),
                             whole(photo), every_s=0.0)
    for variants in (1, 2, 3, 8):
        steps.update(1, 4, torch.zeros(variants, 4, 10, 15))
    assert [image.size for image in shown] == [(384, 256), (2 * 384 + 8, 256), (3 * 192 + 16, 128),
                                               (4 * 192 + 24, 2 * 128 + 8)]
    last = np.asarray(shown[-1])[128 + 8:, 3 * (192 + 8):]  # the eighth: the second row's fourth (all subject here)
    assert np.array_equal(last, np.asarray(steps.subject(192)[0]))


def test_at_most_one_preview_every_interval_and_within_its_budget():
    import time

    photo = Image.new("RGB", (64, 64))
    steps = live.StepPreview(lambda *_: None, photo, Image.new("L", (64, 64)), placement(64, 64), every_s=3600)
    assert steps.due(1, 10)
    steps.update(1, 10, torch.zeros(1, 4, 64, 64))
    assert not steps.due(2, 10)
    # a preview that took 0.1 s waits 2 s (5%: TAESD on a CPU shows every few steps), unless allowed more
    slow = [live.StepPreview(lambda *_: time.sleep(0.1), photo, Image.new("L", (64, 64)), placement(64, 64),
                             every_s=0.0, budget=budget) for budget in (live.BUDGET, 1.0)]
    for steps in slow:
        steps.update(1, 10, torch.zeros(1, 4, 64, 64))
    assert not slow[0].due(2, 10) and slow[1].due(2, 10)


def test_a_failing_preview_is_turned_off_and_the_run_goes_on(tiny_models, inpaint_inputs, registry, monkeypatch):
    def broken(image, done, total):
        raise OSError("disk full")

    photo, repaint, depth = inpaint_inputs
    steps = live.StepPreview(broken, photo, repaint, whole(photo), every_s=0.0, budget=1.0)
    request = request_for(tiny_models, "ddim")
    images = engine.generate_backgrounds(photo, repaint, depth, request, registry=registry, preview=steps)
    assert steps.failed and len(images) == 2


def test_pipeline_shows_the_preview_with_taesd_when_its_weights_are_here(tiny_models, tiny_taesd, registry, astronaut):
    """core.pipeline.run with a LivePreview: the slot's TAESD when the model is here, the linear
    map when it is not (never a download), and the same result either way as without a preview."""
    from core import pipeline
    from core.cache import get_cache

    photo = astronaut.resize((160, 120))
    mask = Image.new("L", photo.size, 0)
    mask.paste(255, (50, 30, 110, 120))
    request = request_for(tiny_models, "dpmpp", variants=1, steps=3)
    results, seen = {}, {}
    for model in (None, tiny_taesd, "nobody/no-such-taesd"):
        shown = []
        get_cache().clear()
        preview = live.LivePreview(lambda image, done, total: shown.append((image, done)), every_s=0.0, model=model,
                                   budget=1.0)  # after every step, whatever it costs
        results[model] = pipeline.run(photo, request, mask=mask, registry=registry, preview=preview).images[0]
        seen[model] = shown
    get_cache().clear()
    plain = pipeline.run(photo, request, mask=mask, registry=registry).images[0]
    for model, shown in seen.items():
        assert [done for _, done in shown] == [1, 2, 3] and shown[0][0].size == (384, 288)
        assert np.array_equal(np.asarray(results[model]), np.asarray(plain)), model
    taesd, linear = np.asarray(seen[tiny_taesd][-1][0]), np.asarray(seen[None][-1][0])
    assert not np.array_equal(taesd, linear), "TAESD decoded it, not the linear map"
    assert np.array_equal(np.asarray(seen["nobody/no-such-taesd"][-1][0]), linear)
