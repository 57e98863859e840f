"""Gives back the memory of browser sessions that have ended.

A closed browser tab leaves its session (its photo, masks and previews: megabytes to a hundred
for a phone photo) in Streamlit's store for ``server.disconnectedSessionTTL`` seconds, so that a
dropped connection can resume. Streamlit drops expired sessions only when it next writes to that
store (another session closing): the last sessions of the day would stay. Nor does the memory go
back to the system by itself: the app turns off Streamlit's collection after each run
(``runner.postScriptGC``: it starved the generation thread), and C's allocator keeps freed
blocks. A thread of the app's own, started once per process, drops expired sessions, collects
and trims the heap whenever a session has gone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import threading

import streamlit as st

log = logging.getLogger(__name__)
REAP_EVERY_S = 5.0


@st.cache_resource(show_spinner=False)
def start_reaper() -> threading.Event:
    """Start the process's reaper once; set the returned event to stop it."""
    stop = threading.Event()
    threading.Thread(target=_loop, args=(stop,), name="backdrop-session-reaper", daemon=True).start()
    return stop


def _loop(stop: threading.Event) -> None:
    held: dict[str, object] = {}
    while not stop.wait(REAP_EVERY_S):
        try:
            sessions = held_sessions()
        except Exception:  # noqa: BLE001 - Streamlit's internals changed: say so once, stop reaping
            log.warning("cannot list Streamlit's sessions: ended sessions are freed only by Streamlit", exc_info=True)
            return
        gone = [session for session_id, session in held.items() if session_id not in sessions]
        for session in gone:
            # as Streamlit shuts down a closed session it does not keep: its uploads and media go
            # (one it dropped when its TTL passed was not shut down)
            session.shutdown()
        if gone:
            release_memory()
            log.info("%d session(s) ended: memory released; %d held", len(gone), len(sessions))
        held = sessions


def held_sessions() -> dict[str, object]:
    """The sessions Streamlit holds (connected, or closed but within their TTL) by id, after
    dropping those whose TTL has passed. Streamlit has no public call for this: its session
    manager's store, under the manager's own lock."""
    from streamlit import runtime

    if not runtime.exists():
        return {}
    manager = runtime.get_instance()._session_mgr  # noqa: SLF001
    with manager._storage_lock:  # noqa: SLF001
        manager._session_storage._cache.expire()  # noqa: SLF001
        return {info.session.id: info.session for info in manager.list_sessions()}


def release_memory() -> None:
    """Collect garbage and hand the C heap's free pages back to the system (glibc)."""
    gc.collect()
    name = ctypes.util.find_library("c")
    if name:
        libc = ctypes.CDLL(name)
        if hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)
