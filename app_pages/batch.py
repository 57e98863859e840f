"""Batch: many photos, one recipe. Each photo becomes a queued generation with the automatic
mask; the queue view follows them; the results download as one zip.

Photos come from the uploader, or from a folder on the server named on the command line
(``streamlit run streamlit_app.py -- --batch-dir DIR``).
"""

from pathlib import Path

import streamlit as st

from core.errors import BackdropError
from core.imaging import PHOTO_SUFFIXES
from app_pages import form, job_view, press, thumbs, ui
from storage import history
from storage.lifecycle import UNFINISHED, Status
from storage.progress import progress_text

state = st.session_state
FORM = "batch_f_"
THUMB_WIDTH = 150  # px on the page: two to a phone's row, many to a desktop's
MAX_THUMBS = 120  # shown on the page; the zip holds every result


def server_photos(folder: str | None) -> list[Path]:
    if not folder:
        return []
    root = Path(folder).expanduser()
    if not root.is_dir():
        st.error(f"The batch folder given on the command line does not exist: {root}")
        return []
    return sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES)


def collect_sources() -> list[tuple[str, bytes]]:
    limit = st.get_option("server.maxUploadSize")
    uploads = st.file_uploader(f"Photos (JPEG, PNG or WebP, up to {limit} MB each)", type=sorted(s[1:] for s in PHOTO_SUFFIXES),
                               accept_multiple_files=True, key="batch_uploads")
    sources = [(u.name, u.getvalue()) for u in uploads or []]
    folder = ui.batch_dir_argument()
    photos = server_photos(folder)
    if photos and st.checkbox(f"Include the {len(photos)} photo(s) in {folder}", value=True, key="batch_use_dir"):
        sources += [(p.name, p.read_bytes()) for p in photos]
    return sources


def start(sources: list[tuple[str, bytes]], request, picture: bytes | None, user) -> list[dict]:
    """One queued generation per photo (or the reason it was refused); touches no session state."""
    jobs = []
    for name, data in sources:
        try:
            jobs.append({"name": name, "id": job_view.submit(request, data, picture=picture, user=user), "error": None})
        except BackdropError as error:
            jobs.append({"name": name, "id": None, "error": str(error)})
    return jobs


def reopen(ids: str) -> None:
    """A reload (a new session) of ``?jobs=1,2,...``: the queue of that batch comes back (the
    user's own generations only; the photos' names are not kept, so they show as numbers)."""
    jobs = []
    for text in ids.split(","):
        try:
            generation_id = int(text)
            history.get(generation_id, user=ui.current_user())
        except (ValueError, history.NotFound):
            continue
        jobs.append({"name": f"generation {generation_id}", "id": generation_id, "error": None})
    if jobs:
        state.batch_jobs = jobs


def queue_rows(jobs: list[dict]) -> tuple[list[dict], list[tuple[str, object]]]:
    rows, views = [], []
    for job in jobs:
        if job["id"] is None:
            rows.append({"photo": job["name"], "generation": None, "status": "refused", "detail": job["error"]})
            continue
        view = history.get(job["id"], user=ui.current_user())
        fraction, label = (progress_text(view, job_view.workers().queue.place(view.id, user=ui.current_user()))
                           if view.status in UNFINISHED else (1.0, view.error or ""))
        rows.append({"photo": job["name"], "generation": view.id, "status": view.status,
                     "progress": round(fraction * 100), "detail": label})
        views.append((job["name"], view))
    return rows, views


def queue_table(rows: list[dict]) -> None:
    st.dataframe(rows, hide_index=True, width="stretch",
                 column_config={"progress": st.column_config.ProgressColumn("progress", min_value=0, max_value=100)})


def result_thumbnails(views: list[tuple[str, object]]) -> None:
    """Each finished photo's result, small, in the queue's order, as they finish (the store's
    cached thumbnails: nothing is decoded again when the page reruns)."""
    done = [(name, view) for name, view in views if view.status == Status.DONE]
    if not done:
        return
    with st.container(horizontal=True, gap="small", key="batch_thumbs"):
        for name, view in done[:MAX_THUMBS]:
            with st.container(width=THUMB_WIDTH, gap=None):
                picture = thumbs.thumbnail(view)
                if picture:
                    st.image(picture, width="stretch")  # the container's width, sent whole (sharp on a phone)
                else:
                    st.caption("(its files are gone)")
                label = f"#{view.id} {name}"  # the file's name is the user's text: plain text
                st.text(label[:18] + ("..." if len(label) > 18 else ""), help=label if len(label) > 18 else None)
    if len(done) > MAX_THUMBS:
        st.caption(f"The first {MAX_THUMBS} of {len(done)} results are shown; the zip holds them all.")


@st.fragment(run_every=1.0)
def live_queue() -> None:
    """Refreshes the table while jobs run; reruns the page once they have all finished."""
    rows, views = queue_rows(state.batch_jobs)
    active = [v for _, v in views if v.status in UNFINISHED]
    if not active:
        st.rerun()
    queue_table(rows)
    st.caption(f"{len(views) - len(active)} of {len(rows)} finished; working...")
    result_thumbnails(views)
    st.button("Cancel the rest", key="batch_cancel", icon=":material/cancel:", on_click=job_view.cancel,
              args=([view.id for view in active], ui.current_user()))


def finished_queue() -> None:
    rows, views = queue_rows(state.batch_jobs)
    queue_table(rows)
    done = [(name, v) for name, v in views if v.status == Status.DONE]
    st.caption(f"{len(done)} of {len(rows)} done")
    result_thumbnails(views)
    if done:
        st.download_button("Download results (zip)", history.results_zip(done), file_name="backdrop-batch.zip",
                           mime="application/zip", key="batch_zip", on_click="ignore", icon=":material/folder_zip:")


st.title("Batch")
st.caption("Every photo gets the same background recipe and its automatic cut-out.")
sources = collect_sources()
request, picture, reason = form.background_form(FORM, ui.base_request())
if reason:
    st.caption(f"Cannot start yet: {reason}.")
begin = press.press(f"Process {len(sources)} photo(s)", "batch_start", type="primary",
                    disabled=request is None or not sources, icon=":material/play_arrow:")
if begin.pending:
    if request is None or not sources:
        begin.settle(error=f"Start was pressed but cannot run: {reason or 'no photos'}.")
    else:
        user = ui.current_user()
        begin.settle(outcome=start(sources, request, picture, user))
begin.take_outcome(lambda jobs: state.__setitem__("batch_jobs", jobs))
if begin.error:
    st.error(begin.error)
reopen(ui.address_on_arrival("batch", "jobs") or "")
if state.get("batch_jobs"):
    st.query_params["jobs"] = ",".join(str(j["id"]) for j in state.batch_jobs if j["id"] is not None)
    st.subheader("Queue")
    statuses = [history.get(j["id"], user=ui.current_user()).status for j in state.batch_jobs if j["id"] is not None]
    if any(status in UNFINISHED for status in statuses):
        live_queue()
    else:
        finished_queue()
