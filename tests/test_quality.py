"""Quality features: presets, harmony, shadows, matting refinement and the eval report."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import color

from core.errors import InputError
from core.look.harmony import as_photographed, harmonize, ring_mask
from core.presets import PRESETS, QUALITY_NEGATIVE, full_negative_prompt, get_preset
from core.request import FIELD, GenerationRequest
from core.look.shadows import apply_shadows

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"


def test_presets_cover_the_issue_list_and_each_has_a_negative():
    for name in ("studio", "marble", "beach_sunset", "city_night", "forest", "kitchen"):
        preset = get_preset(name)
        assert preset.prompt and preset.negative and preset.label
    assert len(PRESETS) >= 8
    with pytest.raises(InputError, match="studio"):
        get_preset("moon")


def test_quality_negative_is_added_unless_turned_off():
    request = GenerationRequest(negative_prompt="people, ")
    assert full_negative_prompt(request) == "people, " + QUALITY_NEGATIVE
    assert full_negative_prompt(request.replace(quality_negative=False)) == "people"
    assert full_negative_prompt(GenerationRequest()) == QUALITY_NEGATIVE
    assert full_negative_prompt(GenerationRequest(quality_negative=False)) == ""


def test_colour_match_is_off_unless_asked_and_its_before_after_is_exact_where_opaque():
    """The subject promise: harmony starts at 0 for every background, so opaque subject pixels
    are the input's; when it is on, ``as_photographed`` puts them back for the before/after."""
    from core.look.composite import composite, cutout
    from core.quality.evaluate import foreground_preservation

    assert GenerationRequest().harmony == 0.0 and FIELD["harmony"].default == 0.0
    photo, alpha, scene = _subject_scene()
    for kind in ("ai", "image", "color"):
        assert GenerationRequest(background=kind if kind != "color" else "color:#102030").harmony == 0.0
    cut = cutout(photo, alpha)
    matched = composite(photo, alpha, scene, GenerationRequest(harmony=1.0), cut=cut)
    assert foreground_preservation(photo, alpha, matched) > 0  # colour match does change them
    before = as_photographed(matched, cut)
    plain = composite(photo, alpha, scene, GenerationRequest(), cut=cut)
    opaque = np.asarray(alpha) == 255
    assert np.array_equal(np.asarray(before)[opaque], np.asarray(photo)[opaque])
    assert np.array_equal(np.asarray(before)[opaque], np.asarray(plain)[opaque])


