"""The request: one declaration per field drives validation and the command line; the schema
version and the explicit upgrade of stored version-1 requests; the run record."""

import argparse
import json
import re
from pathlib import Path

import pytest

from core.errors import InputError
from core.record import note
from core.request import FIELD, FIELDS, SCHEMA_VERSION, UPGRADES, GenerationRequest, upgrade

ROOT = Path(__file__).resolve().parents[1]
STORED = Path(__file__).parent / "data" / "requests"


def test_every_field_is_declared_with_label_help_and_type():
    names = [spec.name for spec in FIELDS]
    assert names == list(GenerationRequest().params())
    for spec in FIELDS:
        assert spec.label and spec.help and spec.type in (str, int, float, bool), spec.name
        assert isinstance(spec.default, spec.type) and getattr(GenerationRequest(), spec.name) == spec.default
        assert (spec.low is None) == (spec.high is None)
    assert {spec.slot for spec in FIELDS if spec.slot} == {"segmenter", "inpaint", "controlnet", "depth", "fast_lora",
                                                           "tiny_vae", "prompt"}
    assert {spec.env for spec in FIELDS if spec.env} == {
        "BACKDROP_SEGMENTER", "BACKDROP_INPAINT_MODEL", "BACKDROP_CONTROLNET_MODEL", "BACKDROP_DEPTH_MODEL",
        "BACKDROP_FAST_LORA", "BACKDROP_TINY_VAE_MODEL", "BACKDROP_PROMPT_MODEL", "BACKDROP_DEVICE"}


@pytest.mark.parametrize("name, value, message", [
    ("steps", 0, "steps must be from 1 to 150"), ("steps", 2.5, "steps must be a whole number"),
    ("seed", -1, "seed must be from 0 to 9223372036854775807"), ("guidance", float("nan"), "guidance must be a number"),
    ("harmony", 1.5, "harmony must be from 0 to 1"), ("variants", True, "variants must be a whole number"),
    ("scheduler", "plms", "scheduler must be one of dpmpp, ddim, euler_a"), ("background", "image:/x.png", "no argument"),
    ("device", "tpu", "device must be one of"), ("spill_removal", "yes", "spill removal must be true or false"),
    ("shadow_angle", -45.0, "shadow angle must be from 0 to 360"),
])
def test_validation_comes_from_the_declaration(name, value, message):
    with pytest.raises(InputError, match=re.escape(message)):
        GenerationRequest(**{name: value})


def test_to_dict_is_versioned_and_from_dict_is_strict():
    request = GenerationRequest(background="ai", prompt="dunes", seed=9, harmony=0.3)
    stored = json.loads(json.dumps(request.to_dict()))
    assert stored["version"] == SCHEMA_VERSION == 6
    assert GenerationRequest.from_dict(stored) == request
    with pytest.raises(InputError, match="missing: seed"):
        GenerationRequest.from_dict({k: v for k, v in stored.items() if k != "seed"})  # never today's default
    with pytest.raises(InputError, match="unknown: colour"):
        GenerationRequest.from_dict({**stored, "colour": "red"})
    with pytest.raises(InputError, match="version 7, written by a newer Backdrop"):
        GenerationRequest.from_dict({**stored, "version": 7})


def test_version_1_upgrades_explicitly():
    """Stored dicts copied from version 1 (before this schema): the outputs and storage keys
    they held are dropped (they live beside the request now), a picture background's path
    becomes ``image``, a negative shadow angle the same direction in 0-360; every other value
    is kept as stored."""
    ai = json.loads((STORED / "v1-ai.json").read_text())
    assert "version" not in ai and ai["input_sha256"] and ai["model_revisions"]
    request = GenerationRequest.from_dict(ai)
    kept = {k: v for k, v in ai.items() if k in FIELD and k != "shadow_angle"}
    assert {k: getattr(request, k) for k in kept} == kept
    assert request.shadow_angle == 315.0 and request.harmony == 0.5 and request.quality_negative is False
    image = GenerationRequest.from_dict(json.loads((STORED / "v1-image.json").read_text()))
    assert image.background == "image" and image.harmony == 0.5
    assert upgrade(ai)["version"] == SCHEMA_VERSION and "work_width" not in upgrade(ai)
    broken = {k: v for k, v in ai.items() if k != "steps"}
    with pytest.raises(InputError, match="missing: steps"):
        GenerationRequest.from_dict(broken)


