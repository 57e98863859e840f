"""Backdrop's browser app: sign-in, navigation over the pages and the sidebar they share.

Run with ``backdrop app`` (or ``streamlit run streamlit_app.py``; add ``-- --batch-dir DIR`` to
offer a server-side folder on the Batch page). Pages live in ``pages/`` and only hold widgets;
the work happens in ``core`` and ``storage``.

Who may connect is decided here, before any page runs (backdrop.access): with accounts, a
sign-in form (or Streamlit's ``st.login`` where an OIDC provider is configured) gates every
page, and the session remembers the account; without them, on 127.0.0.1, one local user needs
none; served to a network without them, the app shows only why it refuses.
"""

import time

import streamlit as st

from backdrop import access
from pages import ui
from storage import users

FAILED_SIGN_IN_DELAY_S = 1.0  # slows password guessing down (argon2 itself costs ~0.15 s a try)


def sign_in():
    """The signed-in account (``ui.current_user()``), or None without accounts; draws the
    sign-in and stops the run until someone signs in."""
    state = st.session_state
    refusal = access.refusal(st.get_option("server.address"))
    if refusal:
        st.error(refusal)
        st.stop()
    mode = access.mode()
    if mode == "local":
        state.pop(ui.SIGNED_IN, None)
        return None
    user = _oidc_account() if mode == "oidc" else _password_account()
    state[ui.SIGNED_IN] = user
    with st.sidebar:
        st.caption(f"Signed in as {ui.plain(user.name)}" + (" (admin)" if user.admin else ""))
        st.button("Sign out", key="sign_out", icon=":material/logout:", on_click=_sign_out, args=(mode,))
    return user


def _password_account():
    """The account this session signed in with, while it still exists with the same password."""
    state = st.session_state
    remembered = state.get(ui.SIGNED_IN)
    if remembered is not None:
        current = users.by_id(remembered.id)
        if current is not None and current.credentials_changed_at == remembered.credentials_changed_at:
            return current
        state.pop(ui.SIGNED_IN, None)
        state.sign_in_notice = "Your session ended (the account changed): sign in again."
    st.title("Backdrop")
    if state.get("sign_in_notice"):
        st.info(state.sign_in_notice)
    with st.form("sign_in"):
        name = st.text_input("Name", key="sign_in_name", autocomplete="username")
        password = st.text_input("Password", type="password", key="sign_in_password", autocomplete="current-password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        user = users.authenticate(name.strip(), password)
        if user is not None:
            state[ui.SIGNED_IN] = user
            state.pop("sign_in_notice", None)
            st.rerun()
        time.sleep(FAILED_SIGN_IN_DELAY_S)
        st.error("Wrong name or password.")
    st.stop()


def _oidc_account():
    """The account named by the e-mail the OIDC provider signed in (st.login / st.user)."""
    if not st.user.is_logged_in:
        st.title("Backdrop")
        st.button("Sign in", type="primary", key="oidc_sign_in", on_click=st.login)
        st.stop()
    email = st.user.get("email") or ""
    try:
        return users.get(email)
    except users.AccountError:
        st.error(f"{ui.plain(email) or 'This account'} may not use this Backdrop: an admin adds it with "
                 f"`backdrop users add {ui.plain(email) or 'EMAIL'} --no-password`.")
        st.button("Sign out", key="oidc_sign_out", on_click=st.logout)
        st.stop()


def _sign_out(mode: str) -> None:
    st.session_state.pop(ui.SIGNED_IN, None)
    if mode == "oidc":
        st.logout()


st.set_page_config(page_title="Backdrop", page_icon=":frame_with_picture:", layout="wide")
user = sign_in()
pages = [
    st.Page("pages/studio.py", title="Studio", icon=":material/photo_camera:", default=True),
    st.Page("pages/history.py", title="History", icon=":material/history:"),
    st.Page("pages/batch.py", title="Batch", icon=":material/burst_mode:"),
]
if user is None or user.admin:  # its settings (models, device) apply to everyone's generations
    pages.append(st.Page("pages/models.py", title="Models", icon=":material/memory:"))
navigation = st.navigation(pages)
ui.sidebar()
navigation.run()
