"""What the pages share: the sidebar, the one job worker per process, the background form
(one widget per request field, from its declaration) and the results with their downloads.

Not a page itself (streamlit_app.py lists the pages explicitly, and the folder is not named
``pages/``, so Streamlit never discovers it as one). Only widgets and calls: the
work is in core (brush masks, readiness, colour match) and storage (jobs, history, zips).
"""

from __future__ import annotations

import random
import sys

import streamlit as st
from PIL import Image

from app_pages import fast
from core.engine.recipes import starts_fast
from core.look.backgrounds import KINDS
from core.request import FIELD, FIELDS, GenerationRequest
from core.models.slots import explain_missing, readiness
from storage import settings as user_settings

MAX_UI_SEED = 2**53 - 1  # browsers hold numbers as doubles: larger seeds would be rounded


# ---------------------------------------------------------------- who is asking

def current_user():
    """The signed-in account (storage.users.User), or None where the app runs without accounts
    (one local user who sees everything). streamlit_app.py's sign-in sets it before any page runs."""
    return st.session_state.get(SIGNED_IN)


def is_admin() -> bool:
    user = current_user()
    return user is None or user.admin


def user_error(headline: str, detail: str) -> None:
    """An error about something the user named (a file name, an e-mail): the headline in the red
    box, the user's text below it as plain text. Streamlit renders st.error's text as Markdown,
    where a file name such as ``[x](http://y)`` or a bare address would become a link."""
    st.error(headline)
    st.code(detail, language=None, wrap_lines=True)


SIGNED_IN = "backdrop_user"


# ---------------------------------------------------------------- settings, arguments

def settings() -> dict[str, str]:
    """The saved settings; with an invalid environment variable, the defaults and an error."""
    from core.errors import InputError

    try:
        return user_settings.load_settings()
    except InputError as error:
        st.error(str(error))
        return {name: spec.default for name, spec in user_settings.SETTINGS.items()}


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

# The form draws one widget per request field of these groups, from its declaration
# (core.request.FIELDS); the models and the device come from the base request.
FORM_FIELDS = tuple(spec for spec in FIELDS if spec.group in ("ai", "advanced", "look"))


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#%02x%02x%02x" % rgb


def prefill(prefix: str, request: GenerationRequest, picture: bytes | None = None) -> None:
    """Put a stored request into the form (before its widgets are drawn): every field's widget,
    the background's, and the request itself as the form's base, so what has no widget (the
    models, the device) is the stored generation's too."""
    state = st.session_state
    spec = request.background_spec
    state[f"{prefix}kind"] = spec.kind
    for key, colour in zip(_colour_keys(prefix, spec.declared), spec.colors):
        state[key] = _hex(colour)
    state[f"{prefix}picture"] = picture
    for field in FORM_FIELDS:
        state[f"{prefix}{field.name}"] = getattr(request, field.name)
    state[f"{prefix}seed"] = min(request.seed, MAX_UI_SEED)
    state[f"{prefix}base"] = request


# the colour pickers of a kind that takes colours: (label, default) for one colour, or for two
_PICKERS = {1: (("Colour", "#ffffff"),), 2: (("Top", "#dfe9f3"), ("Bottom", "#7a8ca3"))}


def _colour_keys(prefix: str, kind) -> list[str]:
    """The session keys of a kind's colour pickers (one per colour it takes)."""
    return [f"{prefix}{kind.name}_{label.lower()}" for label, _ in _PICKERS.get(kind.colours, ())]


def kind_label(name: str) -> str:
    """A background kind's label in the app (a kind no longer declared: its name)."""
    return KINDS[name].label if name in KINDS else name


def form_base(prefix: str) -> GenerationRequest:
    """The request the form starts from: a remixed generation's, else the saved settings'."""
    return st.session_state.get(f"{prefix}base") or base_request()


def forget_base(prefix: str) -> None:
    st.session_state.pop(f"{prefix}base", None)


def _apply_preset(prefix: str) -> None:
    from core.presets import PRESETS

    name = st.session_state.get(f"{prefix}preset")
    if name in PRESETS:
        st.session_state[f"{prefix}prompt"] = PRESETS[name].prompt
        st.session_state[f"{prefix}negative_prompt"] = PRESETS[name].negative


