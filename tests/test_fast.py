"""Fast mode against the stock diffusers pipeline with the same LoRA loaded and fused, on the CPU in fp32.

As for the engine (tests/test_engine.py), no tolerance: fast mode fuses the LoRA with diffusers'
own loader and peft's merge, and samples with the recipe's scheduler in the stock pipeline's
order, so the final latents and images must be bit-identical to
``StableDiffusionControlNetInpaintPipeline`` given the same LoRA file through
``load_lora_weights`` + ``fuse_lora`` and the same scheduler, for every recipe, one and several
variants. The LoRAs are tiny random ones made with peft for the tiny UNet and saved as the real
files are laid out (tests/tiny_models.py), in a Hugging Face cache under each recipe's real id,
so the product finds and loads them through its own slot and loader.
"""

import numpy as np
import pytest
import torch

from core.engine import generate as engine
from core.engine.generate import generate_backgrounds
from core.engine.recipes import RECIPES
from core.errors import ModelMissingError
from core.models.registry import ModelRegistry
from core.engine.prompts import encode_prompt_pair
from core.request import SCHEMA_VERSION, GenerationRequest
from test_engine import ours as engine_run

SIZE = (96, 64)
LCM = "latent-consistency/lcm-lora-sdv1-5"
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def registry():
    return ModelRegistry()


def fast_request(tiny_models, lora=LCM, **changes) -> GenerationRequest:
    return GenerationRequest(background="ai", prompt="a photo of a beach at sunset", negative_prompt="blurry", seed=11,
                             device="cpu", control_scale=0.7, fast=True, fast_lora=lora,
                             inpaint_model=tiny_models["inpaint"], controlnet_model=tiny_models["controlnet"],
                             depth_model=tiny_models["depth"]).replace(**changes)


def ours(inputs, request, registry, monkeypatch):
    """(final latents, images, record) from the product's generate_backgrounds."""
    record: dict = {}
    return (*engine_run(inputs, request, registry, monkeypatch, record=record), record)


def stock_scheduler(name: str, config):
    """Each recipe's scheduler as its model card builds it."""
    from diffusers import DDIMScheduler, LCMScheduler, TCDScheduler

    return {"lcm": lambda: LCMScheduler.from_config(config),
            "ddim_trailing": lambda: DDIMScheduler.from_config(config, timestep_spacing="trailing"),
            "tcd": lambda: TCDScheduler.from_config(config)}[name]()


def stock(inputs, request, registry, snapshot, vae=None):
    """(final latents, images) from StableDiffusionControlNetInpaintPipeline with its own copy of
    the UNet, the recipe's LoRA file in ``snapshot`` loaded with ``load_lora_weights`` and fused
    with ``fuse_lora`` (no LoRA when None), the recipe's scheduler, steps, guidance and eta, and
    the model's VAE or ``vae``."""
    from diffusers import StableDiffusionControlNetInpaintPipeline, UNet2DConditionModel

    photo, repaint, depth = inputs
    recipe = RECIPES[request.fast_lora]
    base = registry.load("inpaint", request.inpaint_model, "cpu")
    pipe = StableDiffusionControlNetInpaintPipeline(
        vae=vae or base.vae, text_encoder=base.text_encoder, tokenizer=base.tokenizer,
        unet=UNet2DConditionModel.from_pretrained(request.inpaint_model, subfolder="unet"),
        scheduler=stock_scheduler(recipe.scheduler, base.scheduler.config),
        controlnet=registry.load("controlnet", request.controlnet_model, "cpu"), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)
    if snapshot is not None:
        pipe.load_lora_weights(str(snapshot), weight_name=recipe.weight_name)
        pipe.fuse_lora()
    pipe.set_progress_bar_config(disable=True)
    with torch.inference_mode():
        positive, negative = encode_prompt_pair(base.tokenizer, base.text_encoder, request.prompt,
                                                engine.full_negative_prompt(request), recipe.guidance > 1, "cpu")
    results = {}
    for output_type in ("latent", "pil"):
        generators = [torch.Generator("cpu").manual_seed(request.seed + i) for i in range(request.variants)]
        with torch.inference_mode():
            results[output_type] = pipe(
                prompt_embeds=positive, negative_prompt_embeds=negative, image=photo, mask_image=repaint,
                control_image=depth.convert("RGB"), controlnet_conditioning_scale=request.control_scale,
                height=SIZE[1], width=SIZE[0], strength=1.0, num_inference_steps=recipe.steps,
                guidance_scale=recipe.guidance, eta=recipe.eta, num_images_per_prompt=request.variants,
                generator=generators, output_type=output_type).images
    return results["latent"], results["pil"]