def _subject_scene(size=(120, 100)):
    """A grey-blue subject disc on a photo, alpha with a soft rim, and a warm orange scene."""
    w, h = size
    yy, xx = np.mgrid[:h, :w]
    dist = np.hypot(yy - h / 2, xx - w / 2)
    alpha = np.clip((30 - dist) / 3, 0, 1)
    rng = np.random.default_rng(0)
    photo = np.clip(np.array([90, 110, 160]) + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
    scene = np.clip(np.array([230, 150, 60]) + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)
    return (
        Image.fromarray(photo),
        Image.fromarray(np.round(alpha * 255).astype(np.uint8)),
        Image.fromarray(scene),
    )


def test_harmony_off_keeps_every_pixel_and_on_moves_the_subject_toward_the_scene():
    photo, alpha, scene = _subject_scene()
    before = np.asarray(photo).copy()
    assert harmonize(photo, alpha, scene, 0.0) is photo

    shifted = harmonize(photo, alpha, scene, 1.0)
    assert np.array_equal(np.asarray(photo), before)  # the original is never touched
    a = np.asarray(alpha)
    subject = a == 255
    lab_before = color.rgb2lab(before[subject][None])[0].mean(0)
    lab_after = color.rgb2lab(np.asarray(shifted)[subject][None])[0].mean(0)
    lab_scene = color.rgb2lab(np.asarray(scene)[ring_mask(a / 255.0)][None])[0].mean(0)
    assert np.linalg.norm(lab_after - lab_scene) < np.linalg.norm(lab_before - lab_scene) - 5
    assert lab_after[2] > lab_before[2] + 3  # warmer (more yellow) under an orange scene
    outside = a == 0
    assert np.array_equal(np.asarray(shifted)[outside], before[outside])
    weaker = harmonize(photo, alpha, scene, 0.3)
    lab_weak = color.rgb2lab(np.asarray(weaker)[subject][None])[0].mean(0)
    assert np.linalg.norm(lab_weak - lab_before) < np.linalg.norm(lab_after - lab_before)


def _standing_subject(size=(200, 160)):
    """A box standing with its base at row 120, centred, on a uniform light background."""
    w, h = size
    alpha = np.zeros((h, w), np.uint8)
    alpha[60:121, 85:116] = 255
    return Image.fromarray(alpha), Image.new("RGB", size, (220, 220, 220))


def test_contact_shadow_darkens_only_around_the_base():
    alpha, background = _standing_subject()
    out = np.asarray(apply_shadows(background, alpha, GenerationRequest(contact_shadow=0.8)), dtype=int)
    assert out[122:126, 90:111].mean() < 200  # just below the base: dark
    assert (out[:50] == 220).all()  # above the subject: untouched
    assert (out[:, :60] == 220).all() and (out[:, 141:] == 220).all()  # far to the sides
    assert out[90, 100].mean() == 220  # mid-height behind the subject: no contact shadow
    off = apply_shadows(background, alpha, GenerationRequest())
    assert off is background


def test_cast_shadow_falls_in_its_direction_with_softness():
    alpha, background = _standing_subject()
    request = GenerationRequest(cast_shadow=0.7, shadow_angle=135, shadow_softness=0.3)
    out = np.asarray(apply_shadows(background, alpha, request), dtype=int)[..., 0]
    left_back = out[90:118, 40:84]  # up-left of the base: where a 135-degree shadow lies
    right_back = out[90:118, 125:160]  # clear of the base corner, where the blur may reach
    assert left_back.min() < 190 and (right_back == 220).all()
    assert (out[126:] == 220).all()  # nothing in front of the base (past its penumbra)
    mirrored = np.asarray(apply_shadows(background, alpha, request.replace(shadow_angle=45)), dtype=int)[..., 0]
    assert mirrored[90:118, 117:160].min() < 190 and (mirrored[90:118, 40:76] == 220).all()
    sharp = np.asarray(apply_shadows(background, alpha, request.replace(shadow_softness=0.0)), dtype=int)[..., 0]
    soft = np.asarray(apply_shadows(background, alpha, request.replace(shadow_softness=1.0)), dtype=int)[..., 0]
    assert np.abs(np.diff(soft[80:118, 30:84], axis=1)).max() < np.abs(np.diff(sharp[80:118, 30:84], axis=1)).max()


@pytest.fixture(scope="module")
def lemur_photo(lemur_path):
    return Image.open(lemur_path).convert("RGB")


@pytest.fixture(scope="module")
def lemur_mask(lemur_photo):
    from core.masks.segment import automatic_mask

    return automatic_mask(lemur_photo, "u2netp")


def test_refinement_agrees_better_with_the_reference_matte_and_keeps_fur_soft(lemur_photo, lemur_mask, lemur_alpha):
    from core.quality.evaluate import iou, sad
    from core.masks.matting import refine_alpha

    truth = lemur_alpha / 255.0
    refined = np.asarray(refine_alpha(lemur_photo, lemur_mask, time_limit=60.0))  # the solve, not its speed
    raw = np.asarray(lemur_mask) / 255.0
    assert refined.shape == raw.shape
    assert iou(refined / 255.0, truth) >= iou(raw, truth)
    assert sad(refined / 255.0, truth) < sad(raw, truth)
    soft = (refined > 0) & (refined < 255)
    assert soft.sum() > 2000  # fur edges stay soft: thousands of partial pixels
    assert soft.mean() < 0.2  # but only along the edge; interior and background are exact
    assert (refined[:20, :20] == 0).all()


def test_refinement_of_a_photo_larger_than_the_solve_size(lemur_photo, lemur_mask, lemur_alpha):
    """Above MAX_SOLVE_SIDE the matte is solved small and enlarged: full size out, still
    closer to the reference than the raw mask."""
    from core.quality.evaluate import sad
    from core.masks.matting import MAX_SOLVE_SIDE, refine_alpha

    size = (MAX_SOLVE_SIDE + 400, round((MAX_SOLVE_SIDE + 400) * lemur_photo.height / lemur_photo.width))
    photo = lemur_photo.resize(size, Image.LANCZOS)
    mask = lemur_mask.resize(size, Image.BILINEAR)
    truth = np.asarray(Image.fromarray(lemur_alpha).resize(size, Image.BILINEAR)) / 255.0
    refined = refine_alpha(photo, mask, time_limit=60.0)  # what is solved, not how fast: no load-made fallback
    assert refined.size == size
    values = np.asarray(refined)
    assert sad(values / 255.0, truth) < sad(np.asarray(mask) / 255.0, truth)
    assert ((values > 0) & (values < 255)).sum() > 4000


@pytest.mark.slow
def test_eval_cli_on_the_lemur_writes_table_and_json(tmp_path, capsys):
    from backdrop.cli import main

    out = tmp_path / "report.json"
    assert main(["eval", str(Path(__file__).parent / "data" / "lemur"), "--json", str(out), "--segmenter", "u2netp"]) == 0
    table = capsys.readouterr().out
    assert "lemur" in table and "iou" in table and "halo_default" in table and "ghost_raw" in table
    report = json.loads(out.read_text())
    rows = {row["refine"]: row for row in report["images"]}
    assert set(rows) == {False, True} and len(report["overall"]) == 2
    raw, refined = rows[False], rows[True]
    for row in (raw, refined):
        assert row["image"] == "lemur" and row["fg_maxdiff"] == 0
        assert 0.95 < row["iou"] <= 1.0 and row["seconds"] > 0
        for measure in ("halo", "edge"):  # the default beats the raw mask pasted softly and a hard cut-out
            assert row[f"{measure}_default"] < min(row[f"{measure}_raw"], row[f"{measure}_hard"]), measure
            assert row[f"{measure}_beats"] == 1
        assert row["edge_default"] < row["edge_nospill"]  # spill removal helps
    assert raw["ghost"] == 0.0 < raw["ghost_raw"]  # no soft pixels away from the edge
    assert refined["refine_s"] > 0 and raw["refine_s"] == 0 and refined["warnings"] == []
    assert refined["sad"] < raw["sad"] and refined["grad"] < raw["grad"]
    assert refined["edge_default"] < raw["edge_default"]
    assert report["overall"][0]["halo_beats"] == 1 and "beats both" in table


def test_eval_pairs_photos_with_alpha_suffixes(tmp_path):
    from core.quality.evaluate import find_samples

    for name in ("a.png", "a_alpha.png", "b.jpg", "b_alpha_fba.png", "c_trimap.png", "d_alpha.png"):
        (tmp_path / name).write_bytes(b"")
    assert [(s.name, s.photo.name, s.alpha.name) for s in find_samples(tmp_path)] == [
        ("a", "a.png", "a_alpha.png"),
        ("b", "b.jpg", "b_alpha_fba.png"),
    ]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="no NAME.png"):
        find_samples(empty)