def _roll_seed(prefix: str) -> None:
    st.session_state[f"{prefix}seed"] = new_seed()


def base_request() -> GenerationRequest:
    """A request carrying the user's saved default models and device; in fast mode where that
    is where the Studio starts (a CPU with the fast-mode LoRA here: core.engine.recipes)."""
    request = GenerationRequest(**{k: v for k, v in settings().items() if k in FIELD})
    return request.replace(fast=True) if starts_fast(request) else request


def field_widget(prefix: str, spec, **extra):
    """The widget of one request field, made from its declaration: label, help, range, step,
    choices and type decide the kind of widget. Returns its value."""
    common = dict(key=f"{prefix}{spec.name}", persist_state="session", help=spec.help, **extra)
    if spec.type is bool:
        return st.checkbox(spec.label, **common)
    if spec.choices:
        return st.selectbox(spec.label, list(spec.choices), format_func=lambda v: spec.choices[v], **common)
    if spec.name == "prompt":
        return st.text_area(spec.label, placeholder="on a marble table in a bright kitchen", **common)
    if spec.type is str:
        return st.text_input(spec.label, **common)
    if spec.name == "seed":  # browsers hold numbers as doubles: the widget stops at 2^53 - 1
        return int(st.number_input(spec.label, int(spec.low), MAX_UI_SEED, step=1, **common))
    if spec.type is int:
        return st.slider(spec.label, int(spec.low), int(spec.high), **common)
    return st.slider(spec.label, float(spec.low), float(spec.high), step=spec.step, **common)


def _group(prefix: str, group: str, base: GenerationRequest) -> None:
    """Every form field of ``group``; a field with ``shown_if`` only while that field is above 0."""
    state = st.session_state
    for spec in FORM_FIELDS:
        if spec.group != group or (spec.shown_if and not state[f"{prefix}{spec.shown_if}"] > 0):
            continue
        if spec.name == "fast":
            fast.fast_switch(prefix, spec, base, lambda request: workers().queue.expected_run_s(request))
        elif spec.name == "seed":
            seed_col, dice_col = st.columns([2, 1], vertical_alignment="bottom")
            with seed_col:
                field_widget(prefix, spec)
            dice_col.button("Roll", key=f"{prefix}dice", help="New random seed", icon=":material/casino:",
                            on_click=_roll_seed, args=(prefix,))
        else:
            field_widget(prefix, spec)


def background_form(prefix: str, base: GenerationRequest) -> tuple[GenerationRequest | None, bytes | None, str | None]:
    """Draw the background choice and every parameter's widget; returns (request, picture,
    None) when the choice can run (``picture``: an image background's bytes), or (None, None,
    reason) when it cannot (missing weights, no background picture...)."""
    from core.errors import InputError
    from core.presets import PRESETS

    state = st.session_state
    state.setdefault(f"{prefix}kind", "color")
    state.setdefault(f"{prefix}seed", new_seed())
    for spec in FORM_FIELDS:
        state.setdefault(f"{prefix}{spec.name}", getattr(base, spec.name))
    name = st.radio(
        FIELD["background"].label, list(KINDS), persist_state="session", key=f"{prefix}kind", horizontal=True,
        format_func=kind_label, help="  \n".join(f"**{kind.label}**: {kind.hint}" for kind in KINDS.values()),
    )
    kind = KINDS[name]
    background, picture, reason = name, None, None
    if kind.generated:
        ready = readiness(base.replace(background=name, **{f: state[f"{prefix}{f}"] for f in (
            "control_scale", "fast", "fast_lora")}), "ai")
        if ready.blocking:
            st.warning(explain_missing(ready.blocking), icon=":material/block:")
            reason = "the AI models are missing (see above)"
        elif ready.degraded:
            st.info(explain_missing(ready.degraded))
        st.selectbox(
            "Start from a preset", [""] + list(PRESETS), persist_state="session", key=f"{prefix}preset", on_change=_apply_preset,
            args=(prefix,), format_func=lambda n: PRESETS[n].label if n else "(none - write your own)",
        )
        _group(prefix, "ai", base)
        with st.expander("Advanced settings"):
            fast.advanced_note(prefix)
            _group(prefix, "advanced", base)
    elif kind.colours:
        pickers = _PICKERS[kind.colours]
        colours = []
        for column, (label, default), key in zip(st.columns(len(pickers)), pickers, _colour_keys(prefix, kind)):
            state.setdefault(key, default)
            colours.append(column.color_picker(label, persist_state="session", key=key))
        background = f"{name}:{','.join(colours)}"
    if kind.picture:
        picture = _background_picture(prefix)
        if picture is None:
            reason = "upload a background image first"
    with st.expander("Edges, colour match and shadows"):
        _group(prefix, "look", base)
    if reason:
        return None, None, reason
    groups = ("ai", "advanced", "look") if kind.generated else ("look",)  # the others: as in the base
    values = {spec.name: state[f"{prefix}{spec.name}"] for spec in FORM_FIELDS if spec.group in groups}
    try:
        return base.replace(background=background, **values), picture, None
    except InputError as error:
        return None, None, str(error)