def snapshot_of(cache, lora: str):
    from tiny_models import HUB_REVISION

    return cache / f"models--{lora.replace('/', '--')}" / "snapshots" / HUB_REVISION


@pytest.mark.parametrize("lora", list(RECIPES), ids=["lcm", "hyper-sd", "tcd"])
@pytest.mark.parametrize("variants", [1, 3])
def test_fast_mode_equals_stock_pipeline_with_the_lora_fused(lora, variants, tiny_models, inpaint_inputs, registry,
                                                             lora_hub, monkeypatch):
    request = fast_request(tiny_models, lora, variants=variants)
    latents, images, record = ours(inpaint_inputs, request, registry, monkeypatch)
    their_latents, their_images = stock(inpaint_inputs, request, registry, snapshot_of(lora_hub, lora))
    assert latents.shape == their_latents.shape and torch.equal(latents, their_latents)
    for mine, theirs in zip(images, their_images, strict=True):
        assert np.array_equal(np.asarray(mine), np.asarray(theirs.convert("RGB")))
    recipe = RECIPES[lora]
    # the record says which LoRA, scheduler, steps and guidance ran, and that no unguided row did
    assert record["fast_lora"] == lora and record["steps"] == recipe.steps == 4 and record["guidance"] == recipe.guidance
    assert record["scheduler"] == type(stock_scheduler(recipe.scheduler, {})).__name__ and record["eta"] == recipe.eta
    assert record["timestep_spacing"] == ("trailing" if recipe.scheduler == "ddim_trailing" else "leading")
    assert record["guided"] is False and record["rows"] == variants and record["depth_control"] is True
    assert len({np.asarray(image).tobytes() for image in images}) == variants


def test_the_lora_changes_the_images_and_standard_mode_is_untouched(tiny_models, inpaint_inputs, lora_hub, monkeypatch):
    """The same request without fast mode, before and after fast runs in one registry, and in a
    fresh one: the model's own weights come back bit for bit; the fused LoRA makes other images
    than the same recipe without it (the scheduler alone)."""
    request = fast_request(tiny_models)
    registry = ModelRegistry()
    standard = request.replace(fast=False)
    before = ours(inpaint_inputs, standard, registry, monkeypatch)
    fast = ours(inpaint_inputs, request, registry, monkeypatch)
    after = ours(inpaint_inputs, standard, registry, monkeypatch)
    assert torch.equal(before[0], after[0]) and not torch.equal(before[0], fast[0])
    assert fast[2]["fused_now"] is True and after[2]["fused_now"] is False and after[2]["weights_switch_s"] >= 0
    assert after[2]["fast_lora"] is None and after[2]["guided"] is True and after[2]["steps"] == 25
    without_lora = stock(inpaint_inputs, request, registry, snapshot=None)  # the recipe's sampling alone
    assert not torch.equal(fast[0], without_lora[0])


