"""The Fast switch of the background form: fast mode on or off, what each mode is expected to
take here, and why the Studio started in fast mode (core.engine.recipes). Widgets and calls only."""

from __future__ import annotations

import streamlit as st

from core.engine.recipes import RECIPES, sampling, starts_fast, step_rows
from core.request import GenerationRequest


def fast_switch(prefix: str, spec, base: GenerationRequest, expected) -> None:
    """The switch itself (its state is the form's ``fast`` field), the expected times of both
    modes and, on a CPU, why fast mode is where the Studio starts. ``expected(request)``: the
    queue's (seconds or None, similar jobs) for a request."""
    state = st.session_state
    st.toggle(spec.label, key=f"{prefix}{spec.name}", persist_state="session", help=spec.help)
    request = base.replace(background="ai", variants=state[f"{prefix}variants"], fast_lora=state[f"{prefix}fast_lora"],
                           steps=state[f"{prefix}steps"], guidance=state[f"{prefix}guidance"],
                           scheduler=state[f"{prefix}scheduler"])
    st.caption(expected_text(request, expected))
    reason = starts_fast(request)
    if reason:
        st.caption(reason)


def expected_text(request: GenerationRequest, expected) -> str:
    """Each mode's expected time from similar jobs here, or (none yet) how much less work fast mode is."""
    from app_pages.ui import duration

    fast, standard = request.replace(fast=True), request.replace(fast=False)
    (fast_s, similar), (standard_s, _) = expected(fast), expected(standard)
    if fast_s is None:
        ratio = step_rows(standard.params()) / step_rows(fast.params())
        plan, recipe = sampling(standard), RECIPES[fast.fast_lora]
        return (f"Fast mode: {recipe.steps} steps instead of {plan.steps}"
                + (", without the second pass for guidance" if plan.guided else "") + f": about {ratio:.0f}x less "
                "work (no time estimate yet: no AI background has finished here).")
    return (f"Expected here: fast about {duration(fast_s)}, standard about {duration(standard_s)} "
            f"(from {similar} similar job{'s' if similar != 1 else ''}).")


def advanced_note(prefix: str) -> None:
    """In the advanced settings while fast mode is on: which settings its recipe replaces."""
    state = st.session_state
    if state.get(f"{prefix}fast"):
        recipe = RECIPES[state[f"{prefix}fast_lora"]]
        st.caption(f"Fast mode samples with its recipe ({recipe.label}: {recipe.describe()}); the steps, guidance "
                   "and scheduler below are standard mode's.")