def _background_picture(prefix: str) -> bytes | None:
    """The uploaded background picture's bytes, checked to decode (they are stored with the
    generation, by hash, like the photo)."""
    from core.errors import InputError
    from core.imaging import load_image

    upload = st.file_uploader("Background picture", type=["jpg", "jpeg", "png", "webp"], key=f"{prefix}bg_upload")
    if upload is not None and upload.file_id != st.session_state.get(f"{prefix}bg_upload_id"):
        st.session_state[f"{prefix}bg_upload_id"] = upload.file_id
        data = upload.getvalue()
        try:
            load_image(data, what=upload.name)
            st.session_state[f"{prefix}picture"] = data
        except InputError as error:
            user_error("This picture cannot be used:", str(error))  # the message quotes the file's name
    picture = st.session_state.get(f"{prefix}picture")
    if picture:
        st.image(picture, caption="Background picture", width=160)
    return picture


# ---------------------------------------------------------------- jobs: submit, follow, cancel

@st.cache_resource
def model_registry():
    """The loaded-model cache, shared by every session (and the same object the CLI uses)."""
    from core.models.registry import get_registry

    return get_registry()


@st.cache_resource(validate=lambda job_workers: job_workers.is_alive(), show_spinner=False,
                   on_release=lambda job_workers: job_workers.stop(timeout=0))
def workers():
    """What serves the queue for every session of this process (storage.jobs.start_serving): a
    worker thread per lane, so AI jobs (the diffusers pipeline is not thread-safe) run one at a
    time in the AI worker's thread and the other backgrounds (seconds) in the quick worker's,
    never waiting behind an AI job; or, with a Ray cluster configured (BACKDROP_RAY_ADDRESS),
    Ray workers. Replaced on the next call if a worker died (the old service is told to stop
    after its job, so no lane gets two workers)."""
    from storage.jobs import JobQueue, start_serving

    return start_serving(JobQueue(), registry=model_registry(), warm_up=base_request().replace(background="ai"))


class Press:
    """The presses of one button in one session, acted on exactly once each.

    Streamlit checks whether another rerun is waiting (the canvas reporting, a timer fragment, an
    upload finishing) on every drawing and on every access of ``st.session_state``, callbacks
    included, and abandons the run right there. So a press read from ``st.button``'s return value
    is lost when the run it started is abandoned before reaching the button, and a job recorded
    just before a write to session state is forgotten by the page. This object lives in session
    state and is only changed in place, through its attributes, which Streamlit never
    interrupts: the button's callback marks the press ``pending``; the page acts on it, with the
    widget values of the run that gets there, and ``settle``s it with the outcome (a job id)
    or an error in one step; the page then moves the outcome where it belongs
    (``take_outcome``), and a run abandoned meanwhile leaves it there for the next run."""

    def __init__(self) -> None:
        self.token = 0  # which drawing of the button may still be pressed
        self.pending = False
        self.outcome = None
        self.error: str | None = None

    def pressed(self, token: int) -> None:
        """The button's callback. The second click of a double click comes from a drawing whose
        token is spent (each drawing has its own key), and is ignored."""
        if token == self.token:
            self.token += 1
            self.pending, self.error = True, None

    def settle(self, outcome=None, error: str | None = None) -> None:
        self.pending, self.outcome, self.error = False, outcome, error

    def take_outcome(self, store) -> bool:
        """Hand the outcome to ``store`` (which may write session state and be interrupted: the
        outcome then stays for the next run), then forget it; True when there was one."""
        if self.outcome is None:
            return False
        store(self.outcome)
        self.outcome = None
        return True


