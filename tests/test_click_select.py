"""Click and box selection (core.masks.click_select) with a tiny random Segment Anything in the real
format, loaded through the product's registry: what a random model allows us to check is the
plumbing (sizes, coordinates, prompts, the embedding cache, the add/remove arithmetic, the
errors), not which object it picks."""

import json

import numpy as np
import pytest
from PIL import Image

from core.cache import get_cache
from core.masks.click_select import combine, select_region
from core.errors import InputError, ModelMissingError
from core.models.hub import fetch_command
from core.models.registry import ModelRegistry
from core.models.slots import SAM_MODEL
from core.request import GenerationRequest


@pytest.fixture
def photo():
    rng = np.random.default_rng(7)
    image = rng.integers(0, 60, (300, 400, 3), dtype=np.uint8)
    image[80:220, 120:280] = (200, 160, 90)  # a subject
    return Image.fromarray(image)


@pytest.fixture
def registry():
    return ModelRegistry()


class Spy:
    """Wraps the loaded SamModel: records the prompts the decoder gets and counts the image
    encoder's runs."""

    def __init__(self, model, monkeypatch):
        self.prompts, self.encodes = [], 0
        forward, encode = model.forward, model.get_image_embeddings

        def spy_forward(*args, **kwargs):
            self.prompts.append(kwargs)
            return forward(*args, **kwargs)

        def spy_encode(*args, **kwargs):
            self.encodes += 1
            return encode(*args, **kwargs)

        monkeypatch.setattr(model, "forward", spy_forward)
        monkeypatch.setattr(model, "get_image_embeddings", spy_encode)


def test_region_has_the_photos_size_and_is_binary(photo, tiny_sam, registry):
    region = select_region(photo, points=[(200, 150)], model_id=tiny_sam, device="cpu", registry=registry)
    assert region.mode == "L" and region.size == photo.size
    assert set(np.unique(np.asarray(region))) <= {0, 255}
    large = photo.resize((2400, 1800))
    assert select_region(large, box=(100, 100, 1200, 900), model_id=tiny_sam, device="cpu", registry=registry).size == large.size


def test_prompts_reach_the_decoder_in_sams_frame(photo, tiny_sam, registry, monkeypatch):
    """Points and box are scaled exactly as SamProcessor scales them, positive points are
    labelled 1 and negative 0; one point asks for SAM's three masks, more do not."""
    processor, model = registry.load("sam", tiny_sam, "cpu")
    spy = Spy(model, monkeypatch)
    select_region(photo, points=[(200, 150), (250, 100)], negative_points=[(10, 290)], box=(100, 50, 300, 250),
                  model_id=tiny_sam, device="cpu", registry=registry)
    expected = processor(images=photo, input_points=[[[200, 150], [250, 100], [10, 290]]], input_labels=[[1, 1, 0]],
                         input_boxes=[[[100, 50, 300, 250]]], return_tensors="pt")
    sent = spy.prompts[-1]
    assert np.allclose(sent["input_points"].numpy(), expected["input_points"].numpy(), atol=1e-3)
    assert sent["input_labels"].tolist() == [[[1, 1, 0]]]
    assert np.allclose(sent["input_boxes"].numpy(), expected["input_boxes"].numpy(), atol=1e-3)
    assert sent["multimask_output"] is False
    select_region(photo, points=[(200, 150)], model_id=tiny_sam, device="cpu", registry=registry)
    assert spy.prompts[-1]["multimask_output"] is True and "input_boxes" not in spy.prompts[-1]
    select_region(photo, box=(100, 50, 300, 250), model_id=tiny_sam, device="cpu", registry=registry)
    assert "input_points" not in spy.prompts[-1]


