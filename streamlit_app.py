"""Backdrop's browser app: navigation over the pages and the sidebar they share.

Run with ``streamlit run streamlit_app.py`` (add ``-- --batch-dir DIR`` to offer a server-side
folder on the Batch page). Pages live in ``app_pages/`` and only hold widgets; the work happens in
``core`` and ``storage``. The folder must not be called ``pages/``: Streamlit runs the files of a
``pages/`` folder as pages of their own until the first ``st.navigation`` call of the process, so
a page URL opened first after a restart would run without this script (no sidebar, narrow
layout, every module of the folder listed as a page).
"""

import streamlit as st

from app_pages import ui

st.set_page_config(page_title="Backdrop", page_icon=":frame_with_picture:", layout="wide")

navigation = st.navigation(
    [
        st.Page("app_pages/studio.py", title="Studio", icon=":material/photo_camera:", default=True),
        st.Page("app_pages/history.py", title="History", icon=":material/history:"),
        st.Page("app_pages/batch.py", title="Batch", icon=":material/burst_mode:"),
        st.Page("app_pages/models.py", title="Models", icon=":material/memory:"),
    ]
)
ui.sidebar()
navigation.run()
