"""The one versioned description of a generation: its parameters, each declared once.

The Studio, the Batch page and the command line build a ``GenerationRequest``, the pipeline
consumes it, storage saves it (``to_dict``, with ``version``) and a re-run loads it back
(``from_dict``, through the explicit upgrades below). It holds parameters only: what a run
produced (sizes, revisions, the exact texts that ran) is the run record (core.record), and the
stored input, mask and background picture are storage's, by content hash.

Each field is declared once, on the class, with ``param(default, label, help, ...)``: its type,
default, range or choices, label, help, environment variable and model slot. ``FIELDS`` lists
those declarations; validation, the command line's options, the app's widgets, prefill and
remix, and the History view are all driven from it.
"""

from __future__ import annotations

import dataclasses
import math
import re
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from core.errors import InputError
from core.engine.recipes import DEFAULT_LORA, RECIPES
from core.look.backgrounds import KINDS, Background
from core.look.framing import Canvas, anchor_spec, check_fill, parse_anchor

SCHEMA_VERSION = 6
TINY_VAE = "madebyollin/taesd"  # MIT, 10 MB; also the live preview's default decoder (core.models.slots)

# scheduler name -> the sampler's name in AUTOMATIC1111's parameters text and the app
SCHEDULERS: Mapping[str, str] = {"dpmpp": "DPM++ 2M", "ddim": "DDIM", "euler_a": "Euler a"}
# Sampler presets: the product's default, and the reference pipeline's DDIM 42 steps (eta 1,
# which the generator applies to every DDIM run) for side-by-side comparisons.
SAMPLER_PRESETS = {
    "default": {"scheduler": "dpmpp", "steps": 25},
    "reference": {"scheduler": "ddim", "steps": 42},
}
DEVICES = ("auto", "cpu", "cuda", "mps")  # and cuda:N

PROMPT_MAX = 10_000  # characters: far more than the 600 tokens the text encoder reads (core.prompts)
NAME_MAX = 4096  # characters of any other text field: a model id or a folder's path

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _device(value: str) -> None:
    if not _DEVICE.fullmatch(value):
        raise InputError(f"device must be one of {', '.join(DEVICES)} or cuda:N (got {value!r})")


@dataclass(frozen=True)
class Param:
    """Everything about one request field. ``name``, ``type`` and ``default`` come from the
    class attribute it is declared on; the rest from ``param()``.

    ``group`` says where the app shows it: ``ai`` and ``advanced`` (the AI background's form and
    its advanced settings), ``look`` (edges, colour match and shadows), ``framing`` (size and
    placement), ``models`` (the Models page's defaults), ``background`` (its own widget) or
    ``prompt`` (no widget: the Studio's Improve prompt button shows the assistant's text before
    generating instead). ``flag`` replaces the command line's
    ``--field-name``; ``shown_if`` names a field whose value must be above 0 for the widget to
    be drawn (the value is kept either way)."""

    label: str
    help: str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    max_length: int = NAME_MAX  # characters, for text fields
    choices: Mapping[str, str] | None = None  # value -> label
    check: Callable[[Any], Any] | None = None
    env: str | None = None
    slot: str | None = None
    group: str = "look"
    flag: str | None = None
    shown_if: str | None = None
    name: str = ""
    type: type = str
    default: Any = None

    def validate(self, value: Any) -> None:
        """InputError naming the field when ``value`` is not a valid value for it."""
        what = self.name.replace("_", " ")
        if self.type is bool:
            ok = isinstance(value, bool)
        elif self.type is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif self.type is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        else:
            ok = isinstance(value, str)
        if not ok:
            raise InputError(f"{what} must be {_KIND[self.type]} (got {value!r})")
        if self.type is str:
            _check_text(what, value, self.max_length)
        if self.low is not None and not self.low <= value <= self.high:
            raise InputError(f"{what} must be {self.limits} (got {value!r})")
        if self.choices is not None and value not in self.choices:
            raise InputError(f"{what} must be one of {', '.join(self.choices)} (got {value!r})")
        if self.check is not None:
            self.check(value)

    @property
    def limits(self) -> str:
        """``from LOW to HIGH`` in the field's own type, or "" when it has no range."""
        if self.low is None:
            return ""
        show = (lambda v: str(int(v))) if self.type is int else (lambda v: f"{v:g}")
        return f"from {show(self.low)} to {show(self.high)}"

    def parse(self, text: str) -> Any:
        """A value from text (the command line, a settings file), validated."""
        if self.type in (int, float):
            try:
                value = self.type(text)
            except ValueError:
                raise InputError(f"must be {_KIND[self.type]} (got {text!r})") from None
        elif self.type is bool:
            value = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}.get(text.strip().lower(), text)
        else:
            value = text
        self.validate(value)
        return value