def test_large_photo_points_are_scaled_with_the_photo(photo, tiny_sam, registry, monkeypatch):
    """A photo over 1024 px is reduced before SAM: a click at the same place in the big photo
    reaches SAM at the same place."""
    _, model = registry.load("sam", tiny_sam, "cpu")
    spy = Spy(model, monkeypatch)
    select_region(photo, points=[(200, 150)], model_id=tiny_sam, device="cpu", registry=registry)
    big = photo.resize((photo.width * 4, photo.height * 4), Image.NEAREST)
    select_region(big, points=[(800, 600)], model_id=tiny_sam, device="cpu", registry=registry)
    assert np.allclose(spy.prompts[0]["input_points"].numpy(), spy.prompts[1]["input_points"].numpy(), atol=2.0)


def test_second_click_only_runs_the_decoder(photo, tiny_sam, registry, monkeypatch):
    _, model = registry.load("sam", tiny_sam, "cpu")
    spy = Spy(model, monkeypatch)
    cache = get_cache()
    cache.clear()
    first = select_region(photo, points=[(200, 150)], model_id=tiny_sam, device="cpu", registry=registry)
    second = select_region(photo.copy(), points=[(60, 40)], negative_points=[(200, 150)], model_id=tiny_sam,
                           device="cpu", registry=registry)
    assert spy.encodes == 1 and len(spy.prompts) == 2
    assert cache.misses["sam_embedding"] == 1 and cache.hits["sam_embedding"] == 1
    assert first.size == second.size
    other = photo.copy()
    other.putpixel((0, 0), (255, 0, 0))
    select_region(other, points=[(200, 150)], model_id=tiny_sam, device="cpu", registry=registry)
    assert spy.encodes == 2  # another photo: encoded afresh


def test_combine_adds_removes_and_replaces():
    base = np.zeros((4, 6), np.uint8)
    base[:, :3] = 255
    base[:, 3] = 128  # a soft edge
    region = np.zeros((4, 6), np.uint8)
    region[1:3, 2:5] = 255
    b, r = Image.fromarray(base), Image.fromarray(region)
    added = np.asarray(combine(b, r, "add"))
    assert (added[1:3, 2:5] == 255).all() and np.array_equal(added[[0, 3]], base[[0, 3]]) and added[0, 3] == 128
    removed = np.asarray(combine(b, r, "remove"))
    assert (removed[1:3, 2:5] == 0).all() and np.array_equal(removed[:, :2], base[:, :2]) and removed[0, 3] == 128
    assert np.array_equal(np.asarray(combine(b, r, "replace")), region)
    assert np.array_equal(np.asarray(b), base)  # the base is not modified
    with pytest.raises(InputError, match="unknown selection mode"):
        combine(b, r, "xor")
    with pytest.raises(InputError, match="the region is 3x3"):
        combine(b, Image.new("L", (3, 3)), "add")


def test_clicked_region_joins_or_leaves_the_automatic_mask(photo, tiny_sam, registry):
    """The Studio's two gestures on the automatic mask: add the clicked region, remove it."""
    from core.masks.segment import automatic_mask

    mask = automatic_mask(photo)
    region = select_region(photo, points=[(30, 30)], model_id=tiny_sam, device="cpu", registry=registry)
    selected = np.asarray(region) == 255
    assert selected.any()
    joined, left = np.asarray(combine(mask, region, "add")), np.asarray(combine(mask, region, "remove"))
    assert (joined[selected] == 255).all() and (left[selected] == 0).all()
    assert np.array_equal(joined[~selected], np.asarray(mask)[~selected]) and np.array_equal(left[~selected], np.asarray(mask)[~selected])


@pytest.mark.parametrize("kwargs, message", [
    ({}, "at least one point"),
    ({"negative_points": [(5, 5)]}, "at least one point"),
    ({"points": [(400, 10)]}, r"point \(400, 10\) is outside the 400x300 photo"),
    ({"points": [(1, 2, 3)]}, "a point is"),
    ({"box": (50, 50, 40, 80)}, "x0 < x1"),
])
def test_bad_prompts(photo, tiny_sam, registry, kwargs, message):
    with pytest.raises(InputError, match=message):
        select_region(photo, model_id=tiny_sam, device="cpu", registry=registry, **kwargs)


