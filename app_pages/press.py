"""A button acted on exactly once per press, whatever Streamlit does to the runs in between."""

from __future__ import annotations

import streamlit as st


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