def press(label: str, key: str, **button) -> Press:
    """A button whose presses are never lost nor doubled (see Press). Each drawing has its own
    key inside the container ``key``, which the page's shortcuts and the tests find. Read
    everything the action needs from session state before acting on a pending press, and
    nothing between the action's effect (a job submitted) and ``settle``."""
    state = st.session_state.setdefault(press_state_key(key), Press())
    with st.container(key=key):
        st.button(label, key=f"{key}__{state.token}", on_click=state.pressed, args=(state.token,), **button)
    return state


def press_state_key(key: str) -> str:
    """Where the Press of the button ``key`` is kept in session state (pop it to forget it)."""
    return f"{key}__press"


def address_on_arrival(page: str, param: str) -> str | None:
    """The query parameter ``param`` the page was opened with, the first time this session runs
    the page (a reload is a new session); None afterwards, when the page writes its address."""
    read = f"{page}_address_read"
    if st.session_state.get(read):
        return None
    st.session_state[read] = True
    return st.query_params.get(param)


def submit(request: GenerationRequest, image, mask=None, parent_id: int | None = None, picture: bytes | None = None,
           *, user) -> int:
    """Queue a generation for ``user`` (the signed-in one: pass ``current_user()``, read before
    a Press is acted on) and wake the workers; returns its id. Every page submits here; nothing
    here touches session state."""
    job_workers = workers()
    generation_id = job_workers.queue.submit(request, image, mask, parent_id=parent_id, picture=picture, user=user)
    job_workers.wake()
    return generation_id


LANE_NAMES = {"ai": "AI queue", "quick": "queue for colour, gradient, blur, picture and transparent backgrounds"}


