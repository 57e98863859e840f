"""The background form: one widget per request field, drawn from its declaration
(core.request.FIELDS), the background's choice, colours and picture, the presets and the seed,
size and placement (app_pages.framing); and a stored request put back into it (a remix, a
reload).

The models and the device have no widget: they come from the form's base request (the saved
settings, or the remixed generation's).
"""

from __future__ import annotations

import random
from typing import Any, Callable, Mapping

import streamlit as st

from app_pages import fast, framing
from app_pages.ui import base_request, user_error
from core.look.backgrounds import KINDS, Background
from core.look.framing import FRAMING_FIELDS
from core.models.slots import explain_missing, readiness
from core.request import FIELD, FIELDS, GenerationRequest

MAX_UI_SEED = 2**53 - 1  # browsers hold numbers as doubles: larger seeds would be rounded


def new_seed() -> int:
    return random.randrange(0, 2**31)


# The form draws one widget per request field of these groups, from its declaration
# (core.request.FIELDS); the models and the device come from the base request.
FORM_FIELDS = tuple(spec for spec in FIELDS if spec.group in ("ai", "advanced", "look", "framing"))


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#%02x%02x%02x" % rgb


def prefill(prefix: str, request: GenerationRequest, picture: bytes | None = None) -> None:
    """Put a stored request into the form (before its widgets are drawn): every field's widget,
    the background's, and the request itself as the form's base, so what has no widget (the
    models, the device) is the stored generation's too."""
    fill(prefix, request.params())
    st.session_state[f"{prefix}picture"] = picture
    st.session_state[f"{prefix}base"] = request


def fill(prefix: str, values: Mapping[str, Any]) -> None:
    """Put request field values (each valid for its field) into the form, before its widgets are
    drawn: ``background`` chooses the kind and sets its colours; the fields not in ``values``
    keep what the form has."""
    state = st.session_state
    if "background" in values:
        spec = Background.parse(values["background"])
        state[f"{prefix}kind"] = spec.kind
        for key, colour in zip(_colour_keys(prefix, spec.declared), spec.colors):
            state[key] = _hex(colour)
    for field in FORM_FIELDS:
        if field.name in values:
            state[f"{prefix}{field.name}"] = values[field.name]
    if "seed" in values:
        state[f"{prefix}seed"] = min(values["seed"], MAX_UI_SEED)
    if "anchor" in values:
        framing.prefill_anchor(prefix, values["anchor"])
    if set(FRAMING_FIELDS) & set(values):
        state[f"{prefix}size_preset"] = ""  # the values given, not a preset's


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


def field_widget(prefix: str, spec, **extra):
    """The widget of one request field, made from its declaration: label, help, range, step,
    choices and type decide the kind of widget. Returns its value."""
    common = dict(key=f"{prefix}{spec.name}", persist_state="session", help=spec.help, **extra)
    if spec.type is bool:
        return st.checkbox(spec.label, **common)
    if spec.choices:
        return st.selectbox(spec.label, list(spec.choices), format_func=lambda v: spec.choices[v], **common)
    if spec.name == "prompt":
        return st.text_area(spec.label, placeholder="on a marble table in a bright kitchen", max_chars=spec.max_length,
                            **common)
    if spec.type is str:
        return st.text_input(spec.label, max_chars=spec.max_length, **common)
    if spec.name == "seed":  # browsers hold numbers as doubles: the widget stops at 2^53 - 1
        return int(st.number_input(spec.label, int(spec.low), MAX_UI_SEED, step=1, **common))
    if spec.type is int:
        return st.slider(spec.label, int(spec.low), int(spec.high), **common)
    return st.slider(spec.label, float(spec.low), float(spec.high), step=spec.step, **common)


def _group(prefix: str, group: str, base: GenerationRequest,
           under_prompt: Callable[[], None] | None = None) -> None:
    """Every form field of ``group``; a field with ``shown_if`` only while that field is above 0;
    ``under_prompt`` draws what goes under the prompt box."""
    state = st.session_state
    for spec in FORM_FIELDS:
        if spec.group != group or (spec.shown_if and not state[f"{prefix}{spec.shown_if}"] > 0):
            continue
        if spec.name == "fast":
            fast.fast_switch(prefix, spec, base)
        elif spec.name == "seed":
            seed_col, dice_col = st.columns([2, 1], vertical_alignment="bottom")
            with seed_col:
                field_widget(prefix, spec)
            dice_col.button("Roll", key=f"{prefix}dice", help="New random seed", icon=":material/casino:",
                            on_click=_roll_seed, args=(prefix,))
        else:
            field_widget(prefix, spec)
            if spec.name == "prompt" and under_prompt is not None:
                under_prompt()


def background_form(prefix: str, base: GenerationRequest, under_prompt: Callable[[], None] | None = None,
                    ) -> tuple[GenerationRequest | None, bytes | None, str | None]:
    """Draw the background choice and every parameter's widget (``under_prompt``: what a page
    adds under the prompt box); returns (request, picture, None) when the choice can run
    (``picture``: an image background's bytes), or (None, None, reason) when it cannot (missing
    weights, no background picture...)."""
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
        ready = readiness(base.replace(background=name, control_scale=state[f"{prefix}control_scale"],
                                       fast=state[f"{prefix}fast"], tiny_vae=state[f"{prefix}tiny_vae"]), "ai")
        if ready.blocking:
            st.warning(explain_missing(ready.blocking), icon=":material/block:")
            reason = "the AI models are missing (see above)"
        elif ready.degraded:
            st.info(explain_missing(ready.degraded))
        st.selectbox(
            "Start from a preset", [""] + list(PRESETS), persist_state="session", key=f"{prefix}preset", on_change=_apply_preset,
            args=(prefix,), format_func=lambda n: PRESETS[n].label if n else "(none - write your own)",
        )
        _group(prefix, "ai", base, under_prompt)
        with st.expander("Advanced settings"):
            fast.advanced_note(prefix, base)
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
    anchor = framing.size_section(prefix, field_widget, _colour_keys)
    with st.expander("Edges, colour match and shadows"):
        _group(prefix, "look", base)
    if reason:
        return None, None, reason
    groups = ("ai", "advanced", "look", "framing") if kind.generated else ("look", "framing")  # the others: the base's
    values = {spec.name: state[f"{prefix}{spec.name}"] for spec in FORM_FIELDS if spec.group in groups}
    values["anchor"] = anchor
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
