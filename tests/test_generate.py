"""The AI path with tiny random models loaded through the real loader (core.models.registry): depth,
generation (schedulers, seeds, variants, control on/off, progress, cancel, warnings) and the
whole pipeline end to end on a real photo."""

import numpy as np
import pytest
from PIL import Image

from core.cache import get_cache
from core.engine.depth import estimate_depth
from core.errors import Cancelled, ModelMissingError
from core.engine.generate import generate_backgrounds
from core.models.registry import ModelRegistry
from core.models.rembg_weights import EMBEDDED_MD5
from core.request import GenerationRequest

SIZE = (128, 96)  # working size: multiples of 8, not square
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def registry():
    return ModelRegistry()


@pytest.fixture(scope="module")
def photo(astronaut) -> Image.Image:
    return astronaut.resize(SIZE, Image.Resampling.LANCZOS)


@pytest.fixture(scope="module")
def repaint() -> Image.Image:
    mask = Image.new("L", SIZE, 255)
    mask.paste(0, (40, 20, 90, 96))  # the "subject" the generator keeps
    return mask


@pytest.fixture(scope="module")
def request_(tiny_models) -> GenerationRequest:
    return GenerationRequest(
        background="ai", prompt="a photo of a beach at sunset", seed=7, steps=3, device="cpu",
        inpaint_model=tiny_models["inpaint"], controlnet_model=tiny_models["controlnet"], depth_model=tiny_models["depth"],
    )


@pytest.fixture(scope="module")
def depth(photo, request_, registry) -> Image.Image:
    return estimate_depth(photo, request_.depth_model, "cpu", registry=registry)


def arrays(images):
    return [np.asarray(im) for im in images]


def test_depth_map_is_image_sized_and_deterministic(photo, depth, request_, registry, astronaut):
    assert depth.mode == "L" and depth.size == photo.size
    values = np.asarray(depth)
    assert values.min() == 0 and values.max() == 255  # stretched to the full range
    cache = get_cache()
    hits = cache.hits.get("depth", 0)
    cached = estimate_depth(photo, request_.depth_model, "cpu", registry=registry)
    assert cache.hits.get("depth", 0) == hits + 1 and np.array_equal(values, np.asarray(cached))
    cache.clear()  # computed afresh: the same map
    again = estimate_depth(photo, request_.depth_model, "cpu", registry=registry)
    assert np.array_equal(values, np.asarray(again))
    other = estimate_depth(astronaut.crop((0, 0, 300, 200)), request_.depth_model, "cpu", registry=registry)
    assert other.size == (300, 200) and not np.array_equal(np.asarray(other.resize(SIZE)), values)


def test_variants_seeded_and_reproducible(photo, repaint, depth, request_, registry):
    request = request_.replace(variants=2)
    first = generate_backgrounds(photo, repaint, depth, request, registry=registry)
    assert [im.size for im in first] == [SIZE, SIZE] and all(im.mode == "RGB" for im in first)
    a, b = arrays(first)
    assert a.std() > 1  # an image, not a flat fill
    assert not np.array_equal(a, b)  # variants differ
    again = arrays(generate_backgrounds(photo, repaint, depth, request, registry=registry))
    assert np.array_equal(again[0], a) and np.array_equal(again[1], b)  # same seed, same images
    get_cache().clear()  # text embeddings computed afresh: still the same images
    fresh = arrays(generate_backgrounds(photo, repaint, depth, request, registry=registry))
    assert np.array_equal(fresh[0], a) and np.array_equal(fresh[1], b)
    other_seed = arrays(generate_backgrounds(photo, repaint, depth, request.replace(seed=8), registry=registry))
    assert not np.array_equal(other_seed[0], a)


def test_unguided_and_prompt_changes(photo, repaint, depth, request_, registry):
    base = arrays(generate_backgrounds(photo, repaint, depth, request_, registry=registry))[0]
    unguided = generate_backgrounds(photo, repaint, depth, request_.replace(guidance=1.0), registry=registry)
    assert unguided[0].size == SIZE and not np.array_equal(np.asarray(unguided[0]), base)
    other_prompt = arrays(generate_backgrounds(photo, repaint, depth, request_.replace(prompt="a city street at night"), registry=registry))[0]
    assert not np.array_equal(other_prompt, base)


@pytest.mark.parametrize("scheduler", ["dpmpp", "ddim", "euler_a"])
def test_schedulers_run_and_are_deterministic(scheduler, photo, repaint, depth, request_, registry):
    request = request_.replace(scheduler=scheduler)
    first, second = (arrays(generate_backgrounds(photo, repaint, depth, request, registry=registry))[0] for _ in range(2))
    assert first.shape == (SIZE[1], SIZE[0], 3) and np.array_equal(first, second)


def test_schedulers_differ(photo, repaint, depth, request_, registry):
    outputs = {
        name: arrays(generate_backgrounds(photo, repaint, depth, request_.replace(scheduler=name), registry=registry))[0]
        for name in ("dpmpp", "ddim")
    }
    assert not np.array_equal(outputs["dpmpp"], outputs["ddim"])


