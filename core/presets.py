"""Prompt presets for AI backgrounds and the standard quality negative prompt.

A preset only fills the prompt and negative prompt a user then edits; the request stores the
final text, so a re-run never depends on a preset's wording changing later.
"""

from __future__ import annotations

from dataclasses import dataclass

from core.errors import InputError

# Appended to every negative prompt unless request.quality_negative is False: the usual
# failure modes of SD1.5 inpainting around a pasted subject.
QUALITY_NEGATIVE = (
    "lowres, blurry, jpeg artifacts, noise, watermark, text, logo, signature, frame, border, "
    "deformed, distorted, disfigured, duplicate, extra objects, floating objects, "
    "bad perspective, oversaturated, cartoon, illustration, painting"
)


@dataclass(frozen=True)
class Preset:
    name: str
    label: str
    prompt: str
    negative: str


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "studio", "Studio backdrop",
            "professional product photo on a seamless studio backdrop, soft even lighting, "
            "subtle gradient, clean, high detail",
            "clutter, props, harsh shadows, busy background",
        ),
        Preset(
            "marble", "Marble table",
            "on a white marble table top, elegant interior, soft window light, shallow depth "
            "of field, high-end product photography",
            "dirty surface, stains, cluttered table, people",
        ),
        Preset(
            "beach_sunset", "Beach at sunset",
            "on a sandy beach at sunset, warm golden light, calm sea, soft clouds, "
            "photograph, 35mm",
            "crowds, people, boats, overexposed sky, night",
        ),
        Preset(
            "city_night", "City street at night",
            "on a city street at night, neon signs, wet asphalt reflections, bokeh lights, "
            "cinematic photograph",
            "daylight, sun, empty black background, cars in focus",
        ),
        Preset(
            "forest", "Forest",
            "in a green forest, moss and ferns, dappled sunlight through the trees, "
            "natural photograph, depth of field",
            "buildings, roads, people, winter, snow",
        ),
        Preset(
            "kitchen", "Kitchen counter",
            "on a kitchen counter, bright modern kitchen, wooden cutting board, soft morning "
            "light, lifestyle photograph",
            "dirty dishes, mess, people, dark room",
        ),
        Preset(
            "wood_table", "Rustic wooden table",
            "on a rustic wooden table, warm ambient light, cosy cafe interior, "
            "shallow depth of field, photograph",
            "plastic, clutter, people, cold light",
        ),
        Preset(
            "mountains", "Mountain landscape",
            "in front of a mountain landscape, alpine meadow, clear blue sky, "
            "natural daylight, landscape photograph",
            "city, buildings, people, fog, night",
        ),
        Preset(
            "living_room", "Living room",
            "in a cosy living room, sofa and plants in the background, warm lamp light, "
            "interior design photograph",
            "mess, people, dark, cluttered",
        ),
        Preset(
            "concrete", "Concrete podium",
            "on a minimalist concrete podium, pastel wall, soft shadows, "
            "modern product photography",
            "clutter, text, busy background, harsh light",
        ),
    )
}


def _key(text: str) -> str:
    return " ".join(text.lower().replace("_", " ").replace("-", " ").split())


def get_preset(name: str) -> Preset:
    """A preset by its name or its label, as the README and the app write it ("marble table",
    "Beach at sunset", "beach_sunset", "marble"); InputError lists the labels."""
    for preset in PRESETS.values():
        if _key(name) in (_key(preset.name), _key(preset.label)):
            return preset
    raise InputError(f"unknown preset {name!r}: use one of "
                     + ", ".join(preset.label.lower() for preset in PRESETS.values()))


def full_negative_prompt(request) -> str:
    """The negative prompt the generator uses: the user's text plus the quality negative."""
    user = request.negative_prompt.strip().rstrip(",").strip()
    if not request.quality_negative:
        return user
    return f"{user}, {QUALITY_NEGATIVE}" if user else QUALITY_NEGATIVE