def test_fast_standard_fast_gives_what_fresh_registries_give(tiny_models, inpaint_inputs, lora_hub, monkeypatch):
    """fast -> standard -> fast -> standard in one registry (one shared UNet, the LoRA fused, the
    weights put back, fused again) gives each mode's images as a fresh registry (fresh weights
    from disk, as a fresh process loads them) gives them."""
    fast, standard = fast_request(tiny_models, variants=2), fast_request(tiny_models, variants=2, fast=False)
    fresh = {name: ours(inpaint_inputs, request, ModelRegistry(), monkeypatch)[0]
             for name, request in (("fast", fast), ("standard", standard))}
    shared = ModelRegistry()
    for name, request in (("fast", fast), ("standard", standard), ("fast", fast), ("standard", standard)):
        assert torch.equal(ours(inpaint_inputs, request, shared, monkeypatch)[0], fresh[name]), name


@pytest.mark.parametrize("layout", ["kohya", "diffusers"])
def test_a_peft_lora_loads_through_the_products_slot_and_fuses_as_peft_merges(layout, tiny_models, peft_unet, tmp_path,
                                                                              monkeypatch):
    """A LoRA made with peft, saved in a real file layout into the Hugging Face cache under a
    recipe's id: the ``fast_lora`` slot finds the one file (offline), records its revision, and
    the UNet's fused weights are exactly the weights peft's own merge of that adapter gives;
    putting the model's weights back restores them exactly, in place."""
    import copy

    from diffusers import UNet2DConditionModel
    from huggingface_hub import constants
    from peft import set_peft_model_state_dict
    from peft.utils import get_peft_model_state_dict

    from tiny_models import HUB_REVISION, install_in_hub_cache, save_lora

    recipe = RECIPES[LCM]
    install_in_hub_cache(tmp_path / "hub", LCM, {recipe.weight_name: save_lora(peft_unet, tmp_path, "made.safetensors",
                                                                               layout)}, HUB_REVISION)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    registry = ModelRegistry()
    lora = registry.load("fast_lora", LCM, "cpu")
    assert registry.record(LCM) == {"id": LCM, "revision": HUB_REVISION}
    unet = registry.load("inpaint", tiny_models["inpaint"], "cpu").unet
    own = {name: tensor.clone() for name, tensor in unet.state_dict().items()}
    addresses = {name: tensor.data_ptr() for name, tensor in unet.state_dict().items()}

    reference = copy.deepcopy(UNet2DConditionModel.from_pretrained(tiny_models["inpaint"], subfolder="unet"))
    reference.add_adapter(copy.deepcopy(peft_unet.peft_config["default"]))
    set_peft_model_state_dict(reference, get_peft_model_state_dict(peft_unet))
    reference.fuse_lora()
    reference.unload_lora()
    merged = reference.state_dict()

    weights = registry.unet_weights(tiny_models["inpaint"], "cpu")
    with weights.using(lora):
        fused = unet.state_dict()
        assert set(fused) == set(merged) and all(torch.equal(fused[k], merged[k]) for k in fused)
        assert {name: tensor.data_ptr() for name, tensor in fused.items()} == addresses
        changed = [name for name in fused if not torch.equal(fused[name], own[name])]
        assert len(changed) > 50 and all(name.endswith(".weight") for name in changed)
        kept = weights.kept_bytes()
        assert kept == sum(own[name].numel() * 4 for name in changed)  # the touched weights' originals, fp32
    with weights.using(None):
        assert all(torch.equal(tensor, own[name]) for name, tensor in unet.state_dict().items())
        assert {name: tensor.data_ptr() for name, tensor in unet.state_dict().items()} == addresses
        assert weights.kept_bytes() == 0 and not any("lora" in name for name in unet.state_dict())


def test_without_the_lora_fast_mode_says_which_command_fetches_it(tiny_models, inpaint_inputs, tmp_path, monkeypatch):
    from huggingface_hub import constants

    from core.models.hub import fetch_command
    from core.models.slots import explain_missing, readiness, slot_of

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    request = fast_request(tiny_models, "h1t/TCD-SD15-LoRA")
    ready = readiness(request, "ai")
    assert [row["slot"] for row in ready.blocking] == ["fast_lora"] and not ready.degraded
    command = f"{fetch_command()} h1t/TCD-SD15-LoRA"
    assert ready.blocking[0]["fetch"] == command and slot_of("h1t/TCD-SD15-LoRA") == "fast_lora"
    assert "Fast mode cannot run" in explain_missing(ready.blocking) and "Turn Fast off" in explain_missing(ready.blocking)
    assert readiness(request.replace(fast=False), "ai").blocking == []  # standard mode needs no LoRA
    with pytest.raises(ModelMissingError, match=command.split()[-3] + ".*h1t/TCD-SD15-LoRA"):
        generate_backgrounds(*inpaint_inputs, request, registry=ModelRegistry())


