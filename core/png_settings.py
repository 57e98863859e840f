"""Settings read back from a PNG, as AUTOMATIC1111's "PNG Info" and InvokeAI's "use all" do.

Two kinds of PNG carry them in their text chunks:

- a Backdrop result: its request, whole, as JSON in the ``backdrop_request`` chunk (written
  with every stored result, storage.service), read back through the request's own loader and
  upgrades (``GenerationRequest.from_dict``), so it comes back exactly as it was stored;
- AUTOMATIC1111's ``parameters`` text, which Backdrop's results carry too and InvokeAI,
  Forge, SD.Next and many others write: the prompt (several lines allowed), a ``Negative
  prompt:`` line (and its continuation lines), then one line of ``Key: value`` pairs
  (``Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 123, Size: 512x512, ...``;
  a value holding a comma is quoted as JSON). It is split as AUTOMATIC1111's own
  ``parse_generation_parameters`` splits it; the prompt, negative prompt, seed, steps, guidance
  and sampler are taken where they are valid for Backdrop, and the rest is named, never lost
  silently.

AUTOMATIC1111 saves JPEG and WebP files with the same text in their EXIF UserComment; it is read
there too. Only the chunks stored before the pixels are read (where Pillow, AUTOMATIC1111 and
Backdrop write them), so a large PNG is never decoded for its text.
"""

from __future__ import annotations

import io
import json
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, UnidentifiedImageError

from core.errors import InputError
from core.request import FIELD, FIELDS, SCHEDULERS, GenerationRequest

REQUEST_CHUNK = "backdrop_request"
PARAMETERS_CHUNK = "parameters"
_EXIF_IFD, _USER_COMMENT = 0x8769, 0x9286  # EXIF's sub-directory and its UserComment tag
# what a Backdrop result's request sets: its background and the fields that background reads
# (another kind's prompt, seed and steps are only its form's defaults); the models and the device
# stay this machine's
READ_GROUPS = {True: ("background", "ai", "advanced", "look"), False: ("background", "look")}

# AUTOMATIC1111's own pattern for one ``Key: value`` pair of the last line (modules/infotext_utils.py)
_PAIR = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_SAMPLERS = {label.lower(): name for name, label in SCHEDULERS.items()} | {name: name for name in SCHEDULERS}
_SCHEDULE_SUFFIX = re.compile(r"^(.*?)\s+(Karras|Exponential|Uniform|SGM Uniform|Polyexponential)$", re.IGNORECASE)
# keys the parameters text's numbers are read from: key -> request field
_NUMBERS = {"Steps": "steps", "CFG scale": "guidance", "Seed": "seed"}
# keys Backdrop writes or reads otherwise: not "not used"
_HANDLED = {*_NUMBERS, "Sampler", "Schedule type", "Background", "Backdrop generation"}


@dataclass(frozen=True)
class PngSettings:
    """What a PNG said: ``values`` (request field -> a value valid for it) fill the form;
    ``request`` is a Backdrop result's whole request; ``problems`` are sentences about what was
    there but could not be used (the form keeps its own value for those); ``notes`` about what
    was used but is not quite what the file's maker ran (a sampler's schedule); ``unused`` names
    the parameters text's keys Backdrop has no setting for (Size, Model hash, Denoising strength...)."""

    source: str  # "a Backdrop result" / "AUTOMATIC1111's parameters text"
    values: dict[str, Any]
    request: GenerationRequest | None = None
    generation: int | None = None  # the Backdrop generation the PNG came from, when it says so
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)


def request_text(request: GenerationRequest) -> str:
    """The ``backdrop_request`` chunk's text for ``request``: its stored form, as JSON."""
    return json.dumps(request.to_dict(), ensure_ascii=False, separators=(",", ":"))


def read_png_settings(data: bytes, what: str = "the file") -> PngSettings:
    """The settings in a PNG's text chunks; InputError saying what is wrong when there are none
    (not an image, not a PNG, no settings in it)."""
    chunks = _text_chunks(data, what)
    problems: list[str] = []
    if REQUEST_CHUNK in chunks:
        try:
            request = GenerationRequest.from_dict(json.loads(chunks[REQUEST_CHUNK]))
        except (ValueError, TypeError, InputError) as error:  # JSON's errors are ValueErrors
            problems.append(f"its Backdrop settings could not be read ({error})")
        else:
            groups = READ_GROUPS[request.background_spec.declared.generated]
            values = {spec.name: getattr(request, spec.name) for spec in FIELDS if spec.group in groups}
            generation = parse_parameters(chunks.get(PARAMETERS_CHUNK, ""))[2].get("Backdrop generation")
            return PngSettings("a Backdrop result", values, request, _whole(generation))
    text = chunks.get(PARAMETERS_CHUNK)
    if text is None or not text.strip():
        reason = "; ".join(problems) or ("it has no Backdrop settings and no AUTOMATIC1111 'parameters' text "
                                         "(saved by another program, or its text was taken out)")
        raise InputError(f"{what} carries no settings to read: {reason}")
    settings = parameters_settings(text)
    settings.problems[:0] = problems
    return settings