def duration(seconds: float) -> str:
    """12 s, 1 min 20 s, 2 h 5 min."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s" if seconds else "under a second"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def _since(moment, now=None) -> float:
    from storage.db import utcnow

    return ((now or utcnow()) - moment).total_seconds() if moment else 0.0


def progress_text(view, place=None, step_seconds: float | None = None, now=None) -> tuple[float, str]:
    """(fraction, label) for a queued or running generation. Queued: how many jobs are ahead in
    its lane and when it should start; running: the stage and step, the time so far and the time
    left. ``place``: the queue's ``JobQueue.place``; ``step_seconds``: the seconds per step this
    page has seen the job take (None until it has seen two steps)."""
    if view.status == "queued":
        if place is None:
            return 0.0, "Waiting for the worker..."
        where = LANE_NAMES[place.lane]
        label = (f"Waiting in the {where}: {place.ahead} job{'s' if place.ahead != 1 else ''} ahead"
                 if place.ahead else f"Next in the {where}")
        if place.wait_s is None:
            label += "; no estimate yet (no similar job has finished here)"
        else:
            label += f", starting in about {duration(place.wait_s)}" if place.ahead else ""
            if place.run_s is not None:
                label += f"; then about {duration(place.run_s)} to run (from {place.similar} similar job" \
                         f"{'s' if place.similar != 1 else ''})"
        return 0.0, label + "."
    total = max(view.progress_total, 1)
    step = min(view.progress_step, total)
    stage = view.progress_stage or "starting"
    label = f"{stage}: step {step} of {total}" if total > 1 else f"{stage}..."
    elapsed = _since(view.started_at, now)
    label += f" · {duration(elapsed)} so far"
    if step_seconds is not None and total > 1:
        label += f" · about {duration(step_seconds * (total - step))} left"
    elif place is not None and place.run_s is not None:
        left = place.run_s - elapsed
        label += f" · about {duration(left)} left" if left > 0 else " · taking longer than similar jobs"
    return step / total, label


def finished_text(view) -> str:
    """How long a finished generation ran, and how long it waited for its worker first."""
    ran = _since(view.started_at, view.finished_at) if view.started_at else None
    waited = _since(view.created_at, view.started_at) if view.started_at else _since(view.created_at, view.finished_at)
    parts = [f"ran {duration(ran)}"] if ran is not None else ["never started"]
    if waited >= 1:
        parts.append(f"after {duration(waited)} in the queue")
    return ", ".join(parts)


def _step_seconds(view, key: str) -> float | None:
    """Seconds per diffusion step as this page saw them: the first step it saw, and the latest."""
    import time

    if view.progress_stage != "generate" or view.progress_total <= 1:
        return None
    seen = st.session_state.setdefault(f"{key}_steps_seen", {})
    first = seen.setdefault(view.id, (time.monotonic(), view.progress_step))
    steps = view.progress_step - first[1]
    return (time.monotonic() - first[0]) / steps if steps > 0 else None


@st.fragment(run_every=0.5)
def job_progress(generation_id: int, key: str) -> None:
    """Polls a queued or running job with a progress bar, its place in the queue or its time left,
    and a cancel button; when it has finished, reruns the page so the caller shows the outcome."""
    queue = workers().queue
    view = queue.get(generation_id, user=current_user())
    if view.status not in ("queued", "running"):
        st.rerun()
    fraction, label = progress_text(view, queue.place(generation_id, user=current_user()), _step_seconds(view, key))
    st.progress(fraction, text=label)
    if view.cancel_requested:
        st.caption("Stopping at the next step...")
    else:
        st.button("Cancel", key=f"{key}_cancel", icon=":material/cancel:", on_click=cancel,
                  args=([generation_id], current_user()))


def cancel(generation_ids: list[int], user) -> None:
    """A Cancel button's callback: only the database (no session state, where Streamlit could
    interrupt it), and cancelling twice is harmless."""
    from storage.history import NotFound

    queue = workers().queue
    for generation_id in generation_ids:
        try:
            queue.cancel(generation_id, user=user)
        except NotFound:  # deleted meanwhile: nothing left to stop
            pass


# Streamlit draws progress bars in a fixed blue ("secondary"): in the theme's accent colour instead
PROGRESS_STYLE = "<style>[data-testid='stProgressBarTrack'] > div {{ background-color: {}; }}</style>"


def sidebar() -> None:
    """Shown on every page: what the workers are doing and (to an admin) where data lives."""
    st.html(PROGRESS_STYLE.format(st.get_option("theme.primaryColor") or "#c53948"))
    with st.sidebar:
        worker_status()
        if is_admin():
            st.caption(f"Data folder: {user_settings.data_dir().resolve()}")


def worker_status() -> None:
    """What each lane's worker is doing. It refreshes itself only while there is work: Streamlit
    1.67 merges a timer's fragment rerun into a pending page switch with the fragment's page (the
    one being left), so a ticking fragment can undo a click on another page."""
    job_workers = workers()
    if job_workers.queue.pending():
        _live_worker_status()
    else:
        _worker_lines(job_workers)


@st.fragment(run_every=3.0)
def _live_worker_status() -> None:
    _worker_lines(workers())


def _worker_lines(job_workers) -> None:
    from storage.jobs import LaneWorkers

    lines = []
    running = job_workers.running() if isinstance(job_workers, LaneWorkers) else {None: job_workers.current}
    for lane, current in running.items():
        waiting = job_workers.queue.pending(lane) - (current is not None)
        which = f" #{current}" if is_admin() else ""  # another user's generation id is theirs
        doing = f"generating{which}" if current is not None else "idle"
        lines.append(f"{ {'ai': 'AI worker', 'quick': 'Quick worker'}.get(lane, 'Workers') }: {doing}; {waiting} waiting")
    st.caption("  \n".join(lines))