def test_backdrop_replace_fast_runs_the_recipe_records_it_and_reruns_bit_identically(tiny_models, astronaut, lora_hub,
                                                                                      tmp_path, capsys):
    """`backdrop replace photo -o out.png -b ai --fast`: the run record says which LoRA, scheduler,
    steps and guidance ran and that no unguided row did; the output's parameters text says the
    same; `backdrop rerun` gives the same pixels; `show` lists the request's fast mode."""
    import json

    from PIL import Image

    from backdrop.cli import main
    from tiny_models import HUB_REVISION

    photo = tmp_path / "photo.png"
    astronaut.resize((160, 120)).save(photo)
    out = tmp_path / "fast.png"
    code = main(["replace", str(photo), "-o", str(out), "-b", "ai", "--fast", "--prompt", "a beach", "--seed", "5",
                 "--device", "cpu", "--json", "--inpaint-model", tiny_models["inpaint"],
                 "--controlnet-model", tiny_models["controlnet"], "--depth-model", tiny_models["depth"]])
    assert code == 0, capsys.readouterr().err
    report = json.loads(capsys.readouterr().out)
    assert report["request"]["fast"] is True and report["request"]["fast_lora"] == LCM
    assert report["request"]["version"] == SCHEMA_VERSION and report["request"]["steps"] == 25  # kept for standard mode
    record = report["record"]
    assert (record["fast_lora"], record["scheduler"], record["steps"], record["guidance"], record["guided"]) == (
        LCM, "LCMScheduler", 4, 1.0, False)
    assert record["rows"] == 1 and record["depth_control"] is True
    assert report["models"]["fast_lora"] == {"id": LCM, "revision": HUB_REVISION}
    parameters = Image.open(out).text["parameters"]
    assert "Steps: 4, Sampler: LCM, CFG scale: 1.0" in parameters and f"Fast mode: LCM-LoRA SD1.5 ({LCM})" in parameters

    again = tmp_path / "again.png"
    assert main(["rerun", str(report["generation_id"]), "-o", str(again)]) == 0
    assert f"identical to generation {report['generation_id']}: yes" in capsys.readouterr().out
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(again)))
    assert main(["show", str(report["generation_id"])]) == 0
    shown = capsys.readouterr().out
    assert "  Fast: True  (default False)" in shown and "scheduler: LCMScheduler" in shown and "guided: False" in shown


@pytest.mark.slow
def test_the_api_takes_the_same_field(tiny_models, tiny_lora_cache, lemur_path, tmp_path):
    """`POST /v1/generations` with ``{"fast": true}``: the recipe runs, the generation's record
    says so, a re-run gives the same image; an unknown LoRA is refused with the field's message."""
    import io
    import json

    import httpx
    from PIL import Image

    from api_server import serve, wait_finished

    data = tmp_path / "data"
    data.mkdir()
    fields = {"background": "ai", "fast": True, "prompt": "a beach", "seed": 3, "device": "cpu",
              "inpaint_model": tiny_models["inpaint"], "controlnet_model": tiny_models["controlnet"],
              "depth_model": tiny_models["depth"]}
    with serve(data, env={"HF_HUB_CACHE": str(tiny_lora_cache), "HF_HUB_OFFLINE": "1"}) as (url, _process), \
            httpx.Client(base_url=url, timeout=60) as client:
        def create(request):
            return client.post("/v1/generations", files={"photo": ("photo.png", lemur_path.read_bytes(), "image/png")},
                               data={"request": json.dumps(request)})

        made = wait_finished(client, create(fields).json()["id"])
        assert made["status"] == "done", made["error"]
        assert made["request"]["fast"] is True and made["record"]["fast_lora"] == LCM
        assert (made["record"]["scheduler"], made["record"]["steps"], made["record"]["guided"]) == ("LCMScheduler", 4, False)
        again = wait_finished(client, client.post(f"/v1/generations/{made['id']}/rerun").json()["id"])
        images = [np.asarray(Image.open(io.BytesIO(client.get(g["images"]["result"][0]).content))) for g in (made, again)]
        assert np.array_equal(*images)
        refused = create({**fields, "fast_lora": "someone/else"})
        assert refused.status_code == 422 and "fast lora must be one of" in refused.json()["detail"]


