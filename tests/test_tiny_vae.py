"""The tiny autoencoder option: TAESD encodes the photo and decodes the background.

As for the engine and fast mode, no tolerance: with the same AutoencoderTiny module given to the
stock diffusers pipeline as its ``vae``, the final latents and images are bit-identical, in fast
mode (the LoRA fused) and in standard mode. The TAESD is a tiny random one in the real format
(tests/tiny_models.py), loaded through the product's own slot.
"""

import numpy as np
import pytest
import torch

from core.errors import ModelMissingError
from core.models.registry import ModelRegistry
from test_engine import stock as stock_standard
from test_fast import LCM, fast_request, ours, snapshot_of, stock

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def registry():
    return ModelRegistry()


@pytest.mark.parametrize(("fast", "variants"), [(True, 1), (True, 2), (False, 1)], ids=["fast", "fast-2", "standard"])
def test_the_tiny_autoencoder_equals_the_stock_pipeline_given_taesd(fast, variants, tiny_models, tiny_taesd,
                                                                   inpaint_inputs, registry, lora_hub, monkeypatch):
    request = fast_request(tiny_models, fast=fast, variants=variants, steps=3, tiny_vae=True, tiny_vae_model=tiny_taesd)
    latents, images, record = ours(inpaint_inputs, request, registry, monkeypatch)
    taesd = registry.load("tiny_vae", tiny_taesd, "cpu")
    if fast:
        their_latents, their_images = stock(inpaint_inputs, request, registry, snapshot_of(lora_hub, LCM), vae=taesd)
    else:
        their_latents, their_images = stock_standard(inpaint_inputs, request, registry, control=True, vae=taesd)
    assert torch.equal(latents, their_latents)
    for mine, theirs in zip(images, their_images, strict=True):
        assert np.array_equal(np.asarray(mine), np.asarray(theirs.convert("RGB")))
    assert record["vae_decode"] == "tiny" and record["rows"] == variants * (1 if fast else 2)
    # and TAESD is what made them: the model's own VAE gives other pixels from the same request
    own = ours(inpaint_inputs, request.replace(tiny_vae=False), registry, monkeypatch)
    assert own[2]["vae_decode"] == "full" and not np.array_equal(np.asarray(own[1][0]), np.asarray(images[0]))


def test_without_taesd_the_tiny_autoencoder_says_which_command_fetches_it(tiny_models, inpaint_inputs, tmp_path,
                                                                         monkeypatch):
    from huggingface_hub import constants

    from core.engine.generate import generate_backgrounds
    from core.models.hub import fetch_command
    from core.models.slots import explain_missing, readiness

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    request = fast_request(tiny_models, fast=False, tiny_vae=True)
    ready = readiness(request, "ai")
    assert [row["slot"] for row in ready.blocking] == ["tiny_vae"] and not ready.degraded
    assert ready.blocking[0]["fetch"] == f"{fetch_command()} madebyollin/taesd"
    text = explain_missing(ready.blocking)
    assert "The tiny autoencoder cannot run" in text and "Turn Tiny autoencoder off" in text
    assert readiness(request.replace(tiny_vae=False), "ai").blocking == []
    with pytest.raises(ModelMissingError, match="madebyollin/taesd"):
        generate_backgrounds(*inpaint_inputs, request, registry=ModelRegistry())


def test_backdrop_replace_tiny_vae_records_it_and_reruns_bit_identically(tiny_models, tiny_taesd, astronaut, lora_hub,
                                                                         tmp_path, capsys):
    """`backdrop replace ... --fast --tiny-vae`: the record says TAESD decoded, the generation's
    models name it, the parameters text gives it as the VAE, and `rerun` gives the same pixels."""
    import json

    from PIL import Image

    from backdrop.cli import main

    photo = tmp_path / "photo.png"
    astronaut.resize((160, 120)).save(photo)
    out = tmp_path / "tiny.png"
    code = main(["replace", str(photo), "-o", str(out), "-b", "ai", "--fast", "--tiny-vae", "--tiny-vae-model",
                 tiny_taesd, "--prompt", "a beach", "--seed", "5", "--device", "cpu", "--json",
                 "--inpaint-model", tiny_models["inpaint"], "--controlnet-model", tiny_models["controlnet"],
                 "--depth-model", tiny_models["depth"]])
    assert code == 0, capsys.readouterr().err
    report = json.loads(capsys.readouterr().out)
    assert report["request"]["tiny_vae"] is True and report["record"]["vae_decode"] == "tiny"
    assert report["models"]["tiny_vae"]["id"] == tiny_taesd
    assert f"VAE: {tiny_taesd}" in Image.open(out).text["parameters"]
    again = tmp_path / "again.png"
    assert main(["rerun", str(report["generation_id"]), "-o", str(again)]) == 0
    assert f"identical to generation {report['generation_id']}: yes" in capsys.readouterr().out
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(Image.open(again)))
