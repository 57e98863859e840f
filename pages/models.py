"""Models: what each model slot resolves to, whether its weights are here, the device and
precision, the command that fetches what is missing; and the saved default models and device."""

import streamlit as st

from core import settings as user_settings
from core.errors import BackdropError
from core.models import model_status, resolve_device, torch_dtype
from pages import ui

SLOT_LABELS = {
    "segmenter": "Cut-out (rembg)",
    "inpaint": "Inpainting (Stable Diffusion)",
    "controlnet": "Depth ControlNet",
    "depth": "Depth estimator",
    "sam": "Click selection (Segment Anything)",
}


def status_table(request) -> None:
    rows = model_status(request, user_settings.load_settings()["sam_model"])
    st.dataframe(
        [
            {
                "slot": SLOT_LABELS.get(row["slot"], row["slot"]),
                "model": row["id"],
                "resolves to": row["resolved"] or "(not downloaded)",
                "present": "yes" if row["present"] else "NO",
                "to fetch": "" if row["present"] else row["fetch"],
            }
            for row in rows
        ],
        hide_index=True,
        width="stretch",
    )
    missing = [row for row in rows if not row["present"]]
    if missing:
        st.warning("Missing weights: run these in a terminal in the app's folder, then reload.")
        st.code("\n".join(sorted({row["fetch"] for row in missing})), language="bash")
    else:
        st.success("All weights are present.")


def device_line(request) -> None:
    try:
        device = resolve_device(request.device)
        st.text(f"Device setting: {request.device} -> runs on {device}, "
                f"precision {str(torch_dtype(device)).replace('torch.', '')}")
    except BackdropError as error:
        st.error(str(error))


def settings_form(current: dict[str, str]) -> None:
    with st.form("models_settings"):
        values = {
            "segmenter": st.text_input("Cut-out model (rembg name)", current["segmenter"]),
            "inpaint_model": st.text_input("Inpainting model (Hugging Face id or local folder)", current["inpaint_model"]),
            "controlnet_model": st.text_input("Depth ControlNet (id or folder)", current["controlnet_model"]),
            "depth_model": st.text_input("Depth estimator (id or folder)", current["depth_model"]),
            "sam_model": st.text_input("Click selection, Segment Anything (id or folder)", current["sam_model"]),
            "device": st.selectbox("Device", user_settings.DEVICES, index=user_settings.DEVICES.index(current["device"])
                                   if current["device"] in user_settings.DEVICES else 0),
        }
        st.caption("Leave a field empty to go back to the default. Saved to "
                   f"{user_settings.settings_path().resolve()}")
        if st.form_submit_button("Save settings", type="primary"):
            try:
                user_settings.save_settings(values)
                st.session_state.models_saved = True
                st.rerun()
            except BackdropError as error:
                st.error(str(error))


st.title("Models")
if st.session_state.pop("models_saved", False):
    st.success("Settings saved: new generations use these models.")
request = ui.base_request()
status_table(request)
device_line(request)
st.subheader("Defaults")
settings_form(user_settings.load_settings())