def test_a_lora_for_another_architecture_is_refused_and_the_weights_stay(tiny_models, inpaint_inputs, tmp_path,
                                                                         monkeypatch):
    """A LoRA made for another UNet (wider blocks) under a recipe's id: fast mode says it does not
    fit, and the shared UNet is left with its own weights, so a standard run is unchanged."""
    from huggingface_hub import constants

    from core.errors import InputError
    from tiny_models import UNET, install_in_hub_cache, lora_unet, save_lora

    other = lora_unet({**UNET, "block_out_channels": (64, 128), "attention_head_dim": 16})
    install_in_hub_cache(tmp_path / "hub", LCM, {RECIPES[LCM].weight_name: save_lora(other, tmp_path, "o.safetensors",
                                                                                     "kohya")})
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    registry = ModelRegistry()
    standard = fast_request(tiny_models, fast=False)
    before = ours(inpaint_inputs, standard, registry, monkeypatch)[0]
    with pytest.raises(InputError, match="does not fit this inpainting model"):
        generate_backgrounds(*inpaint_inputs, fast_request(tiny_models), registry=registry)
    assert torch.equal(ours(inpaint_inputs, standard, registry, monkeypatch)[0], before)
    assert registry.unet_weights(tiny_models["inpaint"], "cpu").fused is None
    assert not any("lora" in name for name in registry.load("inpaint", tiny_models["inpaint"], "cpu").unet.state_dict())


@pytest.mark.slow
def test_the_compiled_step_runs_the_fused_weights(tiny_models, inpaint_inputs, lora_hub, monkeypatch, tmp_path):
    """BACKDROP_COMPILE=1 (the "eager" torch.compile backend, as tests/test_engine.py uses): once
    fast mode's shape is compiled, fast runs use the compiled step and give the eager step's
    images; a standard run of the same shape (guidance 1) on the same compiled code gives the
    standard images: the compiled code reads whatever weights the UNet holds."""
    monkeypatch.setenv("BACKDROP_COMPILE", "1")
    monkeypatch.setenv("BACKDROP_COMPILE_BACKEND", "eager")
    monkeypatch.setenv("BACKDROP_COMPILE_CACHE", str(tmp_path))
    fast = fast_request(tiny_models, steps=3)
    standard = fast.replace(fast=False, guidance=1.0)
    registry = ModelRegistry()
    first: dict = {}
    eager_fast = generate_backgrounds(*inpaint_inputs, fast, registry=registry, record=first)
    assert first["step"] == "eager"
    compiled = registry.step_runner(fast.inpaint_model, fast.controlnet_model, "cpu").compiled()
    (key,) = compiled.requested()
    assert compiled.wait(key, timeout=300), compiled.status(key)
    with monkeypatch.context() as plain:
        plain.delenv("BACKDROP_COMPILE")
        eager_standard = generate_backgrounds(*inpaint_inputs, standard, registry=ModelRegistry())
    for request, expected in ((fast, eager_fast), (standard, eager_standard), (fast, eager_fast)):
        record: dict = {}
        images = generate_backgrounds(*inpaint_inputs, request, registry=registry, record=record)
        assert record["step"] == "compiled"
        assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(images, expected, strict=True))
