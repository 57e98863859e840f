"""Backdrop's browser app: sign-in, navigation over the pages and the sidebar they share.

Run with ``backdrop app`` (or ``streamlit run streamlit_app.py``; add ``-- --batch-dir DIR`` to
offer a server-side folder on the Batch page). Pages live in ``app_pages/`` and only hold widgets;
the work happens in ``core`` and ``storage``. The folder must not be called ``pages/``: Streamlit
runs the files of a ``pages/`` folder as pages of their own until the first ``st.navigation``
call of the process, so a page URL opened first after a restart would run without this script
(no sign-in, no sidebar, the narrow layout, every module of the folder listed as a page).

Who may connect is decided here, before any page runs (storage.access): with accounts, a
sign-in form (or Streamlit's ``st.login`` where an OIDC provider is configured) gates every
page, and the session remembers the account; without them, on 127.0.0.1, one local user needs
none; served to a network without them, the app shows only why it refuses.
"""

import time

import streamlit as st
from streamlit.logger import get_logger

from app_pages import job_view, memory, ui
from storage import users
from storage.access import Policy

FAILED_SIGN_IN_DELAY_S = 1.0  # slows password guessing down (argon2 itself costs ~0.15 s a try)
sign_in_log = get_logger("backdrop.sign_in")  # with Streamlit's own lines, on the terminal of `make run`


def who_is_asking():
    """(the signed-in account, None) when the pages may run (the account is None without
    accounts), or (None, page): the one page this session may see, the sign-in or the refusal."""
    state = st.session_state
    policy = Policy.read()  # on each run, as Streamlit reads its secrets
    refusal = policy.refusal(st.get_option("server.address"))
    if refusal:
        return None, lambda: st.error(refusal)
    mode = policy.mode()
    if mode == "local":
        state.pop(ui.SIGNED_IN, None)
        return None, None
    user, page = _oidc_account() if mode == "oidc" else _password_account()
    if user is None:
        return None, page
    state[ui.SIGNED_IN] = user
    with st.sidebar:
        st.text(f"Signed in as {user.name}" + (" (admin)" if user.admin else ""))
        st.button("Sign out", key="sign_out", icon=":material/logout:", on_click=_sign_out, args=(mode,))
    return user, None


def _password_account():
    """The account this session signed in with, while it still exists with the same password;
    else the sign-in form."""
    state = st.session_state
    remembered = state.get(ui.SIGNED_IN)
    if remembered is not None:
        current = users.by_id(remembered.id)
        if current is not None and current.credentials_changed_at == remembered.credentials_changed_at:
            return current, None
        state.pop(ui.SIGNED_IN, None)
        state.sign_in_notice = "Your session ended (the account changed): sign in again."
    return None, _password_form


def _password_form() -> None:
    state = st.session_state
    st.title("Backdrop")
    if state.get("sign_in_notice"):
        st.info(state.sign_in_notice)
    with st.form("sign_in"):
        name = st.text_input("Name", key="sign_in_name", autocomplete="username")
        password = st.text_input("Password", type="password", key="sign_in_password", autocomplete="current-password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        name, address = name.strip(), st.context.ip_address or "an unknown address"
        try:
            user = users.sign_in(name, password)
        except users.SignInRefused as refused:
            sign_in_log.warning("sign-in refused for %r from %s: %s", name, address, refused)
            st.error(str(refused))
            return
        if user is not None:
            sign_in_log.info("signed in: %r from %s", user.name, address)
            state[ui.SIGNED_IN] = user
            state.pop("sign_in_notice", None)
            st.rerun()
        sign_in_log.warning("sign-in failed for %r from %s", name, address)
        time.sleep(FAILED_SIGN_IN_DELAY_S)
        st.error("Wrong name or password.")


def _oidc_account():
    """The account named by the e-mail the OIDC provider signed in (st.login / st.user); else
    the page that signs in, or says the account is not allowed."""
    if not st.user.is_logged_in:
        def sign_in_page() -> None:
            st.title("Backdrop")
            st.button("Sign in", type="primary", key="oidc_sign_in", on_click=st.login)

        return None, sign_in_page
    email = st.user.get("email") or ""
    try:
        return users.get(email), None
    except users.AccountError:
        def not_allowed_page() -> None:
            ui.user_error("This account may not use this Backdrop: an admin adds it with "
                          "`backdrop users add EMAIL --no-password`.", email or "(the provider gave no e-mail)")
            st.button("Sign out", key="oidc_sign_out", on_click=st.logout)

        return None, not_allowed_page


def _sign_out(mode: str) -> None:
    st.session_state.pop(ui.SIGNED_IN, None)
    if mode == "oidc":
        st.logout()


st.set_page_config(page_title="Backdrop", page_icon=":frame_with_picture:", layout="wide")
memory.start_reaper()
user, only = who_is_asking()
if only is not None:
    # a navigation of that one page: no other page is listed or reachable by its address
    st.navigation([st.Page(only, title="Sign in", url_path="sign-in", default=True)], position="hidden").run()
    st.stop()
pages = [
    st.Page("app_pages/studio.py", title="Studio", icon=":material/photo_camera:", default=True),
    st.Page("app_pages/history.py", title="History", icon=":material/history:"),
    st.Page("app_pages/batch.py", title="Batch", icon=":material/burst_mode:"),
]
if user is None or user.admin:  # its settings (models, device) apply to everyone's generations
    pages.append(st.Page("app_pages/models.py", title="Models", icon=":material/memory:"))
navigation = st.navigation(pages)
job_view.sidebar()
navigation.run()
