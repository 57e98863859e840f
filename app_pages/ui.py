"""What the pages share: who is asking, the saved settings and the base request they make,
the command line's arguments, the address a page was opened with, and the words for a job's
progress. The pages' other shared parts have modules of their own: form (the background form),
press (a button acted on exactly once), job_view (the workers, submitting and following a job,
the sidebar).

Not a page itself (streamlit_app.py lists the pages explicitly, and the folder is not named
``pages/``, so Streamlit never discovers it as one). Only widgets and calls: the
work is in core (brush masks, readiness, colour match) and storage (jobs, history, zips).
"""

from __future__ import annotations

import sys

import streamlit as st

from core.request import FIELD, GenerationRequest
from storage import settings as user_settings


# ---------------------------------------------------------------- who is asking

def current_user():
    """The signed-in account (storage.users.User), or None where the app runs without accounts
    (one local user who sees everything). streamlit_app.py's sign-in sets it before any page runs."""
    return st.session_state.get(SIGNED_IN)


def is_admin() -> bool:
    user = current_user()
    return user is None or user.admin


def user_error(headline: str, detail: str, box=st.error) -> None:
    """A message about something the user supplied (a file name, an e-mail, the page's address,
    a stored value): the headline in the red box (``box``: st.warning for a yellow one), the
    user's text below it as plain text. Streamlit renders the box's text as Markdown, where
    ``[x](http://y)``, ``![p](http://y/p.png)`` or a bare address would become a link or an
    image fetched from elsewhere."""
    box(headline)
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


def base_request() -> GenerationRequest:
    """A request carrying the user's saved default models and device."""
    return GenerationRequest(**{k: v for k, v in settings().items() if k in FIELD})


def address_on_arrival(page: str, param: str) -> str | None:
    """The query parameter ``param`` the page was opened with, the first time this session runs
    the page (a reload is a new session); None afterwards, when the page writes its address."""
    read = f"{page}_address_read"
    if st.session_state.get(read):
        return None
    st.session_state[read] = True
    return st.query_params.get(param)


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