_KIND = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}


def _check_text(what: str, value: str, max_length: int) -> None:
    """Text a database can store and a person could have typed: at most ``max_length``
    characters, no NUL (PostgreSQL's text cannot hold it), valid Unicode (a lone surrogate from
    JSON's ``\\udXXX`` escapes or an undecodable argument cannot be stored as UTF-8)."""
    if len(value) > max_length:
        raise InputError(f"{what} must be at most {max_length:,} characters (got {len(value):,})")
    if "\x00" in value:
        raise InputError(f"{what} must not contain a NUL character (\\x00)")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"{what} is not valid text (it holds a lone UTF-16 surrogate)") from None


def param(default: Any, label: str, help: str, **declaration: Any) -> Any:
    """Declare a request field: its default, label, help and the rest of ``Param``."""
    return field(default=default, metadata={"param": Param(label, help, **declaration)})


@dataclass(frozen=True)
class GenerationRequest:
    """Every parameter of one generation, and nothing else."""

    background: str = param("color:#ffffff", "Background", " | ".join(kind.written for kind in KINDS.values()),
                            check=Background.parse, group="background")
    prompt: str = param("", "Describe the new background",
                        "What the AI background shows, up to 10,000 characters (the first 600 tokens are read); "
                        "(word:1.3) or (word) stresses words, [word] softens them (AUTOMATIC1111's syntax).",
                        max_length=PROMPT_MAX, group="ai")
    negative_prompt: str = param("", "Avoid (negative prompt)",
                                 "What the AI background must not show; same syntax as the prompt.",
                                 max_length=PROMPT_MAX, group="ai")
    enhance_prompt: bool = param(False, "Improve the prompt with the prompt assistant",
                                 "Before generating, a small language model rewrites the prompt as a described "
                                 "background (surface, setting, light, camera) without people, text, logos or names; "
                                 "the run record keeps both texts.", group="prompt")
    seed: int = param(0, "Seed", "Random seed: the same seed and settings give the same image.",
                      low=0, high=2**63 - 1, group="ai")
    variants: int = param(1, "Variants", "How many AI backgrounds to generate (seed, seed + 1, ...); other "
                          "backgrounds make one image.", low=1, high=8, group="ai")
    fast: bool = param(False, "Fast",
                       "Fast mode: an acceleration LoRA fused into the model paints the background in a few steps, "
                       "without the second pass for the prompt's guidance (LCM-LoRA: 4 steps instead of 25, about "
                       "12x less work). Its recipe sets the scheduler, steps and guidance; those settings are then "
                       "not used.", group="ai")
    fast_lora: str = param(DEFAULT_LORA, "Fast-mode LoRA",
                           "The acceleration LoRA fast mode fuses, and its recipe: "
                           + "; ".join(f"{r.label} ({r.lora}): {r.describe()}" for r in RECIPES.values()) + ".",
                           choices={r.lora: r.label for r in RECIPES.values()}, env="BACKDROP_FAST_LORA",
                           slot="fast_lora", group="models")
    tiny_vae: bool = param(False, "Tiny autoencoder (faster, softer background detail)",
                           "Encodes the photo and decodes the background with TAESD instead of the inpainting model's "
                           "VAE: on a CPU about 18 s less at 512x512, with slightly softer fine texture in the "
                           "background. The subject is never touched: it is always the photo's own pixels.",
                           group="ai")
    steps: int = param(25, "Steps", "Diffusion steps (fast mode: its recipe's).", low=1, high=150, group="advanced")
    guidance: float = param(7.5, "Guidance (prompt strength)",
                            "How closely the image follows the prompt (fast mode: its recipe's).",
                            low=0, high=30, step=0.5, group="advanced")
    control_scale: float = param(0.8, "Depth-control strength (0 = off)",
                                 "How strongly the photo's depth shapes the background; 0 turns depth off.",
                                 low=0, high=2, step=0.05, group="advanced")
    scheduler: str = param("dpmpp", "Scheduler",
                           "dpmpp (DPM-Solver++), ddim (the reference pipeline's, eta 1), euler_a (fast mode: its "
                           "recipe's).",
                           choices=SCHEDULERS, group="advanced")
    quality_negative: bool = param(True, "Add the standard quality negative prompt",
                                   "Appends the standard quality terms (lowres, blurry, watermark, ...) to the negative prompt.",
                                   group="advanced")
    mask_grow: int = param(6, "Repaint this far into the subject's edge (px)",
                           "Grows the repainted area into the subject so the old background's fringe is repainted.",
                           low=0, high=64, group="advanced")
    spill_removal: bool = param(True, "Remove colour spill at the edges",
                                "Re-estimates the edge pixels' colours without the old background's tint.")
    refine_matting: bool = param(False, "Refine hair and fine edges (slower)",
                                 "For hair, fur and feathers: removes the old background's fringe. Leave off for "
                                 "products: hard, shiny edges can turn streaky.", flag="--refine")
    harmony: float = param(0.0, "Match the subject's colours to the background",
                           "0 keeps the subject's pixels exactly as photographed. Above 0 shifts their mean "
                           "brightness and colour toward the new background around them.",
                           low=0, high=1, step=0.05)
    contact_shadow: float = param(0.0, "Contact shadow", "Opacity of the shadow where the subject meets the ground.",
                                  low=0, high=1, step=0.05)
    cast_shadow: float = param(0.0, "Cast shadow", "Opacity of the shadow the subject casts.",
                               low=0, high=1, step=0.05)
    shadow_angle: float = param(135.0, "Shadow direction (degrees)",
                                "Where the cast shadow falls, counter-clockwise from right (135: back left).",
                                low=0, high=360, step=5.0, shown_if="cast_shadow")
    shadow_softness: float = param(0.5, "Shadow softness", "How much the cast shadow blurs with distance.",
                                   low=0, high=1, step=0.05, shown_if="cast_shadow")
    canvas: str = param("original", "Canvas (output size)",
                        "original (the photo's size) | WxH in px (2000x2000) | an aspect W:H (16:9: the smallest "
                        "canvas of that shape that holds the whole photo) | W:H@LONG (16:9@1920: that shape, LONG px "
                        "on its long side).", check=Canvas.parse, max_length=32, group="framing")
    fill: float = param(0.0, "Subject size (share of the canvas)",
                        "How much of the canvas the subject's box takes along its limiting side (0.85: 85%); 0 keeps "
                        "the whole photo, scaled to fit the canvas.", low=0, high=1, step=0.01, check=check_fill,
                        group="framing")
    anchor: str = param("center", "Subject position",
                        "center | bottom (standing products: the margin is left below for the shadow) | X,Y (where "
                        "the subject's centre goes, as shares of the canvas's width and height: 0.3,0.5).",
                        check=parse_anchor, max_length=32, group="framing")
    margin: float = param(0.05, "Margin (share of the shorter side)",
                          "Room kept between the subject and the canvas's edges, as a share of its shorter side "
                          "(with the bottom anchor: the room under the subject).", low=0, high=0.4, step=0.01,
                          group="framing")
    segmenter: str = param("u2netp", "Cut-out model (rembg name)", "Any rembg model installed here.",
                           env="BACKDROP_SEGMENTER", slot="segmenter", group="models")
    inpaint_model: str = param("stable-diffusion-v1-5/stable-diffusion-inpainting",
                               "Inpainting model (Hugging Face id or local folder)", "An SD1.5 inpainting model.",
                               env="BACKDROP_INPAINT_MODEL", slot="inpaint", group="models")
    controlnet_model: str = param("lllyasviel/control_v11f1p_sd15_depth", "Depth ControlNet (id or folder)",
                                  "An SD1.5 depth ControlNet.", env="BACKDROP_CONTROLNET_MODEL", slot="controlnet",
                                  group="models")
    depth_model: str = param("depth-anything/Depth-Anything-V2-Small-hf", "Depth estimator (id or folder)",
                             "Any transformers depth-estimation model (Intel/dpt-large is the reference's).",
                             env="BACKDROP_DEPTH_MODEL", slot="depth", group="models")
    prompt_model: str = param("Qwen/Qwen2.5-0.5B-Instruct", "Prompt assistant (causal LM id or folder)",
                              "A small instruct language model in transformers' format, for Improve prompt and "
                              "enhance prompt.", env="BACKDROP_PROMPT_MODEL", slot="prompt", group="models")
    tiny_vae_model: str = param(TINY_VAE, "Tiny autoencoder (id or folder)",
                                "TAESD for SD1.5 in diffusers' AutoencoderTiny format.", env="BACKDROP_TINY_VAE_MODEL",
                                slot="tiny_vae", group="models")
    device: str = param("auto", "Device", "auto | cpu | cuda | cuda:N | mps (auto: cuda, then mps, then cpu).",
                        check=_device, env="BACKDROP_DEVICE", group="models")

    def __post_init__(self) -> None:
        for spec in FIELDS:
            spec.validate(getattr(self, spec.name))
        generated = self.background_spec.declared.generated
        if self.variants != 1 and not self.background_spec.declared.variants:
            # only a kind with variants makes them: what is stored says what is made
            object.__setattr__(self, "variants", 1)
        if self.enhance_prompt and not generated:  # only an AI background reads a prompt
            object.__setattr__(self, "enhance_prompt", False)
        if self.enhance_prompt and not self.prompt.strip():
            raise InputError("enhance prompt needs a prompt to improve: a few words, e.g. 'beach at sunset'")
        # the framing as written canonically ("2000X2000 " is 2000x2000), so a remix's form gives it back equal
        object.__setattr__(self, "canvas", Canvas.parse(self.canvas).spec())
        object.__setattr__(self, "anchor", anchor_spec(parse_anchor(self.anchor)))

    @property
    def background_spec(self) -> Background:
        return Background.parse(self.background)

    def replace(self, **changes: Any) -> "GenerationRequest":
        return dataclasses.replace(self, **changes)

    def with_fields(self, values: Mapping[str, Any]) -> "GenerationRequest":
        """This request with ``values`` from outside (a JSON object: the HTTP API's body),
        checked by ``field_values`` and then by each field's declaration."""
        return self.replace(**field_values(values))

    def params(self) -> dict[str, Any]:
        """Field name -> value."""
        return {spec.name: getattr(self, spec.name) for spec in FIELDS}

    def to_dict(self) -> dict[str, Any]:
        """What storage keeps: every field and the schema version."""
        return {"version": SCHEMA_VERSION, **self.params()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "GenerationRequest":
        """Load a stored request of any version: earlier versions go through ``UPGRADES`` one
        version at a time. A stored request names every field of its version: a missing or
        unknown field is an error, never filled with today's defaults."""
        values = upgrade(data)
        version = values.pop("version")
        names = {spec.name for spec in FIELDS}
        missing, unknown = sorted(names - set(values)), sorted(set(values) - names)
        if missing or unknown:
            raise InputError(f"stored request (version {version}) is not valid: "
                             + "; ".join(f"{what}: {', '.join(keys)}" for what, keys in
                                         (("missing", missing), ("unknown", unknown)) if keys))
        return cls(**values)


def _fields() -> tuple[Param, ...]:
    hints = typing.get_type_hints(GenerationRequest)
    return tuple(
        dataclasses.replace(f.metadata["param"], name=f.name, type=hints[f.name], default=f.default)
        for f in dataclasses.fields(GenerationRequest)
    )


FIELDS: tuple[Param, ...] = _fields()
FIELD = {spec.name: spec for spec in FIELDS}


def field_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """Field values given as JSON, ready for ``replace``: a name that is no field is an
    InputError (JSON clients misspell, and a silently ignored field would run with its default),
    and a whole number given for a number field becomes a float, as the command line's parse
    makes it, and a number without a fraction given for a whole-number field becomes an int (JSON
    Schema's integers include 25.0). Each value is then checked by its field's declaration when
    the request is built."""
    if not isinstance(values, Mapping):
        raise InputError(f"the request must be an object of field names and values (got {type(values).__name__})")
    unknown = sorted(set(values) - set(FIELD))
    if unknown:
        raise InputError(f"unknown field(s): {', '.join(unknown)} (the fields are: {', '.join(FIELD)})")
    return {name: _json_number(FIELD[name].type, value) for name, value in values.items()}


def _json_number(kind: type, value: Any) -> Any:
    if kind is float and type(value) is int:
        return float(value)
    if kind is int and type(value) is float and value.is_integer():
        return int(value)
    return value


# ---- upgrades: stored requests of earlier versions ----------------------------------------

# Keys version 1 kept in the request that are not parameters: the pipeline's outputs (sizes,
# model revisions) and storage's keys. They live beside the request from version 2 on: the
# sizes in the run record, revisions in the generation's models, hashes in its own columns
# (storage's migration 0003 moved them there for stored generations).
V1_NOT_PARAMETERS = ("input_width", "input_height", "work_width", "work_height", "model_revisions",
                     "input_sha256", "mask_sha256")


def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Version 1 (no ``version`` key): drop the keys that are not parameters; a picture
    background ``image:PATH`` (a file outside the image store) becomes ``image``, its picture
    stored with the generation; a shadow angle, any number of degrees in version 1, becomes the
    same direction in 0-360."""
    values = {k: v for k, v in data.items() if k not in V1_NOT_PARAMETERS}
    if str(values.get("background", "")).startswith("image:"):
        values["background"] = "image"
    angle = values.get("shadow_angle")
    if isinstance(angle, (int, float)) and not isinstance(angle, bool) and math.isfinite(angle):
        values["shadow_angle"] = float(angle) % 360.0
    values["version"] = 2
    return values


def _v2_to_v3(data: dict[str, Any]) -> dict[str, Any]:
    """Version 2, before the prompt assistant: it did not run (``enhance_prompt`` false), and its
    model is the one version 3 started with (never used by these generations)."""
    return {**data, "enhance_prompt": False, "prompt_model": "Qwen/Qwen2.5-0.5B-Instruct", "version": 3}


def _v3_to_v4(data: dict[str, Any]) -> dict[str, Any]:
    """Version 3 had no fast mode: a version-3 request ran the standard sampler (``fast`` off),
    and its fast-mode LoRA is the default one (unused while fast mode is off). Version 3 knew
    neither field: one given is an error, not a value to keep."""
    known = sorted({"fast", "fast_lora"} & set(data))
    if known:
        raise InputError(f"stored request (version 3) is not valid: unknown: {', '.join(known)}")
    return {**data, "fast": False, "fast_lora": DEFAULT_LORA, "version": 4}


def _v4_to_v5(data: dict[str, Any]) -> dict[str, Any]:
    """Version 4 had no framing: every result had the photo's size, which is what these values
    make (the photo's own canvas, fill 0: nothing scaled or moved)."""
    return {**data, "canvas": "original", "fill": 0.0, "anchor": "center", "margin": 0.05, "version": 5}


def _v5_to_v6(data: dict[str, Any]) -> dict[str, Any]:
    """Version 5 had no tiny autoencoder: every run encoded and decoded with the inpainting
    model's own VAE."""
    return {**data, "tiny_vae": False, "tiny_vae_model": TINY_VAE, "version": 6}


UPGRADES: dict[int, Callable[[dict[str, Any]], dict[str, Any]]] = {
    1: _v1_to_v2, 2: _v2_to_v3, 3: _v3_to_v4, 4: _v4_to_v5, 5: _v5_to_v6}


def upgrade(data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` brought to SCHEMA_VERSION (a copy; ``version`` included)."""
    values = dict(data)
    version = values.setdefault("version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise InputError(f"stored request has no valid version (got {version!r})")
    if version > SCHEMA_VERSION:
        raise InputError(f"stored request is version {version}, written by a newer Backdrop; this one reads "
                         f"versions up to {SCHEMA_VERSION}")
    while values["version"] < SCHEMA_VERSION:
        values = UPGRADES[values["version"]](values)
    return values
