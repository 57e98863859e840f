"""What the pages share: the sidebar, the one job worker per process, the background form that
builds a GenerationRequest, the brush-mask arithmetic and PNG encoding for downloads.

Not a page itself (streamlit_app.py lists the pages explicitly). The mask functions are plain
numpy/PIL so tests can check them without a browser.
"""

from __future__ import annotations

import io
import random
import sys
import zipfile
from pathlib import Path

import numpy as np
import streamlit as st
from PIL import Image

from core import settings as user_settings
from core.request import BACKGROUND_KINDS, MAX_STEPS, MAX_VARIANTS, SCHEDULERS, GenerationRequest

CANVAS_MAX_WIDTH = 540  # fits the wider of two columns on a 1366 px wide screen
CANVAS_MAX_HEIGHT = 600
MAX_UI_SEED = 2**53 - 1  # browsers hold numbers as doubles: larger seeds would be rounded
STROKE_ALPHA = 0.55  # strokes are see-through so the photo stays visible under them
ADD_RGB = (0, 230, 64)
ERASE_RGB = (235, 30, 30)
TINT_RGB = (30, 40, 120)  # what the background (mask 0) is tinted with in previews
KIND_LABELS = {
    "ai": "AI scene",
    "color": "Colour",
    "gradient": "Gradient",
    "blur": "Blurred original",
    "image": "My image",
    "transparent": "Transparent",
}


# ---------------------------------------------------------------- mask and brush arithmetic

def display_size(width: int, height: int, max_w: int = CANVAS_MAX_WIDTH, max_h: int = CANVAS_MAX_HEIGHT) -> tuple[int, int]:
    """Size the photo is shown (and painted on) at: aspect kept, within max_w x max_h."""
    scale = min(max_w / width, max_h / height, 1.0)
    return max(1, round(width * scale)), max(1, round(height * scale))


def mask_overlay(photo: Image.Image, mask: Image.Image, size: tuple[int, int] | None = None) -> Image.Image:
    """The photo with everything the mask calls background darkened and tinted."""
    size = size or photo.size
    rgb = np.asarray(photo.convert("RGB").resize(size, Image.Resampling.BILINEAR), dtype=np.float32)
    alpha = np.asarray(mask.convert("L").resize(size, Image.Resampling.BILINEAR), dtype=np.float32)[..., None] / 255
    tinted = rgb * 0.35 + np.array(TINT_RGB, dtype=np.float32) * 0.65
    return Image.fromarray((rgb * alpha + tinted * (1 - alpha)).round().astype(np.uint8))


def stroke_color(mode: str) -> str:
    r, g, b = ADD_RGB if mode == "add" else ERASE_RGB
    return f"rgba({r}, {g}, {b}, {STROKE_ALPHA})"