def test_depth_control_changes_output_and_off_means_no_controlnet(photo, repaint, depth, request_, tiny_models):
    registry = ModelRegistry()
    warnings: list[str] = []
    controlled = arrays(generate_backgrounds(photo, repaint, depth, request_, registry=registry, warnings=warnings))[0]
    assert warnings == []
    plain_warnings: list[str] = []
    plain = arrays(generate_backgrounds(photo, repaint, None, request_, registry=registry, warnings=plain_warnings))[0]
    assert any("without depth control" in w for w in plain_warnings)
    assert not np.array_equal(controlled, plain)
    off_warnings: list[str] = []
    off = arrays(generate_backgrounds(photo, repaint, depth, request_.replace(control_scale=0.0), registry=registry, warnings=off_warnings))[0]
    assert np.array_equal(off, plain)  # scale 0 is the plain inpainting pipeline, same seed
    assert any("control scale 0" in w for w in off_warnings)
    # one set of inpainting weights served both steps (with and without the ControlNet)
    loaded = registry.loaded()
    assert [key[0] for key in loaded if key[0] not in ("step", "weights")] == ["inpaint", "controlnet"]
    with_control = registry.step_runner(request_.inpaint_model, request_.controlnet_model, "cpu")
    without = registry.step_runner(request_.inpaint_model, None, "cpu")
    assert sum(key[0] == "step" for key in loaded) == 2 and with_control.step.unet is without.step.unet


def test_missing_controlnet_falls_back_with_warning(photo, repaint, depth, request_, registry, tmp_path):
    warnings: list[str] = []
    request = request_.replace(controlnet_model=str(tmp_path / "no-controlnet"))
    images = generate_backgrounds(photo, repaint, depth, request, registry=registry, warnings=warnings)
    assert len(images) == 1 and any("ControlNet unavailable" in w and "no-controlnet" in w for w in warnings)


def test_missing_inpaint_model_fails_fast(photo, repaint, request_, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelMissingError, match="nobody/no-inpainting.*backdrop models fetch"):
        generate_backgrounds(photo, repaint, None, request_.replace(inpaint_model="nobody/no-inpainting"), registry=ModelRegistry())


def test_progress_and_cancel(photo, repaint, depth, request_, registry):
    calls = []
    generate_backgrounds(photo, repaint, depth, request_.replace(steps=4), progress=lambda *a: calls.append(a), registry=registry)
    assert calls == [("generate", i, 4) for i in range(1, 5)]

    steps_seen = []

    def cancel_after_two():
        return len(steps_seen) >= 2

    with pytest.raises(Cancelled, match="step 2 of 4"):
        generate_backgrounds(photo, repaint, depth, request_.replace(steps=4), registry=registry,
                             progress=lambda *a: steps_seen.append(a), cancel=cancel_after_two)
    assert len(steps_seen) == 2  # the remaining steps were skipped
    with pytest.raises(Cancelled):
        generate_backgrounds(photo, repaint, depth, request_, registry=registry, cancel=lambda: True)


def test_long_and_weighted_prompts_run_and_only_what_is_dropped_warns(photo, repaint, request_, registry):
    """A prompt past CLIP's 75 tokens is read whole (no warning) and changes the image; a
    weight changes it too; only text past the last chunk is dropped, and said."""
    from core.engine.prompts import MAX_CHUNKS

    base = request_.replace(quality_negative=False, steps=2)
    long_prompt = ", ".join(["sunset beach"] * 40) + ", unusual tail words"
    warnings: list[str] = []
    first = arrays(generate_backgrounds(photo, repaint, None, base.replace(prompt=long_prompt), registry=registry,
                                        warnings=warnings))[0]
    assert not any("prompt is" in w for w in warnings)
    other_tail = arrays(generate_backgrounds(photo, repaint, None, base.replace(prompt=long_prompt[:-19] + "a city street"),
                                             registry=registry))[0]
    assert not np.array_equal(first, other_tail)  # words past the 75th token count
    plain = arrays(generate_backgrounds(photo, repaint, None, base.replace(prompt="a beach"), registry=registry))[0]
    weighted = arrays(generate_backgrounds(photo, repaint, None, base.replace(prompt="a (beach:1.5)"), registry=registry))[0]
    assert not np.array_equal(plain, weighted)
    huge = ", ".join(["sunset beach"] * 40 * MAX_CHUNKS) + ", unusual tail words"
    warnings = []
    record: dict = {}
    generate_backgrounds(photo, repaint, None, base.replace(prompt=huge), registry=registry, warnings=warnings, record=record)
    # it quotes the start of what is not read, and says how much more there is (not all of it)
    assert sum("prompt is" in w and "sunset beach" in w and "more characters" in w for w in warnings) == 1
    assert record["prompt"] == huge and record["prompt_tokens"] > MAX_CHUNKS * 75