def test_missing_sam_weights_name_the_model_and_the_fetch_command(photo, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("BACKDROP_SAM_MODEL", raising=False)
    registry = ModelRegistry()
    with pytest.raises(ModelMissingError) as err:
        select_region(photo, points=[(10, 10)], device="cpu", registry=registry)
    assert SAM_MODEL.default in str(err.value) and "backdrop models fetch" in str(err.value)
    assert registry.loaded() == []


def test_a_checkpoint_of_another_kind_is_refused(photo, tiny_models, registry):
    with pytest.raises(InputError, match="is a dpt model; click selection needs a Segment Anything checkpoint"):
        select_region(photo, points=[(10, 10)], model_id=tiny_models["depth"], device="cpu", registry=registry)


def test_sam_is_a_model_slot(tiny_sam, monkeypatch, tmp_path):
    from core.models import slots
    from storage.settings import load_settings, save_settings

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("BACKDROP_SAM_MODEL", raising=False)
    request = GenerationRequest()
    assert "sam" not in slots.needed(request.replace(background="ai"))  # no generation needs it
    rows = {row["slot"]: row for row in slots.model_status(request, load_settings(tmp_path))}
    assert rows["sam"]["id"] == SAM_MODEL.default and not rows["sam"]["present"]
    assert rows["sam"]["fetch"] == f"{fetch_command()} {SAM_MODEL.default}"
    assert {row["slot"]: row for row in slots.model_status(request, {"sam_model": tiny_sam})}["sam"]["present"]
    monkeypatch.setenv("BACKDROP_SAM_MODEL", tiny_sam)
    assert load_settings(tmp_path)["sam_model"] == tiny_sam
    monkeypatch.delenv("BACKDROP_SAM_MODEL")
    assert save_settings({"sam_model": tiny_sam}, tmp_path)["sam_model"] == tiny_sam
    result = slots.fetch("sam", tiny_sam)
    assert result["ok"] and result["revision"].startswith("local:")
    registry = ModelRegistry()
    registry.load("sam", tiny_sam, "cpu")
    assert registry.loaded() == [("sam", tiny_sam, "cpu", "torch.float32")]


def test_mask_command_with_points(tmp_path, photo, tiny_sam, monkeypatch, capsys):
    from backdrop.cli import main
    from core.masks.segment import automatic_mask

    source = tmp_path / "photo.png"
    photo.save(source)
    monkeypatch.setenv("BACKDROP_SAM_MODEL", tiny_sam)
    out = tmp_path / "mask.png"
    assert main(["mask", str(source), "-o", str(out), "--point", "30,30", "--device", "cpu"]) == 0
    region = select_region(photo, points=[(30, 30)], model_id=tiny_sam, device="cpu")
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(combine(automatic_mask(photo), region, "add")))
    removed = tmp_path / "removed.png"
    monkeypatch.setenv("BACKDROP_SAM_MODEL", "nobody/no-such-sam")  # --sam-model wins over the environment
    assert main(["mask", str(source), "-o", str(removed), "--box", "100,50,300,250", "--negative-point", "5,5",
                 "--select", "remove", "--sam-model", tiny_sam, "--device", "cpu"]) == 0
    region = select_region(photo, negative_points=[(5, 5)], box=(100, 50, 300, 250), model_id=tiny_sam, device="cpu")
    assert np.array_equal(np.asarray(Image.open(removed)), np.asarray(combine(automatic_mask(photo), region, "remove")))
    assert main(["mask", str(source), "-o", str(tmp_path / "x.png"), "--point", "900,30"]) == 2
    assert "outside the 400x300 photo" in capsys.readouterr().err and not (tmp_path / "x.png").exists()
    with pytest.raises(SystemExit):
        main(["mask", str(source), "-o", str(out), "--point", "30"])