def stroke_masks(strokes: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Split the canvas's RGBA drawing into (add, erase) boolean masks at ``size``.

    A painted pixel is one with visible alpha; green-dominant is add, red-dominant erase. Where
    strokes overlap, the canvas already composited the later stroke on top, so the colour that
    dominates is the one painted last.
    """
    rgba = np.asarray(strokes)
    if rgba.ndim != 3 or rgba.shape[2] != 4:
        raise ValueError(f"strokes must be an RGBA array, got shape {rgba.shape}")
    painted = rgba[..., 3] >= 48
    green = rgba[..., 1].astype(np.int16) > rgba[..., 0].astype(np.int16)
    add = Image.fromarray(((painted & green) * 255).astype(np.uint8)).resize(size, Image.Resampling.BILINEAR)
    erase = Image.fromarray(((painted & ~green) * 255).astype(np.uint8)).resize(size, Image.Resampling.BILINEAR)
    return np.asarray(add) >= 128, np.asarray(erase) >= 128


def corrected_mask(base: Image.Image, strokes: np.ndarray | None) -> Image.Image:
    """The base mask with add strokes set to subject (255) and erase strokes to background (0)."""
    if strokes is None:
        return base
    add, erase = stroke_masks(strokes, base.size)
    values = np.asarray(base.convert("L")).copy()
    values[add] = 255
    values[erase] = 0
    return Image.fromarray(values)


# ---------------------------------------------------------------- settings, arguments

def settings() -> dict[str, str]:
    return user_settings.load_settings()


def batch_dir_argument(argv: list[str] | None = None) -> str | None:
    """``--batch-dir DIR`` given after ``--`` on the ``streamlit run`` command line."""
    argv = sys.argv[1:] if argv is None else argv
    for i, arg in enumerate(argv):
        if arg == "--batch-dir" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--batch-dir="):
            return arg.split("=", 1)[1]
    return None


def new_seed() -> int:
    return random.randrange(0, 2**31)


# ---------------------------------------------------------------- the background form

FORM_FIELDS = (
    "prompt", "negative_prompt", "seed", "steps", "guidance", "control_scale", "scheduler", "variants",
    "mask_grow", "spill_removal", "refine_matting", "harmony", "contact_shadow", "cast_shadow",
    "shadow_angle", "quality_negative",
)


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#%02x%02x%02x" % rgb


def prefill(prefix: str, request: GenerationRequest) -> None:
    """Put a stored request's values into the form's widgets (before they are drawn)."""
    state = st.session_state
    spec = request.background_spec
    state[f"{prefix}kind"] = spec.kind
    if spec.kind == "color":
        state[f"{prefix}color"] = _hex(spec.colors[0])
    elif spec.kind == "gradient":
        state[f"{prefix}grad_top"], state[f"{prefix}grad_bottom"] = (_hex(c) for c in spec.colors)
    elif spec.kind == "image":
        state[f"{prefix}bg_path"] = spec.path
    for name in FORM_FIELDS:
        state[f"{prefix}{name}"] = getattr(request, name)
    state[f"{prefix}seed"] = min(request.seed, MAX_UI_SEED)
    state[f"{prefix}harmony_chosen"] = True  # the stored value is kept when the kind changes


def ai_readiness(request: GenerationRequest) -> tuple[list[dict], list[dict]]:
    """(blocking, degraded): model rows without weights here. The inpainting model (and the
    depth ControlNet while depth control is on) block an AI background; a missing depth
    estimator only means it runs without depth control (core.pipeline says so in a warning)."""
    from core.models import model_status

    missing = [row for row in model_status(request) if row["slot"] in ("inpaint", "controlnet", "depth") and not row["present"]]
    needed = {"inpaint"} | ({"controlnet"} if request.control_scale > 0 else set())
    return [r for r in missing if r["slot"] in needed], [r for r in missing if r["slot"] not in needed]


def explain_missing(rows: list[dict], blocking: bool = True) -> str:
    head = ("AI backgrounds cannot run: these model weights are not on this machine." if blocking
            else "AI backgrounds will run without depth control: these weights are not on this machine.")
    lines = [head]
    for row in rows:
        lines.append(f"- {row['slot']}: `{row['id']}` - fix: `{row['fetch']}`")
    lines.append(
        "Run the command in a terminal in the app's folder, then reload this page (or choose other "
        "models on the Models page). Colour, gradient, blur, picture and transparent backgrounds "
        "work without them."
    )
    return "\n".join(lines)


def _apply_preset(prefix: str) -> None:
    from core.presets import PRESETS

    name = st.session_state.get(f"{prefix}preset")
    if name in PRESETS:
        st.session_state[f"{prefix}prompt"] = PRESETS[name].prompt
        st.session_state[f"{prefix}negative_prompt"] = PRESETS[name].negative


def _kind_changed(prefix: str) -> None:
    """Colour match follows the background kind (on for AI and picture backgrounds, which bring
    their own light) until the user sets the slider themselves."""
    from core.harmony import default_harmony

    state = st.session_state
    if not state.get(f"{prefix}harmony_chosen"):
        state[f"{prefix}harmony"] = default_harmony(state[f"{prefix}kind"])


def _harmony_chosen(prefix: str) -> None:
    st.session_state[f"{prefix}harmony_chosen"] = True


def _roll_seed(prefix: str) -> None:
    st.session_state[f"{prefix}seed"] = new_seed()


def base_request() -> GenerationRequest:
    """A request carrying the user's saved default models and device."""
    values = settings()
    return GenerationRequest(**{k: values[k] for k in ("segmenter", "inpaint_model", "controlnet_model", "depth_model", "device")})


def background_form(prefix: str, base: GenerationRequest) -> tuple[GenerationRequest | None, str | None]:
    """Draw the background choice and its parameters; returns (request, None) when the choice
    can run, or (None, reason) when it cannot (missing weights, no background image...)."""
    from core.errors import InputError
    from core.presets import PRESETS

    state = st.session_state
    state.setdefault(f"{prefix}kind", "color")
    state.setdefault(f"{prefix}seed", new_seed())
    for name in FORM_FIELDS:
        state.setdefault(f"{prefix}{name}", getattr(base, name))
    kind = st.radio(
        "Background", BACKGROUND_KINDS, persist_state="session", key=f"{prefix}kind", horizontal=True,
        format_func=lambda k: KIND_LABELS[k], on_change=_kind_changed, args=(prefix,),
    )
    fields: dict = {}
    reason = None
    if kind == "ai":
        blocking, degraded = ai_readiness(base.replace(control_scale=state[f"{prefix}control_scale"]))
        if blocking:
            st.warning(explain_missing(blocking), icon=":material/block:")
            reason = "the AI models are missing (see above)"
        elif degraded:
            st.info(explain_missing(degraded, blocking=False))
        st.selectbox(
            "Start from a preset", [""] + list(PRESETS), persist_state="session", key=f"{prefix}preset", on_change=_apply_preset,
            args=(prefix,), format_func=lambda n: PRESETS[n].label if n else "(none - write your own)",
        )
        fields["prompt"] = st.text_area("Describe the new background", persist_state="session", key=f"{prefix}prompt",
                                        placeholder="on a marble table in a bright kitchen")
        if len(fields["prompt"].split()) > 55:
            st.caption("The text encoder reads about 77 tokens (roughly 55 words): the end of this "
                       "prompt will be cut off.")
        fields["negative_prompt"] = st.text_input("Avoid (negative prompt)", persist_state="session", key=f"{prefix}negative_prompt")
        seed_col, dice_col = st.columns([2, 1], vertical_alignment="bottom")
        fields["seed"] = int(seed_col.number_input("Seed", 0, MAX_UI_SEED, step=1, persist_state="session", key=f"{prefix}seed"))
        dice_col.button("Roll", key=f"{prefix}dice", help="New random seed", icon=":material/casino:",
                        on_click=_roll_seed, args=(prefix,))
        fields["variants"] = st.slider("Variants", 1, MAX_VARIANTS, persist_state="session", key=f"{prefix}variants")
        with st.expander("Advanced settings"):
            fields["steps"] = st.slider("Steps", 1, MAX_STEPS, persist_state="session", key=f"{prefix}steps")
            fields["guidance"] = st.slider("Guidance (prompt strength)", 0.0, 30.0, persist_state="session", key=f"{prefix}guidance", step=0.5)
            fields["control_scale"] = st.slider("Depth-control strength (0 = off)", 0.0, 2.0,
                                                persist_state="session", key=f"{prefix}control_scale", step=0.05)
            fields["scheduler"] = st.selectbox("Scheduler", SCHEDULERS, persist_state="session", key=f"{prefix}scheduler")
            fields["quality_negative"] = st.checkbox("Add the standard quality negative prompt",
                                                     persist_state="session", key=f"{prefix}quality_negative")
            fields["mask_grow"] = st.slider("Repaint this far into the subject's edge (px)", 0, 64,
                                            persist_state="session", key=f"{prefix}mask_grow")
    elif kind == "color":
        state.setdefault(f"{prefix}color", "#ffffff")
        colour = st.color_picker("Colour", persist_state="session", key=f"{prefix}color")
        fields["background"] = f"color:{colour}"
    elif kind == "gradient":
        state.setdefault(f"{prefix}grad_top", "#dfe9f3")
        state.setdefault(f"{prefix}grad_bottom", "#7a8ca3")
        top_col, bottom_col = st.columns(2)
        top = top_col.color_picker("Top", persist_state="session", key=f"{prefix}grad_top")
        bottom = bottom_col.color_picker("Bottom", persist_state="session", key=f"{prefix}grad_bottom")
        fields["background"] = f"gradient:{top},{bottom}"
    elif kind == "image":
        path = _background_image_upload(prefix)
        if path:
            fields["background"] = f"image:{path}"
        else:
            reason = "upload a background image first"
    fields.setdefault("background", kind)
    with st.expander("Edges, colour match and shadows"):
        fields["spill_removal"] = st.checkbox("Remove colour spill at the edges", persist_state="session", key=f"{prefix}spill_removal")
        fields["refine_matting"] = st.checkbox("Refine hair and fine edges (slower)", persist_state="session", key=f"{prefix}refine_matting",
                                              help="For hair, fur and feathers: removes the old background's fringe. "
                                                   "Leave off for products: hard, shiny edges can turn streaky.")
        fields["harmony"] = st.slider("Match the subject's colours to the background", 0.0, 1.0,
                                      persist_state="session", key=f"{prefix}harmony", step=0.05,
                                      on_change=_harmony_chosen, args=(prefix,))
        fields["contact_shadow"] = st.slider("Contact shadow", 0.0, 1.0, persist_state="session", key=f"{prefix}contact_shadow", step=0.05)
        fields["cast_shadow"] = st.slider("Cast shadow", 0.0, 1.0, persist_state="session", key=f"{prefix}cast_shadow", step=0.05)
        if fields["cast_shadow"] > 0:
            fields["shadow_angle"] = st.slider("Shadow direction (degrees)", 0.0, 360.0, persist_state="session", key=f"{prefix}shadow_angle",
                                               step=5.0)
    if reason:
        return None, reason
    try:
        return base.replace(**fields), None
    except InputError as error:
        return None, str(error)


def _background_image_upload(prefix: str) -> str | None:
    """Store an uploaded background picture under the data folder; returns its path."""
    import hashlib

    from core.errors import InputError
    from core.imaging import load_image, save_png_atomic

    upload = st.file_uploader("Background picture", type=["jpg", "jpeg", "png", "webp"], key=f"{prefix}bg_upload")
    if upload is not None:
        data = upload.getvalue()
        target = user_settings.data_dir() / "backgrounds" / f"{hashlib.sha256(data).hexdigest()}.png"
        try:
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                save_png_atomic(load_image(data, what=upload.name), target)
            st.session_state[f"{prefix}bg_path"] = str(target.resolve())
        except InputError as error:
            st.error(str(error))
    path = st.session_state.get(f"{prefix}bg_path")
    if path:
        st.image(path, caption="Background picture", width=160)
    return path


# ---------------------------------------------------------------- jobs and results

@st.cache_resource
def model_registry():
    """The loaded-model cache, shared by every session (and the same object the CLI uses)."""
    from core.models import get_registry

    return get_registry()


@st.cache_resource(validate=lambda job_worker: job_worker.is_alive())
def worker():
    """The one job worker of this process: every session submits to its queue, so the
    (not thread-safe) diffusers pipeline only ever runs in this thread, one job at a time.
    A worker thread that died is replaced on the next call."""
    from storage.jobs import JobQueue, Worker

    job_worker = Worker(JobQueue(), registry=model_registry())
    job_worker.start()
    return job_worker


def submit(request: GenerationRequest, image, mask=None, parent_id: int | None = None) -> int:
    job_worker = worker()
    generation_id = job_worker.queue.submit(request, image, mask, parent_id=parent_id)
    job_worker.wake()
    return generation_id


def progress_text(view) -> tuple[float, str]:
    """(fraction, label) for a queued or running generation."""
    if view.status == "queued":
        return 0.0, "Waiting for the worker..."
    total = max(view.progress_total, 1)
    step = min(view.progress_step, total)
    stage = view.progress_stage or "starting"
    label = f"{stage}: step {step} of {total}" if total > 1 else f"{stage}..."
    return step / total, label


@st.fragment(run_every=0.5)
def job_progress(generation_id: int, key: str) -> None:
    """Polls a queued or running job's row with a progress bar and a cancel button; when it has
    finished, reruns the page so the caller shows the outcome."""
    view = worker().queue.get(generation_id)
    if view.status not in ("queued", "running"):
        st.rerun()
    fraction, label = progress_text(view)
    st.progress(fraction, text=label)
    if view.cancel_requested:
        st.caption("Stopping at the next step...")
    elif st.button("Cancel", key=f"{key}_cancel", icon=":material/cancel:"):
        worker().queue.cancel(generation_id)
        st.rerun(scope="fragment")


def show_outputs(view, key: str) -> None:
    """The variants of a finished generation in a grid, each with full-resolution downloads."""
    results = view.results
    extras = [(o.kind, o) for o in (view.output("cutout"), view.output("mask")) if o is not None]
    columns = st.columns(min(len(results), 4) or 1)
    for i, output in enumerate(results):
        with columns[i % len(columns)]:
            st.image(str(output.path), caption=f"Variant {output.index + 1} ({output.width}x{output.height})")
            st.download_button(
                "Download result PNG", output.path.read_bytes(),
                file_name=f"backdrop-{view.id}-result-{output.index + 1}.png", mime="image/png",
                key=f"{key}_dl_result_{output.index}", on_click="ignore", icon=":material/download:",
            )
    extra_cols = st.columns(2)
    for col, (kind, output) in zip(extra_cols, extras):
        label = "Cut-out PNG (transparent)" if kind == "cutout" else "Mask PNG"
        col.download_button(
            label, output.path.read_bytes(), file_name=f"backdrop-{view.id}-{kind}.png",
            mime="image/png", key=f"{key}_dl_{kind}", on_click="ignore", icon=":material/download:",
        )
    for warning in view.warnings:  # may quote the prompt: plain text, never Markdown
        st.text(f"Warning: {warning}")


def sidebar() -> None:
    """Shown on every page: what the worker is doing and where data lives."""
    with st.sidebar:
        worker_status()
        st.caption(f"Data folder: {user_settings.data_dir().resolve()}")


@st.fragment(run_every=3.0)
def worker_status() -> None:
    job_worker = worker()
    pending = job_worker.queue.pending()
    if job_worker.current is not None:
        st.caption(f"Worker: generating #{job_worker.current}; {pending} job(s) queued or running")
    else:
        st.caption(f"Worker: idle; {pending} job(s) waiting")


def results_zip(done: list[tuple[str, object]]) -> bytes:
    """One PNG per result, named after its photo (``-2``, ``-3``... for more variants)."""
    buffer = io.BytesIO()
    used: set[str] = set()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, view in done:
            stem = Path(name).stem
            for output in view.results:
                arcname = f"{stem}.png" if output.index == 0 else f"{stem}-{output.index + 1}.png"
                while arcname in used:  # two photos with the same name
                    arcname = f"{Path(arcname).stem}-{view.id}.png"
                used.add(arcname)
                archive.write(output.path, arcname)
    return buffer.getvalue()
