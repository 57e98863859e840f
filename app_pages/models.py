"""Models: what each model slot resolves to, whether its weights are here, the device and
precision, the command that fetches what is missing, which segmenter is used and which better
one could be fetched; and the saved default models and device."""

import streamlit as st

from core.errors import BackdropError
from core.models.device import resolve_device, torch_dtype
from core.models.slots import model_status
from core.request import DEVICES
from app_pages import ui
from storage import settings as user_settings


def status_table(request) -> None:
    rows = model_status(request, user_settings.load_settings())
    st.dataframe(
        [
            {
                "slot": row["label"],
                "model": row["id"],
                "resolves to": row["resolved"] or "(not downloaded)",
                "present": "yes" if row["present"] else "NO",
                "to fetch": "" if row["present"] else (row["fetch"] or row["note"]),
            }
            for row in rows
        ],
        hide_index=True,
        width="stretch",
    )
    for row in rows:
        if row["advice"]:
            st.info(f"{row['label']}: {row['advice']}.", icon=":material/lightbulb:")
    missing = [row for row in rows if not row["present"]]
    commands = sorted({row["fetch"] for row in missing if row["fetch"]})
    if commands:
        st.warning("Missing weights: run these in a terminal in the app's folder, then reload this page.")
        st.code("\n".join(commands), language="bash")
    for row in missing:
        if row["note"]:
            st.warning(f"{row['label']} `{row['id']}`: {row['note']}.")
    if not missing:
        st.success("All weights are present.")


def device_line(request) -> None:
    try:
        device = resolve_device(request.device)
        st.text(f"Device setting: {request.device} -> runs on {device}, "
                f"precision {str(torch_dtype(device)).replace('torch.', '')}")
    except BackdropError as error:
        st.error(str(error))


def settings_form(current: dict[str, str]) -> None:
    """One widget per setting, from the request's field table (storage.settings.SETTINGS)."""
    with st.form("models_settings"):
        values = {}
        for name, spec in user_settings.SETTINGS.items():
            if name == "device" or spec.choices:
                choices = list(spec.choices or DEVICES)
                options = choices + ([current[name]] if current[name] not in choices else [])
                values[name] = st.selectbox(spec.label, options, index=options.index(current[name]), help=spec.help,
                                            format_func=lambda value, spec=spec: (spec.choices or {}).get(value, value))
            else:
                values[name] = st.text_input(spec.label, current[name], help=spec.help)
        st.caption("Leave a field empty to go back to the default. Saved to "
                   f"{user_settings.settings_path().resolve()}")
        if st.form_submit_button("Save settings", type="primary"):
            try:
                user_settings.save_settings(values)
                st.session_state.models_saved = True
                st.rerun()
            except BackdropError as error:
                st.error(str(error))


def denylist_form() -> None:
    """The words and phrases taken out of every AI prompt (storage.settings: a text file in the
    data folder, which an admin may also edit by hand)."""
    path = user_settings.denylist_path()
    try:
        text = path.read_text(encoding="utf-8") if path.exists() else ""
    except (OSError, UnicodeDecodeError) as error:
        st.error(f"{path} cannot be read ({error}): saving here replaces it.")
        text = ""
    with st.form("models_denylist"):
        text = st.text_area("Words and phrases taken out of every AI prompt, one a line (# starts a comment)", text,
                            height=160, placeholder="# brands\nNike\nCoca-Cola\n# people\nTaylor Swift",
                            help="Names of people and brands: removed from the prompt as typed and from the prompt "
                                 "assistant's text, in any case, as whole words; each generation says what was removed.")
        st.caption(f"Kept in {path}")
        if st.form_submit_button("Save the deny-list"):
            try:
                st.session_state.models_denylist_saved = len(user_settings.save_denylist(text))
                st.rerun()
            except BackdropError as error:
                st.error(str(error))


st.title("Models")
if not ui.is_admin():  # not in an ordinary user's navigation either (streamlit_app.py)
    st.error("The Models page is for admins: its settings apply to everyone's generations.")
    st.stop()
if st.session_state.pop("models_saved", False):
    st.success("Settings saved: new generations use these models.")
if "models_denylist_saved" in st.session_state:
    st.success(f"Deny-list saved: {st.session_state.pop('models_denylist_saved')} word(s) or phrase(s).")
request = ui.base_request()
status_table(request)
device_line(request)
st.subheader("Defaults")
settings_form(user_settings.load_settings())
st.subheader("Prompt deny-list")
denylist_form()
