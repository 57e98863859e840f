"""The real u2netp mask: accurate on the lemur, exact 0 / 255 away from the edge, no ghosts
(soft only in a band along the boundary; large unsure regions decided and reported), sensible
on scikit-image's photos, and a clear error when weights are missing."""

import numpy as np
import pytest
from PIL import Image
from skimage import data

from core.errors import InputError, ModelMissingError
from core.imaging import load_image
from core.quality.evaluate import contour_distance, ghost_share
from core.masks.segment import _REMAP, FRINGE_FRACTION, HIGH, LOW, analyse_mask, automatic_mask, band_width
from core.masks import cleanup, segment
from core.models.registry import ModelRegistry


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


def test_remap_puts_the_ramp_inside_the_models_half_way_value():
    assert (_REMAP[: LOW + 1] == 0).all() and (_REMAP[HIGH:] == 1).all()
    assert (np.diff(_REMAP) >= 0).all()
    assert _REMAP[128] < 0.5  # the model's 0.5 contour moves outward of the mask's: less halo
    assert (_REMAP[250:255] == 1).all()  # raw u2netp's interior values


def test_soft_pixels_only_along_the_edge(lemur_mask, lemur_alpha):
    """See-through pixels only in the band; past it, only fur's tinted inner fringe is nearly
    opaque (SOLID, so the compositor can take the green out), and only within its reach."""
    photo, mask = lemur_mask
    alpha = mask / 255.0
    see_through = (mask > 0) & (mask < 0.95 * 255)
    fringe = (mask >= 0.95 * 255) & (mask < 255)
    assert see_through.any() and fringe.sum() > 500
    distance = contour_distance(alpha)
    assert distance[see_through].max() <= band_width(photo.size) + 1  # the band, and nothing farther
    step = max(photo.size) // cleanup.HUE_GRID  # the reach is measured in blocks, chessboard: up to sqrt 2 more
    assert distance[fringe].max() <= band_width(photo.size) + 2**0.5 * (FRINGE_FRACTION * max(photo.size) + 2 * step) + 1
    assert set(np.unique(mask[fringe & (distance > band_width(photo.size) + 1)])) == {round(cleanup.SOLID * 255)}
    assert ghost_share(alpha) == 0.0


def test_ghost_region_is_decided_reported_and_can_be_flipped(monkeypatch):
    """A model that is unsure about a whole area (a half-transparent body part) gives a mask
    that keeps or drops it as a whole, says so, and flips it on request."""
    from core.masks import segment

    h, w = 240, 320
    yy, xx = np.mgrid[:h, :w]
    raw = np.zeros((h, w), np.uint8)
    raw[(yy - 120) ** 2 + (xx - 100) ** 2 < 60**2] = 252  # a confident subject...
    raw[60:180, 170:290] = 190  # ...and a large area the model is unsure about (a ghost)
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(90, 110, (h, w, 3), dtype=np.uint8))
    monkeypatch.setattr(segment, "_predict", lambda small, model: Image.fromarray(raw))
    analysis = analyse_mask(photo, "u2netp")
    mask = np.asarray(analysis.mask)
    assert ghost_share(np.asarray(Image.fromarray(raw), dtype=float) / 255.0) > 0.3  # the model's output: ghostly
    assert ghost_share(mask / 255.0) == 0.0
    assert [(r.index, r.kept) for r in analysis.regions] == [(0, True)]  # decided as a whole: kept
    region = np.asarray(analysis.region_mask(0)) == 255
    assert region[120, 230] and not region[120, 100] and 0.1 < region.mean() < 0.2
    assert (mask[80:160, 190:270] == 255).all()  # its inside is opaque, not see-through
    flipped = analyse_mask(photo, "u2netp", decisions={0: False})
    assert not flipped.regions[0].kept
    dropped = np.asarray(flipped.mask)
    assert (dropped[70:170, 180:280] == 0).all() and (dropped[110:130, 80:120] == 255).all()
    assert ghost_share(dropped / 255.0) == 0.0
    assert np.array_equal(np.asarray(automatic_mask(photo, "u2netp", {0: False})), dropped)
    with pytest.raises(InputError, match="no unsure region 3"):
        analysis.region_mask(3)


