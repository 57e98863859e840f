"""The Studio's prompt assistant, under the prompt box: *Improve prompt* turns the words typed
there into a proposal the user edits, then uses or discards. Nothing reaches the prompt box
without a click, and a remixed generation whose prompt the assistant wrote says that Generate
will write it again.

The proposal is written in this page's process, through the shared model registry
(core.prompting.assistant: one proposal at a time per process, at most 75 new tokens). While it
is written, this session waits with a spinner; other sessions go on (the model's work releases
the interpreter), sharing the CPU with it.
"""

from __future__ import annotations

import streamlit as st

from app_pages import job_view, press, ui
from core.errors import BackdropError
from core.models.slots import explain_missing, status_row

state = st.session_state
PROPOSAL = "studio_proposal"  # the Proposal shown, and the text area the user edits it in
TEXT = "studio_proposal_text"


def section(prefix: str, base, parent: int | None) -> None:
    """The button, what it needs when its model is missing, and the proposal once written;
    ``parent``: the remixed generation the form started from."""
    if base.enhance_prompt:
        rewritten_on_generate(prefix, base, parent)
    row = status_row("prompt", base.prompt_model)
    improve = press.press("Improve prompt", "studio_improve", icon=":material/auto_fix_high:",
                          disabled=not row["present"],
                          help="A small language model turns the words above into a described background (surface, "
                               "setting, light, camera), without names, brands or logos. You edit it before using it.")
    if improve.pending:
        propose(improve, state.get(f"{prefix}prompt", ""), base)
    improve.take_outcome(lambda proposal: state.update({PROPOSAL: proposal, TEXT: proposal.text}))
    if improve.error:
        st.error(improve.error)
    if not row["present"]:
        st.caption(explain_missing([row]))
    if state.get(PROPOSAL) is not None:
        proposal_box(prefix)


def propose(improve: press.Press, words: str, base) -> None:
    """Improve prompt was pressed: write the proposal (the inputs were read before)."""
    from core.models.device import resolve_device
    from core.prompting.assistant import MAX_NEW_TOKENS, propose as write
    from storage.settings import prompt_denylist

    if not words.strip():
        improve.settle(error="Type a few words in the prompt box first (e.g. beach at sunset), then press "
                             "Improve prompt.")
        return
    try:
        device = resolve_device(base.device)
        slow = "; on a CPU this takes up to about half a minute" if device == "cpu" else ""
        with st.spinner(f"The prompt assistant is writing (at most {MAX_NEW_TOKENS} tokens{slow})..."):
            proposal = write(words, base.prompt_model, device, prompt_denylist(), registry=job_view.model_registry())
    except BackdropError as error:
        improve.settle(error=str(error))
    else:
        improve.settle(outcome=proposal)


def proposal_box(prefix: str) -> None:
    """The proposal in a text area of its own, what made it, and Use / Discard."""
    proposal = state[PROPOSAL]
    with st.container(border=True, key="studio_proposal_box"):
        st.text_area("Proposed prompt: edit it, then use it", key=TEXT, height=120)
        removed = ", ".join(_code(term) for term in dict.fromkeys([*proposal.removed_before, *proposal.removed_after]))
        st.caption(f"Written by {_code(proposal.model)} in {proposal.seconds:.1f} s: {proposal.tokens} tokens"
                   + (", stopped at the token limit" if proposal.limited else "") + "."
                   + (f" Taken out by the deny-list: {removed}." if removed else ""))
        if proposal.empty:
            st.warning("The assistant gave no usable text: the proposal is your own words.")
        use, discard = st.columns(2)
        use.button("Use this prompt", key="studio_proposal_use", type="primary", icon=":material/check:",
                   on_click=use_proposal, args=(prefix,), help="Puts the text above into the prompt box")
        discard.button("Keep mine", key="studio_proposal_discard", icon=":material/close:", on_click=forget)


def _code(text: str) -> str:
    """Text from outside (a model's path, words of the user's prompt) as Markdown code: shown as
    written, never as a link or formatting."""
    return "`" + text.replace("`", "'") + "`"


def use_proposal(prefix: str) -> None:
    """Use this prompt's callback: the edited proposal becomes the prompt (before the box is drawn)."""
    state[f"{prefix}prompt"] = state.get(TEXT, "")
    forget()


def forget() -> None:
    state.pop(PROPOSAL, None)
    state.pop(TEXT, None)


def rewritten_on_generate(prefix: str, base, parent: int | None) -> None:
    """A remixed generation ran the assistant as part of it (the command line's or the API's
    option): say that Generate does so again, and offer the text it ran with instead."""
    from storage.history import NotFound, get

    st.info("The prompt assistant wrote this generation's prompt from the words above when it ran; Generate "
            "does it again (the same words give the same text).", icon=":material/auto_fix_high:")
    ran = None
    if parent is not None:
        try:
            ran = get(parent, user=ui.current_user()).record.get("prompt")
        except NotFound:  # deleted since
            pass
    if ran:
        st.button("Use the text it ran with instead", key="studio_use_ran_prompt", on_click=use_text,
                  args=(prefix, base, ran))


def use_text(prefix: str, base, text: str) -> None:
    state[f"{prefix}prompt"] = text
    state[f"{prefix}base"] = base.replace(enhance_prompt=False)