def parameters_settings(text: str) -> PngSettings:
    """The settings in an AUTOMATIC1111 ``parameters`` text (see the module docstring)."""
    prompt, negative, pairs = parse_parameters(text)
    values: dict[str, Any] = {}
    problems: list[str] = []

    def take(name: str, value: Any, shown: str) -> None:
        try:
            FIELD[name].validate(value)
        except InputError as error:
            problems.append(f"{shown}: {error}; left as it was")
        else:
            values[name] = value

    if prompt is not None:
        take("prompt", prompt, "the prompt")
        take("negative_prompt", negative, "the negative prompt")
    if "Background" in pairs:
        take("background", pairs["Background"], f"Background {pairs['Background']!r}")
    elif prompt is not None:
        values["background"] = "ai"  # a prompt is for an AI background
    for key, name in _NUMBERS.items():
        if key in pairs:
            kind = FIELD[name].type
            try:
                number = kind(pairs[key])
            except ValueError:
                problems.append(f"{key} {pairs[key]!r} is not {'a whole number' if kind is int else 'a number'}; "
                                "left as it was")
            else:
                take(name, number, f"{key} {pairs[key]}")
    notes: list[str] = []
    if "Sampler" in pairs:
        scheduler, sentence = sampler(pairs["Sampler"], pairs.get("Schedule type", ""))
        if scheduler:
            values["scheduler"] = scheduler
        if sentence:
            (notes if scheduler else problems).append(sentence)
    unused = [key for key in pairs if key not in _HANDLED]
    return PngSettings("AUTOMATIC1111's parameters text", values, None, _whole(pairs.get("Backdrop generation")),
                       problems, notes, unused)


def sampler(name: str, schedule: str = "") -> tuple[str | None, str | None]:
    """(Backdrop's scheduler for an AUTOMATIC1111 sampler name, a sentence about what differs or
    was not understood). A schedule (``DPM++ 2M Karras``, or ``Schedule type: Karras``) is
    noted: Backdrop's samplers use the model's own noise schedule."""
    base = name.strip()
    suffix = _SCHEDULE_SUFFIX.match(base)
    if suffix and suffix.group(1).lower() in _SAMPLERS:
        base, schedule = suffix.group(1), suffix.group(2)
    scheduler = _SAMPLERS.get(base.lower())
    if scheduler is None:
        return None, (f"Sampler {name!r} is not one Backdrop has (it has {', '.join(SCHEDULERS.values())}); "
                      "the scheduler was left as it was")
    if schedule and schedule.lower() not in ("automatic", "default"):
        return scheduler, (f"Sampler {name!r}" + (f" with the {schedule} schedule" if schedule not in name else "")
                           + f" became {SCHEDULERS[scheduler]}: Backdrop's samplers use the model's own noise "
                           "schedule, so the same seed gives a different image")
    return scheduler, None


def parse_parameters(text: str) -> tuple[str | None, str, dict[str, str]]:
    """(prompt, negative prompt, {key: value}) of a ``parameters`` text, split as AUTOMATIC1111
    splits it: the last line is the pairs when it holds at least three; the lines before it are
    the prompt up to a line starting ``Negative prompt:``, then the negative prompt. The prompt
    is None when the text has only the pairs line."""
    *lines, last = text.strip().split("\n")
    if len(_PAIR.findall(last)) < 3:
        lines.append(last)
        last = ""
    prompt: list[str] = []
    negative: list[str] = []
    for line in (line.strip() for line in lines):
        if line.startswith("Negative prompt:") and not negative:
            negative.append(line[len("Negative prompt:"):].strip())
        elif negative:
            negative.append(line)
        else:
            prompt.append(line)
    pairs = {}
    for key, value in _PAIR.findall(last):
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            try:
                value = json.loads(value)
            except ValueError:
                pass
        pairs[key.strip()] = str(value)
    return ("\n".join(prompt) if lines else None), "\n".join(negative), pairs


def _text_chunks(data: bytes, what: str) -> dict[str, str]:
    """A PNG's text chunks that come before its pixels, or a JPEG's or WebP's EXIF user comment
    (where AUTOMATIC1111 writes its parameters text in those formats) as ``parameters``,
    without decoding the pixels."""
    if not data:
        raise InputError(f"{what} is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the pixels are never decoded
            with Image.open(io.BytesIO(data)) as image:
                kind, info = image.format, dict(image.info)
                comment = image.getexif().get_ifd(_EXIF_IFD).get(_USER_COMMENT) if kind in ("JPEG", "WEBP") else None
    except UnidentifiedImageError:
        raise InputError(f"{what} is not an image (settings are read from a PNG's text)") from None
    except Image.DecompressionBombError:
        raise InputError(f"{what} says it has more pixels than Backdrop opens (this protects against "
                         "decompression bombs)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InputError(f"{what} is damaged and cannot be read ({exc})") from None
    if kind in ("JPEG", "WEBP"):
        text = _user_comment(comment)
        return {PARAMETERS_CHUNK: text} if text else {}
    if kind != "PNG":
        raise InputError(f"{what} is a {kind or 'non-PNG'} image: settings are read from a PNG's text (a Backdrop "
                         "result, or a PNG saved by AUTOMATIC1111 or a tool that writes its 'parameters' text), or "
                         "from the EXIF comment of AUTOMATIC1111's JPEG and WebP files")
    return {key: value for key, value in info.items() if isinstance(key, str) and isinstance(value, str)}


def _user_comment(value: Any) -> str | None:
    """An EXIF UserComment's text: 8 bytes naming its character code, then the text (UNICODE is
    UTF-16 in the writer's byte order: piexif, which AUTOMATIC1111 uses, writes the machine's)."""
    if isinstance(value, str):
        return value.strip("\x00") or None
    if not isinstance(value, bytes) or len(value) <= 8:
        return None
    code, body = value[:8].rstrip(b"\x00 ").upper(), value[8:]
    if code == b"UNICODE":
        big_endian = body[:2] == b"\xfe\xff" or (len(body) > 1 and body[0] == 0 and body[1] != 0)
        text = body.decode("utf-16-be" if big_endian else "utf-16-le", errors="replace").lstrip("\ufeff")
    else:  # ASCII, or no code at all
        text = body.decode("utf-8", errors="replace")
    return text.strip("\x00") or None


def _whole(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() else None
