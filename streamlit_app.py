"""Backdrop's browser app: navigation over the pages and the sidebar they share.

Run with ``streamlit run streamlit_app.py`` (add ``-- --batch-dir DIR`` to offer a server-side
folder on the Batch page). Pages live in ``pages/`` and only hold widgets; the work happens in
``core`` and ``storage``.
"""

import streamlit as st

from pages import ui

st.set_page_config(page_title="Backdrop", page_icon=":frame_with_picture:", layout="wide")

navigation = st.navigation(
    [
        st.Page("pages/studio.py", title="Studio", icon=":material/photo_camera:", default=True),
        st.Page("pages/history.py", title="History", icon=":material/history:"),
        st.Page("pages/batch.py", title="Batch", icon=":material/burst_mode:"),
        st.Page("pages/models.py", title="Models", icon=":material/memory:"),
    ]
)
ui.sidebar()
navigation.run()
