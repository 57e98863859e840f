"""The one typed description of a generation.

The UI builds it, the pipeline consumes it, storage saves it (``to_dict``) and a re-run loads
it back (``from_dict``). Everything that changes the output image belongs here, so a stored
request plus its stored input and mask reproduces the result.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any

from core.errors import InputError

DEFAULT_SEGMENTER = "u2netp"
DEFAULT_INPAINT_MODEL = "stable-diffusion-v1-5/stable-diffusion-inpainting"
DEFAULT_CONTROLNET_MODEL = "lllyasviel/control_v11f1p_sd15_depth"
DEFAULT_DEPTH_MODEL = "depth-anything/Depth-Anything-V2-Small-hf"

SCHEDULERS = ("dpmpp", "ddim", "euler_a")
# Sampler presets: the product's default, and the reference pipeline's DDIM 42 steps (eta 1,
# which core.generate applies to every DDIM run) for side-by-side comparisons.
SAMPLER_PRESETS = {
    "default": {"scheduler": "dpmpp", "steps": 25},
    "reference": {"scheduler": "ddim", "steps": 42},
}
BACKGROUND_KINDS = ("ai", "color", "gradient", "blur", "image", "transparent")
MAX_VARIANTS = 8
MAX_STEPS = 150

_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")


@dataclass(frozen=True)
class Background:
    """A parsed ``--background`` spec: ``ai``, ``color:#RRGGBB``, ``gradient:#RRGGBB,#RRGGBB``,
    ``blur``, ``image:PATH`` or ``transparent``."""

    kind: str
    colors: tuple[tuple[int, int, int], ...] = ()
    path: str = ""

    @classmethod
    def parse(cls, spec: str) -> "Background":
        kind, _, arg = spec.strip().partition(":")
        kind = kind.lower()
        if kind not in BACKGROUND_KINDS:
            raise InputError(
                f"unknown background {spec!r}: use one of ai, color:#RRGGBB, "
                "gradient:#RRGGBB,#RRGGBB, blur, image:PATH, transparent"
            )
        if kind == "color":
            return cls(kind, (_hex(arg, spec),))
        if kind == "gradient":
            parts = arg.split(",")
            if len(parts) != 2:
                raise InputError(f"gradient needs two colours, as gradient:#RRGGBB,#RRGGBB (got {spec!r})")
            return cls(kind, tuple(_hex(p, spec) for p in parts))
        if kind == "image":
            if not arg:
                raise InputError("image background needs a path, as image:PATH")
            return cls(kind, path=arg)
        if arg:
            raise InputError(f"background {kind!r} takes no argument (got {spec!r})")
        return cls(kind)

    def spec(self) -> str:
        if self.kind in ("color", "gradient"):
            return f"{self.kind}:" + ",".join("#%02x%02x%02x" % c for c in self.colors)
        if self.kind == "image":
            return f"image:{self.path}"
        return self.kind


def _hex(text: str, spec: str) -> tuple[int, int, int]:
    text = text.strip()
    if not _HEX.match(text):
        raise InputError(f"colour must be written #RRGGBB (got {text!r} in {spec!r})")
    return tuple(int(text[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


@dataclass(frozen=True)
class GenerationRequest:
    """Every parameter of one generation. Image bytes are not here: storage keeps the input and
    the mask by content hash (``input_sha256``, ``mask_sha256``)."""

    background: str = "color:#ffffff"
    prompt: str = ""
    negative_prompt: str = ""
    seed: int = 0
    steps: int = 25
    guidance: float = 7.5
    control_scale: float = 0.8
    scheduler: str = "dpmpp"
    variants: int = 1
    # models: a Hugging Face id or a local folder each; revisions filled in when resolved
    segmenter: str = DEFAULT_SEGMENTER
    inpaint_model: str = DEFAULT_INPAINT_MODEL
    controlnet_model: str = DEFAULT_CONTROLNET_MODEL
    depth_model: str = DEFAULT_DEPTH_MODEL
    model_revisions: dict[str, str] = field(default_factory=dict)
    device: str = "auto"
    # mask handling and look of the composite
    mask_grow: int = 6  # px at working resolution the inpainting mask grows into the subject
    spill_removal: bool = True
    refine_matting: bool = False
    harmony: float = 0.0  # 0 = off (subject pixels untouched), 1 = full colour match
    contact_shadow: float = 0.0  # opacity 0..1
    cast_shadow: float = 0.0  # opacity 0..1
    shadow_angle: float = 135.0  # degrees, direction the cast shadow falls
    shadow_softness: float = 0.5  # 0..1
    quality_negative: bool = True  # append the standard quality negative prompt
    # sizes, recorded by the pipeline
    input_width: int = 0
    input_height: int = 0
    work_width: int = 0
    work_height: int = 0
    # stored inputs (content hashes), set by storage
    input_sha256: str = ""
    mask_sha256: str = ""

    def __post_init__(self) -> None:
        self.validate()

    @property
    def background_spec(self) -> Background:
        return Background.parse(self.background)

    def validate(self) -> None:
        """Raise InputError naming the first invalid field."""
        self.background_spec  # noqa: B018 - parses and raises
        _check(self.scheduler in SCHEDULERS, f"scheduler must be one of {', '.join(SCHEDULERS)} (got {self.scheduler!r})")
        _check(isinstance(self.seed, int) and 0 <= self.seed < 2**63, f"seed must be a whole number from 0 to 2^63-1 (got {self.seed!r})")
        _check(isinstance(self.steps, int) and 1 <= self.steps <= MAX_STEPS, f"steps must be from 1 to {MAX_STEPS} (got {self.steps!r})")
        _check(_finite(self.guidance) and 0 <= self.guidance <= 30, f"guidance must be from 0 to 30 (got {self.guidance!r})")
        _check(_finite(self.control_scale) and 0 <= self.control_scale <= 2, f"control scale must be from 0 to 2 (got {self.control_scale!r})")
        _check(isinstance(self.variants, int) and 1 <= self.variants <= MAX_VARIANTS, f"variants must be from 1 to {MAX_VARIANTS} (got {self.variants!r})")
        _check(isinstance(self.mask_grow, int) and 0 <= self.mask_grow <= 64, f"mask grow must be from 0 to 64 px (got {self.mask_grow!r})")
        for name in ("harmony", "contact_shadow", "cast_shadow", "shadow_softness"):
            value = getattr(self, name)
            _check(_finite(value) and 0 <= value <= 1, f"{name.replace('_', ' ')} must be from 0 to 1 (got {value!r})")
        _check(_finite(self.shadow_angle), f"shadow angle must be a number (got {self.shadow_angle!r})")
        for name in ("segmenter", "inpaint_model", "controlnet_model", "depth_model"):
            _check(isinstance(getattr(self, name), str), f"{name} must be text")

    def replace(self, **changes: Any) -> "GenerationRequest":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "GenerationRequest":
        """Build from a stored dict; unknown keys (from a newer version) are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value and abs(value) != float("inf")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise InputError(message)
