"""Jobs as the pages see them: the process's one worker service and model cache, submitting,
following (progress, time left, the live preview, cancel) and the sidebar's worker status."""

from __future__ import annotations

import streamlit as st

from app_pages.ui import base_request, current_user, is_admin
from core.request import GenerationRequest
from storage import settings as user_settings
from storage.lifecycle import UNFINISHED, Status
from storage.progress import progress_text


@st.cache_resource
def model_registry():
    """The loaded-model cache, shared by every session (and the same object the CLI uses)."""
    from core.models.registry import get_registry

    return get_registry()


@st.cache_resource(validate=lambda job_workers: job_workers.is_alive(), show_spinner=False,
                   on_release=lambda job_workers: job_workers.stop(timeout=0))
def workers():
    """What serves the queue for every session of this process (storage.serving.start_serving): a
    worker thread per lane, so AI jobs (the diffusers pipeline is not thread-safe) run one at a
    time in the AI worker's thread and the other backgrounds (seconds) in the quick worker's,
    never waiting behind an AI job; or, with a Ray cluster configured (BACKDROP_RAY_ADDRESS),
    Ray workers. Replaced on the next call if a worker died (the old service is told to stop
    after its job, so no lane gets two workers)."""
    from storage.jobs import JobQueue
    from storage.serving import start_serving

    return start_serving(JobQueue(), registry=model_registry(), warm_up=base_request().replace(background="ai"),
                         kind="app")


def submit(request: GenerationRequest, image, mask=None, parent_id: int | None = None, picture: bytes | None = None,
           *, user) -> int:
    """Queue a generation for ``user`` (the signed-in one: pass ``current_user()``, read before
    a Press is acted on) and wake the workers; returns its id. Every page submits here; nothing
    here touches session state."""
    job_workers = workers()
    generation_id = job_workers.queue.submit(request, image, mask, parent_id=parent_id, picture=picture, user=user)
    job_workers.wake()
    return generation_id


def resubmit(generation_id: int, *, user) -> int:
    """Queue a stored generation again as its child (Re-run; storage.jobs.JobQueue.resubmit) and
    wake the workers; returns the new id. As ``submit``: nothing here touches session state."""
    job_workers = workers()
    new_id = job_workers.queue.resubmit(generation_id, user=user)
    job_workers.wake()
    return new_id


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
    a cancel button and, while an AI background forms, its live preview (updated in place); when
    it has finished, reruns the page so the caller shows the outcome."""
    from storage import previews

    queue = workers().queue
    view = queue.get(generation_id, user=current_user())
    if view.status not in UNFINISHED:
        st.rerun()
    fraction, label = progress_text(view, queue.place(generation_id, user=current_user()), _step_seconds(view, key))
    st.progress(fraction, text=label)
    if view.cancel_requested:
        st.caption("Stopping at the next step...")
    else:
        st.button("Cancel", key=f"{key}_cancel", icon=":material/cancel:", on_click=cancel,
                  args=([generation_id], current_user()))
    shown = previews.latest(queue.db, generation_id) if view.status == Status.RUNNING else None
    if shown is not None:
        st.image(shown.jpeg, caption=f"Step {shown.step} of {shown.total}: a quick preview of the background as it "
                                     "forms (the result is sharper)")


TOO_LATE = ("The cancel came too late: generation {id} had already finished its last step ({ran}). Its result is "
            "kept; delete it in History if it is not wanted.")


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
    lines = []
    for lane, current in job_workers.running().items():
        waiting = job_workers.queue.pending(lane) - (current is not None)
        which = f" #{current}" if is_admin() else ""  # another user's generation id is theirs
        doing = f"generating{which}" if current is not None else "idle"
        lines.append(f"{ {'ai': 'AI worker', 'quick': 'Quick worker'}.get(lane, 'Workers') }: {doing}; {waiting} waiting")
    st.caption("  \n".join(lines))