def test_composite_puts_shadows_under_the_subject_and_harmony_only_when_asked():
    from core.look.composite import composite
    from core.quality.evaluate import foreground_preservation

    alpha, background = _standing_subject()
    rng = np.random.default_rng(1)
    photo = Image.fromarray(rng.integers(0, 256, (160, 200, 3), dtype=np.uint8))
    request = GenerationRequest(contact_shadow=0.8, cast_shadow=0.5)
    plain = composite(photo, alpha, background, request)
    assert foreground_preservation(photo, alpha, plain) == 0  # harmony off: subject untouched
    out = np.asarray(plain, dtype=int)
    assert out[122:125, 90:111].mean() < 200 and (out[:40] == 220).all()  # shadow at the base only
    assert np.asarray(background).min() == 220  # the caller's background is not modified

    warm = Image.new("RGB", background.size, (240, 150, 40))
    tinted = composite(photo, alpha, warm, request.replace(harmony=1.0, contact_shadow=0.0, cast_shadow=0.0))
    assert foreground_preservation(photo, alpha, tinted) > 0
    subject = np.asarray(alpha) == 255
    assert np.asarray(tinted, dtype=int)[subject][:, 2].mean() < np.asarray(photo, dtype=int)[subject][:, 2].mean()


def test_pipeline_refines_the_mask_when_asked_and_times_it(lemur_photo):
    from core.pipeline import run

    request = GenerationRequest(background="color:#ff00ff", contact_shadow=0.5)
    plain = run(lemur_photo, request)
    refined = run(lemur_photo, request.replace(refine_matting=True))
    assert "refine" not in plain.timings and refined.timings["refine"] > 0
    assert refined.mask.size == lemur_photo.size == refined.images[0].size
    assert not np.array_equal(np.asarray(refined.mask), np.asarray(plain.mask))
    assert np.array_equal(np.asarray(refined.cutout)[..., 3], np.asarray(refined.mask))
    # for a person to look at: the fur at 100%, plain mask (left) and refined (right)
    box = (230, 40, 480, 200)
    sheet = Image.new("RGB", (2 * 250 + 10, 160), (128, 128, 128))
    sheet.paste(plain.images[0].crop(box), (0, 0))
    sheet.paste(refined.images[0].crop(box), (260, 0))
    ARTIFACTS.mkdir(exist_ok=True)
    sheet.save(ARTIFACTS / "lemur_fur_plain_vs_refined_100pct.png")


