"""The real u2netp mask: accurate on the lemur, exact 0 / 255 away from the edge, sensible on
scikit-image's photos, and a clear error when weights are missing."""

import numpy as np
import pytest
from PIL import Image
from skimage import data

from core.errors import InputError, ModelMissingError
from core.imaging import load_image
from core.segment import HIGH, LOW, automatic_mask, refine
from core import segment


@pytest.fixture(scope="module")
def lemur_mask(lemur_path):
    photo = load_image(lemur_path)
    return photo, np.asarray(automatic_mask(photo))


def test_lemur_iou(lemur_mask, lemur_alpha):
    photo, mask = lemur_mask
    assert mask.shape == lemur_alpha.shape == (photo.size[1], photo.size[0])
    ours, truth = mask > 127, lemur_alpha > 127
    iou = (ours & truth).sum() / (ours | truth).sum()
    assert iou >= 0.95, iou


def test_lemur_interior_exactly_opaque_background_exactly_clear(lemur_mask, lemur_alpha):
    _, mask = lemur_mask
    # away from the true edge the mask must be exact, not 250-254
    assert (mask[lemur_alpha == 255] == 255).mean() > 0.97
    assert (mask[lemur_alpha == 0] == 0).mean() > 0.97
    soft = (mask > 0) & (mask < 255)
    assert 0 < soft.mean() < 0.08  # soft only along the edge


@pytest.mark.parametrize("name", ["astronaut", "coffee", "chelsea"])
def test_scikit_image_photos_give_non_trivial_masks(name):
    photo = Image.fromarray(getattr(data, name)()).convert("RGB")
    mask = np.asarray(automatic_mask(photo))
    assert mask.shape == (photo.size[1], photo.size[0])
    assert 0.05 < (mask >= 128).mean() < 0.95
    assert ((mask == 0) | (mask == 255)).mean() > 0.75  # mostly decided; the cat is the softest (81%)


def test_rocket_is_found_in_the_middle():
    photo = Image.fromarray(data.rocket())
    mask = np.asarray(automatic_mask(photo)) >= 128
    assert 0.01 < mask.mean() < 0.2  # the rocket is a thin subject
    columns = np.flatnonzero(mask.any(axis=0))
    assert 270 < columns.mean() < 370  # the rocket stands in the middle (x ~ 320)


def test_large_photo_mask_has_its_size(astronaut):
    big = astronaut.resize((2048, 1536))
    mask = automatic_mask(big)
    assert mask.size == big.size and mask.mode == "L"


def test_refine_maps_thresholds_to_exact_ends():
    ramp = Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16))
    out = np.asarray(refine(ramp, (16, 16))).ravel()
    assert (out[: LOW + 1] == 0).all() and (out[HIGH:] == 255).all()
    assert (np.diff(out.astype(int)) >= 0).all()
    assert (out[250:255] == 255).all()  # raw u2netp's interior values


def test_missing_weights_name_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("U2NET_HOME", str(tmp_path))
    monkeypatch.setenv("REMBG_HOME", str(tmp_path))
    with pytest.raises(ModelMissingError, match="backdrop models fetch u2net` .needs a network"):
        segment._new_session("u2net")
    assert list(tmp_path.iterdir()) == []  # nothing was downloaded


@pytest.mark.parametrize("name, message", [("no-such-model", "unknown segmenter"), ("withoutbg", "remote")])
def test_unusable_segmenters(name, message):
    with pytest.raises(InputError, match=message):
        segment._new_session(name)


def test_mask_is_computed_once_per_photo_and_model(astronaut):
    from core.cache import get_cache

    cache = get_cache()
    cache.clear()
    first = automatic_mask(astronaut)
    again = automatic_mask(astronaut.copy())  # same pixels, another object: served from the cache
    assert cache.misses["mask"] == 1 and cache.hits["mask"] == 1
    assert np.array_equal(np.asarray(first), np.asarray(again))
    again.paste(0, (0, 0, 50, 50))  # a caller's edit does not reach the cached mask
    assert np.array_equal(np.asarray(automatic_mask(astronaut)), np.asarray(first))
    other = astronaut.copy()
    other.putpixel((0, 0), (1, 2, 3))
    automatic_mask(other)  # other pixels: computed afresh
    assert cache.misses["mask"] == 2
