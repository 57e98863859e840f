"""The Fast switch of the background form: fast mode on or off, what each mode is expected to
take here (storage.progress), and why the Studio started in fast mode (core.engine.fast).
Widgets and calls only."""

from __future__ import annotations

import streamlit as st

from app_pages.job_view import workers
from core.engine.fast import starts_fast
from core.engine.recipes import RECIPES
from core.request import GenerationRequest
from storage.progress import fast_mode_text


def fast_switch(prefix: str, spec, base: GenerationRequest) -> None:
    """The switch itself (its state is the form's ``fast`` field), the expected times of both
    modes and, on a CPU, why fast mode is where the Studio starts."""
    state = st.session_state
    st.toggle(spec.label, key=f"{prefix}{spec.name}", persist_state="session", help=spec.help)
    request = base.replace(background="ai", **{name: state[f"{prefix}{name}"] for name in (
        "variants", "steps", "guidance", "scheduler")})
    st.caption(fast_mode_text(workers().queue, request))
    reason = starts_fast(request)
    if reason:
        st.caption(reason)


def advanced_note(prefix: str, base: GenerationRequest) -> None:
    """In the advanced settings while fast mode is on: its LoRA (a model: the Models page chooses
    it, as the others) and the settings its recipe replaces."""
    if st.session_state.get(f"{prefix}fast"):
        recipe = RECIPES[base.fast_lora]
        st.caption(f"Fast mode samples with its recipe ({recipe.label}: {recipe.describe()}; the fast-mode LoRA is "
                   "set on the Models page); the steps, guidance and scheduler below are standard mode's.")