def test_version_2_upgrades_explicitly():
    """A request stored by version 2 (written by that version's code, before the prompt
    assistant): the assistant did not run, and its model field gets the model version 3 started
    with; every value stored is kept."""
    stored = json.loads((STORED / "v2-ai.json").read_text())
    assert stored["version"] == 2 and "enhance_prompt" not in stored
    request = GenerationRequest.from_dict(stored)
    assert request.enhance_prompt is False and request.prompt_model == "Qwen/Qwen2.5-0.5B-Instruct"
    assert {k: v for k, v in request.to_dict().items() if k in stored and k != "version"} == \
        {k: v for k, v in stored.items() if k != "version"}
    assert upgrade(stored)["version"] == SCHEMA_VERSION


def test_enhance_prompt_needs_words_and_an_ai_background():
    """Only an AI background reads a prompt: another kind records the assistant off (what is
    stored says what ran); an AI background asked to improve nothing is an error."""
    assert GenerationRequest(background="ai", prompt="beach", enhance_prompt=True).enhance_prompt is True
    assert GenerationRequest(background="color:#ffffff", prompt="beach", enhance_prompt=True).enhance_prompt is False
    with pytest.raises(InputError, match="enhance prompt needs a prompt to improve"):
        GenerationRequest(background="ai", prompt="  ", enhance_prompt=True)


def test_version_3_upgrades_explicitly():
    """A stored version-3 request (written by the version before fast mode): it ran the standard
    sampler, so it reads back with fast mode off and every stored value kept; a version-3
    request naming a field version 3 did not have is an error, not a value to keep."""
    v3 = json.loads((STORED / "v3-ai.json").read_text())
    assert v3["version"] == 3 and "fast" not in v3
    request = GenerationRequest.from_dict(v3)
    assert {k: getattr(request, k) for k in v3 if k != "version"} == {k: v for k, v in v3.items() if k != "version"}
    assert request.fast is False and request.fast_lora == FIELD["fast_lora"].default
    assert UPGRADES[3](v3) == {**v3, "version": 4, "fast": False, "fast_lora": FIELD["fast_lora"].default}
    with pytest.raises(InputError, match="version 3.*unknown: fast"):
        GenerationRequest.from_dict({**v3, "fast": True})


def test_version_4_upgrades_explicitly():
    """A stored version-4 request (before framing): every result had the photo's own size, so it
    reads back with the photo's canvas, nothing scaled or moved, and every stored value kept."""
    v4 = json.loads((STORED / "v4-ai.json").read_text())
    assert v4["version"] == 4 and "canvas" not in v4
    request = GenerationRequest.from_dict(v4)
    assert {k: getattr(request, k) for k in v4 if k != "version"} == {k: v for k, v in v4.items() if k != "version"}
    assert (request.canvas, request.fill, request.anchor) == ("original", 0.0, "center")
    assert upgrade(v4)["version"] == SCHEMA_VERSION


def test_version_5_upgrades_explicitly():
    """A stored version-5 request (before the tiny autoencoder): it encoded and decoded with the
    inpainting model's own VAE, so it reads back with the tiny autoencoder off and every stored
    value kept."""
    v5 = json.loads((STORED / "v5-ai.json").read_text())
    assert v5["version"] == 5 and "tiny_vae" not in v5
    request = GenerationRequest.from_dict(v5)
    assert {k: getattr(request, k) for k in v5 if k != "version"} == {k: v for k, v in v5.items() if k != "version"}
    assert request.tiny_vae is False and request.tiny_vae_model == FIELD["tiny_vae_model"].default
    assert UPGRADES[5](v5) == {**v5, "version": 6, "tiny_vae": False, "tiny_vae_model": "madebyollin/taesd"}

def test_fast_mode_samples_with_its_recipe():
    """Fast mode's scheduler, steps, guidance and eta are its LoRA's recipe, whatever the standard
    settings say; the standard settings are kept for standard mode. Guidance at most 1: no
    unguided row, so a run computes one row per variant and step."""
    from core.engine.recipes import RECIPES, sampling, step_rows

    request = GenerationRequest(background="ai", steps=30, guidance=6.0, scheduler="ddim", variants=2)
    assert (sampling(request).scheduler, sampling(request).steps, sampling(request).eta) == ("ddim", 30, 1.0)
    assert step_rows(request.params()) == 30 * 2 * 2
    for lora, recipe in RECIPES.items():
        plan = sampling(request.replace(fast=True, fast_lora=lora))
        assert (plan.scheduler, plan.steps, plan.guidance, plan.eta, plan.lora) == (
            recipe.scheduler, 4, recipe.guidance, recipe.eta, lora)
        assert not plan.guided and step_rows(request.replace(fast=True, fast_lora=lora).params()) == 4 * 2
    assert sampling(request.replace(fast=True)).lora == "latent-consistency/lcm-lora-sdv1-5"  # the default recipe
    with pytest.raises(InputError, match="fast lora must be one of"):
        request.replace(fast_lora="someone/other-lora")


