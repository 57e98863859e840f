"""Settings read back from a PNG (core.png_settings): a Backdrop result's request exactly, through
the request's own loader and upgrades; AUTOMATIC1111's parameters text in the shapes its
versions write; and files with nothing to read, each with a sentence that says why."""

from __future__ import annotations

import io
import json
import struct
import zlib

import pytest
from PIL import Image, PngImagePlugin

from core.errors import InputError
from core.png_settings import REQUEST_CHUNK, parameters_settings, parse_parameters, read_png_settings, request_text
from core.request import SCHEMA_VERSION, GenerationRequest


def png(chunks: dict[str, str] | None = None, size=(8, 6)) -> bytes:
    info = PngImagePlugin.PngInfo()
    for key, value in (chunks or {}).items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 20, 30)).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


# AUTOMATIC1111 1.5: the schedule in the sampler's name, hires fix, clip skip
CLASSIC = """masterpiece, best quality, a cat sitting on a windowsill, (sunlight:1.2)
Negative prompt: lowres, bad anatomy, (worst quality:1.4)
Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 1234567890, Size: 512x768, Model hash: 6ce0161689, \
Model: v1-5-pruned-emaonly, Denoising strength: 0.7, Clip skip: 2, Hires upscale: 2, Hires upscaler: Latent, \
Version: v1.5.1"""
# AUTOMATIC1111 1.6 and later: "Schedule type" apart; no negative prompt at all
NO_NEGATIVE = """a photo of a lighthouse at dusk, long exposure
Steps: 30, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 5.5, Seed: 42, Size: 768x512, \
Model hash: 31e35c80fc, Model: sd_xl_base_1.0, Version: v1.10.1"""
# a prompt and a negative prompt over several lines (a blank one too), quoted values holding commas
MULTILINE = """a cozy cabin,
snow falling, warm light in the windows

BREAK pine trees
Negative prompt: blurry,
text, watermark
Steps: 25, Sampler: Euler a, CFG scale: 7.5, Seed: 3141592653, Size: 512x512, Model hash: e1441589a6, \
Model: v1-5-pruned, TI hashes: "easynegative: c74b4e810b03", Lora hashes: "add_detail: 7c6bad76eb54, \
more_details: 3b8aa1d351ef", Version: v1.7.0"""
UNKNOWN_SAMPLER = """portrait of an astronaut
Negative prompt: cartoon
Steps: 200, Sampler: Heun, CFG scale: 31, Seed: 7, Size: 512x512"""


def test_classic_text_fills_prompt_negative_seed_steps_guidance_and_maps_the_sampler():
    read = parameters_settings(CLASSIC)
    assert read.values == {
        "prompt": "masterpiece, best quality, a cat sitting on a windowsill, (sunlight:1.2)",
        "negative_prompt": "lowres, bad anatomy, (worst quality:1.4)", "background": "ai",
        "steps": 20, "guidance": 7.0, "seed": 1234567890, "scheduler": "dpmpp",
    }
    assert not read.problems
    (problem,) = read.notes  # the Karras schedule: said, not hidden
    assert "'DPM++ 2M Karras' became DPM++ 2M" in problem and "noise schedule" in problem
    assert read.unused == ["Size", "Model hash", "Model", "Denoising strength", "Clip skip", "Hires upscale",
                           "Hires upscaler", "Version"]
    assert read.request is None and read.generation is None


def test_no_negative_prompt_means_an_empty_one_and_schedule_type_is_noted():
    read = parameters_settings(NO_NEGATIVE)
    assert read.values["prompt"] == "a photo of a lighthouse at dusk, long exposure"
    assert read.values["negative_prompt"] == ""
    assert (read.values["steps"], read.values["guidance"], read.values["seed"]) == (30, 5.5, 42)
    assert read.values["scheduler"] == "dpmpp" and "with the Karras schedule" in read.notes[0]


def test_multi_line_prompt_and_negative_and_quoted_values():
    prompt, negative, pairs = parse_parameters(MULTILINE)
    assert prompt == "a cozy cabin,\nsnow falling, warm light in the windows\n\nBREAK pine trees"
    assert negative == "blurry,\ntext, watermark"
    assert pairs["Lora hashes"] == "add_detail: 7c6bad76eb54, more_details: 3b8aa1d351ef"
    assert pairs["TI hashes"] == "easynegative: c74b4e810b03"
    read = parameters_settings(MULTILINE)
    assert read.values["scheduler"] == "euler_a" and read.values["seed"] == 3141592653
    assert not read.problems and not read.notes


def test_unknown_sampler_and_out_of_range_values_are_named_and_left_as_they_were():
    read = parameters_settings(UNKNOWN_SAMPLER)
    assert read.values == {"prompt": "portrait of an astronaut", "negative_prompt": "cartoon", "background": "ai",
                           "seed": 7}
    assert len(read.problems) == 3
    assert read.problems[0].startswith("Steps 200: steps must be from 1 to 150")
    assert read.problems[1].startswith("CFG scale 31: guidance must be from 0 to 30")
    assert read.problems[2] == ("Sampler 'Heun' is not one Backdrop has (it has DPM++ 2M, DDIM, Euler a); the "
                                "scheduler was left as it was")


def test_text_without_pairs_is_all_prompt_and_pairs_without_prompt_touch_no_prompt():
    assert parameters_settings("a red bicycle\nagainst a brick wall").values == {
        "prompt": "a red bicycle\nagainst a brick wall", "negative_prompt": "", "background": "ai"}
    # a Backdrop colour result from before the request chunk: its background, no prompt
    read = parameters_settings('Size: 680x440, Background: "color:#00ff00", Backdrop generation: 12')
    assert read.values == {"background": "color:#00ff00"} and read.generation == 12 and read.unused == ["Size"]
    assert parameters_settings("x\nSteps: many, Seed: 1, CFG scale: 7").problems == [
        "Steps 'many' is not a whole number; left as it was"]


