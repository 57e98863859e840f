"""The HTTP API's documented shapes. The generation request's schema is generated from the one
field table (core.request.FIELDS): each field's type, default, range or choices, label and help
become its JSON Schema, so the API documents exactly what the app and the command line offer.
The API validates requests with core.request itself (the same checks and messages); the model
here documents them in the OpenAPI schema at ``/docs``. A generation is answered in one shape,
``Generation.from_view``: the fields of storage.history.GenerationView it names, with its
progress and where to download its images."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from core.look.framing import SIZE_PRESETS
from core.request import FIELDS, SCHEMA_VERSION, Param
from storage.history import GenerationView
from storage.lifecycle import STATUSES

PREFIX = "/v1"  # every route's


def _field(spec: Param) -> tuple[Any, Any]:
    kind = Literal[tuple(spec.choices)] if spec.choices else spec.type
    limits = {"ge": spec.low, "le": spec.high} if spec.low is not None else {}
    if spec.type is str and not spec.choices:
        limits["max_length"] = spec.max_length
    extra = {"x-environment-variable": spec.env} if spec.env else None
    return kind, Field(spec.default, title=spec.label, description=spec.help, json_schema_extra=extra, **limits)


RequestFields = create_model(
    "GenerationRequest",
    __config__=ConfigDict(extra="forbid"),
    __doc__=(f"The parameters of a generation (request schema version {SCHEMA_VERSION}). Give only the fields "
             "that differ from the defaults; the model and device fields default to this server's saved settings."),
    version=(int, Field(SCHEMA_VERSION, ge=1, le=SCHEMA_VERSION,
                        description="the request's schema version: an older version's request is upgraded, as "
                                    "stored requests are")),
    size_preset=(Literal[tuple(SIZE_PRESETS)] | None,
                 Field(None, title="Size preset", description="a named framing that fills canvas, fill, anchor and "
                       "margin (and the background, for one that has its own) where the request does not give them: "
                       + "; ".join(f"{p.name}: {p.hint}" for p in SIZE_PRESETS.values()))),
    **{spec.name: _field(spec) for spec in FIELDS},
)


class Error(BaseModel):
    detail: str = Field(description="what is wrong, and what to do about it")


class Progress(BaseModel):
    stage: str
    step: int
    total: int
    fraction: float = Field(ge=0, le=1)
    preview: str | None = Field(None, description="while an AI background runs: where to download the estimate of "
                                                  "the result after its latest step (a small JPEG, the live preview); "
                                                  "null otherwise")


class Images(BaseModel):
    """Where to download a finished generation's images (paths on this server)."""

    result: list[str] = Field(description="one per variant")
    cutout: str | None = None
    mask: str | None = None


class Generation(BaseModel):
    id: int
    status: Literal[STATUSES]
    progress: Progress
    error: str | None
    cancel_requested: bool
    request: dict[str, Any] = Field(description="the request as stored (see the GenerationRequest schema)")
    record: dict[str, Any] = Field(description="what ran: sizes, bucket, the texts encoded, ...")
    background_kind: str
    prompt: str
    parent_id: int | None
    children: list[int]
    favourite: bool
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    device: str | None
    models: dict[str, Any]
    timings: dict[str, float]
    warnings: list[Any]
    images: Images

    @classmethod
    def from_view(cls, view: GenerationView, preview: bool = False) -> Generation:
        """The answer for ``view``: every field but these two is the view's own, by name;
        ``preview``: it has a live preview now (storage.previews)."""
        base = f"{PREFIX}/generations/{view.id}/images"
        progress = Progress(stage=view.progress_stage, step=view.progress_step, total=view.progress_total,
                            fraction=view.progress_fraction,
                            preview=f"{PREFIX}/generations/{view.id}/preview" if preview else None)
        images = Images(result=[f"{base}/result?variant={o.index + 1}" for o in view.results],
                        cutout=f"{base}/cutout" if view.output("cutout") else None,
                        mask=f"{base}/mask" if view.output("mask") else None)
        return cls(progress=progress, images=images,
                   **{name: getattr(view, name) for name in cls.model_fields if name not in ("progress", "images")})


class GenerationList(BaseModel):
    total: int = Field(description="how many match the filters")
    items: list[Generation]


class Cancelled(BaseModel):
    id: int
    status: str = Field(description="cancelled, or the status it had already reached")


class Health(BaseModel):
    status: Literal["ok"]
    executor: Literal["in-process", "ray", "none"] = Field(description="what runs queued generations")
    workers: int
    pending: int = Field(description="generations queued or running")