def test_replace_cli_quality_options_build_the_request():
    from backdrop.cli import build_parser
    from backdrop.replace import request_from_args

    def fields(*argv):
        request, _ = request_from_args(build_parser().parse_args(["replace", "in.png", "-o", "out.png", *argv]))
        return request

    marble = get_preset("marble")
    f = fields("-b", "ai", "--preset", "marble", "--contact-shadow", "0.6", "--cast-shadow", "0.3",
               "--shadow-angle", "45", "--shadow-softness", "0.2", "--refine", "--no-quality-negative")
    assert (f.prompt, f.negative_prompt) == (marble.prompt, marble.negative)
    assert f.harmony == 0.0  # the subject's pixels stay the photo's unless asked
    assert (f.contact_shadow, f.cast_shadow, f.shadow_angle, f.shadow_softness) == (0.6, 0.3, 45.0, 0.2)
    assert f.refine_matting is True and f.quality_negative is False
    edited = fields("-b", "ai", "--preset", "marble", "--prompt", "on black marble", "--harmony", "0.4")
    assert edited.prompt == "on black marble" and edited.negative_prompt == marble.negative
    assert edited.harmony == 0.4
    plain = fields("-b", "color:#00ff00")
    assert plain.harmony == 0.0 and plain.refine_matting is False and plain.quality_negative is True
    with pytest.raises(SystemExit):
        fields("--harmony", "1.5")


def test_refinement_past_its_time_limit_keeps_the_unrefined_edge_and_says_so(lemur_photo, lemur_mask):
    from core.masks.matting import refine_alpha

    warnings: list[str] = []
    out = refine_alpha(lemur_photo, lemur_mask, time_limit=0.0, warnings=warnings)
    assert np.array_equal(np.asarray(out), np.asarray(lemur_mask))
    assert len(warnings) == 1 and "ran past 0 s" in warnings[0] and "unrefined edge" in warnings[0]


def test_refinement_solver_failure_falls_back_quietly(lemur_photo, lemur_mask, monkeypatch, capsys):
    """pymatting's incomplete Cholesky can fail (and prints while it retries): the edge stays
    unrefined, the warning names the failure, nothing reaches stdout, and a generation
    carries the warning."""
    import pymatting

    from core.masks.matting import refine_alpha
    from core.pipeline import run

    def failing(matrix, *args, **kwargs):
        print("PERFORMANCE WARNING:\nThresholded incomplete Cholesky decomposition failed ...")
        raise ValueError("Thresholded incomplete Cholesky decomposition failed because more than max_nnz ...")

    monkeypatch.setattr(pymatting, "ichol", failing)
    warnings: list[str] = []
    out = refine_alpha(lemur_photo, lemur_mask, warnings=warnings)
    assert np.array_equal(np.asarray(out), np.asarray(lemur_mask))
    assert len(warnings) == 1 and "solver failed (Thresholded incomplete Cholesky" in warnings[0]
    result = run(lemur_photo, GenerationRequest(refine_matting=True))
    assert any("edge refinement skipped" in w for w in result.warnings)
    assert np.array_equal(np.asarray(result.mask), np.asarray(lemur_mask))
    assert "PERFORMANCE WARNING" not in capsys.readouterr().out


@pytest.mark.slow
def test_refinement_stays_within_two_seconds_on_the_tests_photos(synthetic_set, lemur_photo, astronaut):
    """The product's promise (issue 13): at most 2 s for any photo, here every photo the tests
    use, at its own size and at 12 MP. The deadline (with fallback) makes it a bound rather
    than a hope; bench/edge_bench.py measures the typical times properly."""
    import time

    from skimage import data

    from core.masks.matting import refine_alpha
    from core.masks.segment import automatic_mask

    photos = [Image.open(p).convert("RGB") for p in sorted(synthetic_set.glob("*.png")) if "_alpha" not in p.name]
    photos += [lemur_photo, astronaut] + [Image.fromarray(getattr(data, n)()).convert("RGB") for n in ("coffee", "chelsea", "rocket")]
    photos += [lemur_photo.resize((4000, 3000), Image.BILINEAR)]
    slowest = 0.0
    for photo in photos:
        mask = automatic_mask(photo)
        started = time.perf_counter()
        refine_alpha(photo, mask)
        slowest = max(slowest, time.perf_counter() - started)
    assert slowest < 2.0, slowest