def test_backdrop_request_round_trips_exactly():
    request = GenerationRequest(background="ai", prompt="ein Tisch aus Marmor, (Licht:1.3)\n  zweite Zeile ✓ ",
                                negative_prompt="  blurry ", seed=2**63 - 1, steps=42, guidance=4.5,
                                scheduler="euler_a", variants=3, mask_grow=9, spill_removal=False, harmony=0.35,
                                cast_shadow=0.4, shadow_angle=200.0, inpaint_model="mine/inpaint", device="cpu")
    read = read_png_settings(png({REQUEST_CHUNK: request_text(request), "parameters": "ignored\nSteps: 1, "
                                  "Seed: 1, CFG scale: 1, Backdrop generation: 31"}))
    assert read.request == request and read.source == "a Backdrop result" and read.generation == 31
    assert read.values["prompt"] == request.prompt and read.values["seed"] == 2**63 - 1
    assert "inpaint_model" not in read.values and "device" not in read.values  # this machine's stay
    assert not read.problems and not read.unused


def test_an_older_stored_request_is_upgraded_and_a_newer_one_falls_back_to_the_text():
    v2 = {k: v for k, v in GenerationRequest(background="ai", prompt="old", seed=5).to_dict().items()
          if k not in ("enhance_prompt", "prompt_model", "fast", "fast_lora", "canvas", "fill", "anchor", "margin")
          } | {"version": 2}  # without the fields versions 3 to 5 added
    read = read_png_settings(png({REQUEST_CHUNK: json.dumps(v2)}))
    assert read.request == GenerationRequest(background="ai", prompt="old", seed=5)
    newer = json.dumps({"version": SCHEMA_VERSION + 1, "prompt": "from the future"})
    read = read_png_settings(png({REQUEST_CHUNK: newer, "parameters": NO_NEGATIVE}))
    assert read.request is None and read.values["seed"] == 42
    assert "written by a newer Backdrop" in read.problems[0]
    with pytest.raises(InputError, match="carries no settings to read: its Backdrop settings could not be read"):
        read_png_settings(png({REQUEST_CHUNK: "{not json"}))


def test_a_stored_result_carries_its_request(tmp_path, lemur_path):
    from storage import history, service
    from storage.db import Database

    db = Database(None, tmp_path / "data")
    try:
        request = GenerationRequest(background="color:#336699", prompt="kept for a remix", seed=99, harmony=0.2)
        generation_id, _ = service.generate_and_record(lemur_path.read_bytes(), request, None, db=db)
        stored = history.get(generation_id, db=db).output("result").path.read_bytes()
    finally:
        db.dispose()
    read = read_png_settings(stored)
    assert read.request == request and read.generation == generation_id
    # a colour background reads no prompt or seed: they are not the result's, and the form keeps its own
    assert read.values["background"] == "color:#336699" and read.values["harmony"] == 0.2
    assert "prompt" not in read.values and "seed" not in read.values


def bomb_header() -> bytes:
    """A PNG whose header claims 100000 x 100000 pixels (a decompression bomb's)."""
    data = bytearray(png())
    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


@pytest.mark.parametrize(("data", "message"), [
    (b"", "photo.png is empty"),
    (b"not an image at all", "photo.png is not an image"),
    (png(), "carries no settings to read: it has no Backdrop settings and no AUTOMATIC1111 'parameters' text"),
    (png({"parameters": "  \n "}), "carries no settings to read"),
    (png({"Software": "GIMP"}), "carries no settings to read"),
    (png({"parameters": CLASSIC})[:20], "photo.png is damaged"),
    (bomb_header(), "photo.png says it has more pixels than Backdrop opens"),
])
def test_files_with_nothing_to_read_say_why(data, message):
    with pytest.raises(InputError, match=message.replace(".", r"\.")):
        read_png_settings(data, "photo.png")


def exif_image(fmt: str, comment: bytes | None) -> bytes:
    exif = Image.Exif()
    if comment is not None:
        exif.get_ifd(0x8769)[0x9286] = comment
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format=fmt, exif=exif)
    return buffer.getvalue()


@pytest.mark.parametrize(("fmt", "comment"), [
    ("JPEG", b"UNICODE\0" + NO_NEGATIVE.encode("utf-16-le")),  # piexif on a little-endian machine
    ("WEBP", b"UNICODE\0" + NO_NEGATIVE.encode("utf-16-be")),
    ("JPEG", b"ASCII\0\0\0" + NO_NEGATIVE.encode()),
])
def test_automatic1111_jpeg_and_webp_carry_the_text_in_their_exif_comment(fmt, comment):
    read = read_png_settings(exif_image(fmt, comment))
    assert read.values["prompt"] == "a photo of a lighthouse at dusk, long exposure" and read.values["seed"] == 42


def test_other_images_say_what_is_read():
    with pytest.raises(InputError, match="photo.jpg carries no settings to read"):
        read_png_settings(exif_image("JPEG", None), "photo.jpg")
    buffer = io.BytesIO()
    Image.new("P", (8, 8)).save(buffer, format="GIF")
    with pytest.raises(InputError, match="is a GIF image: settings are read from a PNG's text"):
        read_png_settings(buffer.getvalue(), "anim.gif")


def test_a_large_pngs_text_is_read_without_decoding_its_pixels(monkeypatch):
    """A1111 and Backdrop write the text before the pixels: reading it never decodes them."""
    data = png({"parameters": CLASSIC}, size=(4000, 3000))

    def decode(self):
        raise AssertionError("the pixels were decoded")

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", decode)
    assert read_png_settings(data).values["seed"] == 1234567890