@pytest.mark.slow
def test_pipeline_end_to_end_on_a_real_photo(astronaut, tiny_models, registry):
    """core.pipeline.run with background "ai": automatic u2netp mask, depth on the photo, tiny
    ControlNet inpainting, composite at the input's (odd) size."""
    from core.pipeline import run

    photo = astronaut.resize((203, 150), Image.Resampling.LANCZOS)
    request = GenerationRequest(
        background="ai", prompt="a photo of a forest", seed=3, steps=2, variants=2, device="cpu",
        inpaint_model=tiny_models["inpaint"], controlnet_model=tiny_models["controlnet"], depth_model=tiny_models["depth"],
    )
    stages = []
    result = run(photo, request, progress=lambda stage, done, total: stages.append(stage), registry=registry)
    assert len(result.images) == 2 and all(im.size == photo.size and im.mode == "RGB" for im in result.images)
    assert result.record["input_size"] == [203, 150]
    assert result.record["bucket"] == "512x384" and result.record["content"] == [512, 378]  # photo 203x150
    assert result.record["step"] == "eager" and result.record["vae_decode"] == "full"
    assert result.record["negative_prompt"].startswith("lowres") and result.record["prompt"] == request.prompt
    assert result.record["depth_control"] is True and result.record["prompt_tokens"] > 0
    assert {"segment", "depth", "generate", "composite"} <= set(result.timings)
    assert "generate" in stages and set(result.models) >= {"inpaint", "controlnet", "depth"}

    alpha = np.asarray(result.mask)
    opaque, clear = alpha == 255, alpha == 0
    assert opaque.mean() > 0.05 and clear.mean() > 0.05  # a real subject and a real background
    source = np.asarray(photo)
    first, second = arrays(result.images)
    assert np.array_equal(first[opaque], source[opaque])  # the subject's pixels are the input's
    assert not np.array_equal(first[clear], source[clear])  # the background was replaced
    assert not np.array_equal(first[clear], second[clear])  # variants differ

    assert result.models["segmenter"] == {"id": "u2netp", "revision": "md5:" + EMBEDDED_MD5}
    for slot in ("inpaint", "controlnet", "depth"):  # what storage records with the generation
        assert result.models[slot]["revision"].startswith("local:")

    again = run(photo, request, registry=registry)
    assert all(np.array_equal(x, y) for x, y in zip(arrays(result.images), arrays(again.images)))


def test_pipeline_without_depth_weights_warns_and_cancel_stops_it(astronaut, request_, registry, tmp_path):
    from core.pipeline import run

    photo = astronaut.resize((160, 120), Image.Resampling.LANCZOS)
    request = request_.replace(depth_model=str(tmp_path / "no-depth-model"), steps=1)
    result = run(photo, request, registry=registry)
    assert result.images[0].size == photo.size
    depth_notes = [w for w in result.warnings if "without depth control" in w]
    assert len(depth_notes) == 1 and "no-depth-model" in depth_notes[0]  # once, naming the model
    assert "controlnet" not in result.models and "depth" not in result.models

    steps = []
    with pytest.raises(Cancelled):
        run(photo, request, registry=registry, cancel=lambda: len(steps) >= 1,
            progress=lambda stage, done, total: steps.append(done) if stage == "generate" and done else None)


@pytest.mark.parametrize("slot", ["inpaint", "controlnet", "depth"])
def test_readiness_is_the_pipelines_own_rule(slot, astronaut, tiny_models, registry, tmp_path):
    """One policy for what an AI background needs: what core.models.slots.readiness says about a
    missing model (the app blocks or warns from it) is what the pipeline then does."""
    from core.models.slots import SLOTS, readiness
    from core.pipeline import run

    request = GenerationRequest(
        background="ai", steps=1, device="cpu", inpaint_model=tiny_models["inpaint"],
        controlnet_model=tiny_models["controlnet"], depth_model=tiny_models["depth"],
    ).replace(**{SLOTS[slot].choice.name: str(tmp_path / f"no-{slot}")})
    blocking, degraded = readiness(request, "ai").blocking, readiness(request, "ai").degraded
    photo = astronaut.resize((96, 64))
    mask = Image.new("L", photo.size, 0)
    mask.paste(255, (30, 10, 70, 64))
    if blocking:
        assert ([r["slot"] for r in blocking], degraded) == ([slot], [])
        with pytest.raises(ModelMissingError, match=f"no-{slot}"):
            run(photo, request, mask=mask, registry=registry)
    else:
        assert ([r["slot"] for r in degraded], blocking) == ([slot], [])
        result = run(photo, request, mask=mask, registry=registry)
        assert result.images and result.record["depth_control"] is False
        assert any("without depth control" in w and f"no-{slot}" in w for w in result.warnings)
    assert readiness(request.replace(control_scale=0.0), "ai").degraded == []  # depth control off: nothing missing for it