def test_the_field_table_has_no_second_copy():
    """Each field's environment variable, help and label (those long enough to be its own, not a
    common word such as "Seed") live in core/request.py only: no other module of the product
    spells them out again."""
    sources = {p: p.read_text() for folder in ("core", "storage", "backdrop", "app_pages")
               for p in (ROOT / folder).rglob("*.py") if p != ROOT / "core" / "request.py"}
    sources[ROOT / "streamlit_app.py"] = (ROOT / "streamlit_app.py").read_text()
    for spec in FIELDS:
        for text in filter(None, (spec.env, spec.help, spec.label if len(spec.label.split()) >= 3 else None)):
            copies = [str(p.relative_to(ROOT)) for p, source in sources.items() if text in source]
            assert copies == [], f"{spec.name}: {text!r} again in {copies}"


def test_every_field_is_an_option_of_replace_and_rerun():
    from backdrop.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for command in ("replace", "rerun"):
        dests = {action.dest for action in commands[command]._actions}
        assert {spec.name for spec in FIELDS} <= dests, command
    args = parser.parse_args(["rerun", "3", "--harmony", "0.2", "--no-spill-removal"])
    assert {spec.name: getattr(args, spec.name) for spec in FIELDS if hasattr(args, spec.name)} == {
        "harmony": 0.2, "spill_removal": False}  # only what is given changes in a remix


def test_run_record_keeps_json_only():
    record: dict = {}
    note(record, work_size=(512, 384), eta=1.0, prompt="x", nested={"a": (1, 2)})
    assert record == {"work_size": [512, 384], "eta": 1.0, "prompt": "x", "nested": {"a": [1, 2]}}
    assert json.loads(json.dumps(record)) == record
    with pytest.raises(TypeError, match="cannot be kept as JSON"):
        note(record, tensor=object())
    with pytest.raises(ValueError, match="not a JSON number"):
        note(record, eta=float("inf"))
    note(None, anything=1)  # no record: nothing to do


def test_json_values_are_checked_by_name_and_by_declaration():
    """The HTTP API's body: a misspelt field is an error, never silently its default; a whole
    number is a number; each value is then checked by its field."""
    base = GenerationRequest(seed=4)
    changed = base.with_fields({"guidance": 8, "background": "ai"})
    assert changed.guidance == 8.0 and type(changed.guidance) is float and changed.seed == 4
    assert changed == base.replace(guidance=8.0, background="ai")
    with pytest.raises(InputError, match=re.escape("unknown field(s): colour, size")):
        base.with_fields({"colour": "red", "size": 3})
    with pytest.raises(InputError, match="must be an object"):
        base.with_fields(["ai"])
    with pytest.raises(InputError, match=re.escape("seed must be a whole number (got 1.5)")):
        base.with_fields({"seed": 1.5})


def test_background_kinds_are_one_table():
    """Each kind's declaration is what the parser, the help, the lanes and the checks read."""
    from core.errors import InputError
    from core.look.backgrounds import KINDS, Background
    from storage.jobs import LANES, lane_of

    assert set(LANES) == {kind.lane for kind in KINDS.values()}
    for kind in KINDS.values():
        written = kind.name + (":" + ",".join(["#102030"] * kind.colours) if kind.colours else "")
        parsed = Background.parse(written)
        assert parsed.declared is kind and parsed.spec() == written and kind.written in FIELD["background"].help
        assert lane_of(kind.name) == kind.lane
        request = GenerationRequest(background=written, variants=3)
        assert request.variants == (3 if kind.variants else 1)  # what is stored says what is made
        if kind.picture:
            with pytest.raises(InputError, match="needs its picture"):
                parsed.check_picture(None)
        else:
            with pytest.raises(InputError, match="picture was given"):
                parsed.check_picture(object())
        if kind.colours:
            with pytest.raises(InputError, match=f"needs {'one colour' if kind.colours == 1 else 'two colours'}"):
                Background.parse(kind.name + ":" + ",".join(["#102030"] * (kind.colours + 1)))