def test_unsure_regions_are_judged_by_attachment_and_colour(monkeypatch):
    """Three areas the model is equally unsure of (mean 0.43): a lobe of the subject's own
    colour attached to it (an arm, fur) is kept whole; a patch attached to it that looks like
    the wall beside it (a shadow) is dropped; a blob off on its own that looks like the wall
    is dropped. All three are reported, so each can be flipped."""
    h, w = 240, 360
    yy, xx = np.mgrid[:h, :w]
    rng = np.random.default_rng(1)
    photo = np.clip(np.array([200, 190, 170]) + rng.normal(0, 4, (h, w, 3)), 0, 255)  # the wall
    raw = np.zeros((h, w), np.uint8)
    body = (yy - 120) ** 2 + (xx - 110) ** 2 < 60**2
    lobe = (yy > 95) & (yy < 145) & (xx >= 165) & (xx < 235) & ~body
    shadow = (yy >= 175) & (yy < 225) & (xx > 70) & (xx < 150) & ~body
    blob = (yy - 60) ** 2 + (xx - 310) ** 2 < 30**2
    photo[body | lobe] = (90, 60, 40)  # the subject: brown
    raw[body] = 250
    raw[lobe | shadow | blob] = 110
    monkeypatch.setattr(segment, "_predict", lambda small, model: Image.fromarray(raw))
    analysis = analyse_mask(Image.fromarray(photo.astype(np.uint8)), "u2netp")
    mask = np.asarray(analysis.mask)
    found = {}
    for region in analysis.regions:
        pixels = np.asarray(analysis.region_mask(region.index)) == 255
        name = next(n for n, area in (("lobe", lobe), ("shadow", shadow), ("blob", blob)) if area[pixels].mean() > 0.9)
        found[name] = region
    assert set(found) == {"lobe", "shadow", "blob"}
    assert found["lobe"].kept and found["lobe"].attached and found["lobe"].subject_like > 0.9
    assert not found["shadow"].kept and found["shadow"].attached and found["shadow"].background_like > 0.9
    assert not found["blob"].kept and not found["blob"].attached
    assert all(abs(r.confidence - 110 / 255) < 0.01 for r in analysis.regions)
    assert (mask[105:135, 180:225] == 255).all() and (mask[185:215, 80:140] == 0).all() and (mask[blob] == 0).all()
    assert ghost_share(mask / 255.0) == 0.0
    index = found["shadow"].index
    assert (np.asarray(analyse_mask(Image.fromarray(photo.astype(np.uint8)), "u2netp", {index: True}).mask)[185:215, 80:140] == 255).all()


def test_edge_follows_the_photo():
    """A model's wide ramp lying off a sharp photo edge: the guided filter moves the mask's
    edge onto the photo's; far from the edge nothing changes."""
    from core.masks.cleanup import confine_to_band, follow_photo_edges

    h, w = 120, 300
    photo = np.full((h, w, 3), (40, 90, 160), np.uint8)
    photo[:, 150:] = (220, 200, 120)  # the subject: the right half, its edge at x = 150
    alpha = np.tile(np.clip((np.arange(w) - 144) / 20.0, 0, 1), (h, 1))  # the model: 0.5 at x = 154
    followed = follow_photo_edges(photo, alpha, np.abs(np.arange(w) - 154)[None].repeat(h, 0) <= 12, radius=8, eps=1e-4)
    assert np.array_equal(followed[:, :120], alpha[:, :120]) and np.array_equal(followed[:, 190:], alpha[:, 190:])
    ours, plain = confine_to_band(followed, 3)[60], confine_to_band(alpha, 3)[60]
    edge, model_edge = w - ours.sum(), w - plain.sum()  # where a hard edge of the same coverage lies
    assert abs(edge - 150) < 1.5 and abs(model_edge - 150) > 3.5, (edge, model_edge)


def test_large_photo_regions_are_at_the_photos_scale(monkeypatch):
    from core.masks import segment

    raw = np.zeros((256, 256), np.uint8)
    raw[64:192, 64:192] = 140
    monkeypatch.setattr(segment, "_predict", lambda small, model: Image.fromarray(raw))
    photo = Image.new("RGB", (2048, 2048), (100, 100, 100))
    analysis = analyse_mask(photo)
    assert analysis.mask.size == analysis.labels.size == photo.size
    assert len(analysis.regions) == 1 and analysis.regions[0].box[0] > 400


def test_missing_weights_name_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("U2NET_HOME", str(tmp_path))
    monkeypatch.setenv("REMBG_HOME", str(tmp_path))
    with pytest.raises(ModelMissingError, match="backdrop models fetch u2net` .downloads from rembg's releases: needs a "
                                                "network"):
        ModelRegistry().load("segmenter", "u2net", segment.SESSION_DEVICE)
    assert list(tmp_path.iterdir()) == []  # nothing was downloaded


@pytest.mark.parametrize("name, message", [("no-such-model", "unknown segmenter"), ("withoutbg", "remote")])
def test_unusable_segmenters(name, message):
    with pytest.raises(InputError, match=message):
        ModelRegistry().load("segmenter", name, segment.SESSION_DEVICE)


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
