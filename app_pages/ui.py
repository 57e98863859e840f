"""What the pages share: who is asking, the saved settings and the base request they make,
the command line's arguments and the address a page was opened with. The pages' other shared
parts have modules of their own: form (the background form), press (a button acted on exactly
once), job_view (the workers, submitting and following a job, the sidebar); the words for a
job's progress are storage.progress, beside the queue's estimates.

Not a page itself (streamlit_app.py lists the pages explicitly, and the folder is not named
``pages/``, so Streamlit never discovers it as one). Only widgets and calls: the
work is in core (brush masks, readiness, colour match) and storage (jobs, history, zips).
"""

from __future__ import annotations

import sys

import streamlit as st

from core.engine.fast import start_request
from core.request import GenerationRequest
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
    """A request carrying the user's saved default models and device (storage.settings); with an
    invalid environment variable, the defaults and an error. In fast mode where that is where the
    Studio starts: a CPU with the fast-mode LoRA here (core.engine.fast), with the tiny autoencoder
    when its weights are here too."""
    from core.errors import InputError

    try:
        request = user_settings.base_request()
    except InputError as error:
        st.error(str(error))
        return GenerationRequest()
    return start_request(request)


def address_on_arrival(page: str, param: str) -> str | None:
    """The query parameter ``param`` the page was opened with, the first time this session runs
    the page (a reload is a new session); None afterwards, when the page writes its address."""
    read = f"{page}_address_read"
    if st.session_state.get(read):
        return None
    st.session_state[read] = True
    return st.query_params.get(param)
