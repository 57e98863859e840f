"""History: every generation, newest first, with search and filters; a detail view with the
images, parameters, timings, models and lineage; re-run, remix, favourite, delete, export.

Prompts and errors are user text: they are shown with st.text / st.code / st.json, never as
Markdown or HTML.
"""

import datetime as dt
import tempfile
from pathlib import Path

import streamlit as st

from core.errors import BackdropError
from core.look.backgrounds import KINDS
from core.request import FIELDS, SCHEMA_VERSION
from app_pages import form, job_view, press, results, thumbs, ui
from storage import history
from storage.db import get_database
from storage.lifecycle import STATUSES, UNFINISHED, Status
from storage.progress import finished_text

state = st.session_state
PAGE_SIZE = 12
COLUMNS = 4


def filters() -> dict:
    search_col, status_col, kind_col, fav_col = st.columns([3, 2, 2, 1.4], vertical_alignment="bottom")
    from_col, to_col, _ = st.columns([1, 1, 2], vertical_alignment="bottom")  # wide enough for the whole date
    values: dict = {}
    values["search"] = search_col.text_input("Search prompts", key="history_search").strip() or None
    values["status"] = status_col.multiselect("Status", STATUSES, key="history_status") or None
    values["background"] = kind_col.selectbox("Background", [None, *KINDS], key="history_kind",
                                              format_func=lambda k: "any" if k is None else form.kind_label(k))
    values["favourite"] = True if fav_col.checkbox("Favourites", key="history_fav") else None
    # two boxes, each wide enough: one range box's placeholder was cut to "yyyy-mm-dd - yy"
    since = from_col.date_input("From", value=None, key="history_from", format="YYYY-MM-DD",
                                help="Generations made on this day (UTC) or later")
    until = to_col.date_input("To", value=None, key="history_to", format="YYYY-MM-DD",
                              help="Generations made on this day (UTC) or earlier")
    if since is not None:
        values["since"] = dt.datetime.combine(since, dt.time(), tzinfo=dt.timezone.utc)
    if until is not None:
        values["until"] = dt.datetime.combine(until + dt.timedelta(days=1), dt.time(), tzinfo=dt.timezone.utc)
    return {k: v for k, v in values.items() if v is not None}


def gallery(chosen: dict) -> int:
    """The cards of the generations ``chosen`` selects, a page at a time; returns how many there are."""
    total = history.count_generations(user=ui.current_user(), **chosen)
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(state.get("history_page", 0), pages - 1)
    views = history.list_generations(limit=PAGE_SIZE, offset=page * PAGE_SIZE, user=ui.current_user(), **chosen)
    st.caption(f"{total} generation(s); page {page + 1} of {pages}")
    if not views and chosen:
        st.info("No generation matches these filters: change or clear them to see more.")
    elif not views:
        st.info("Nothing here yet: generations made in the Studio or the Batch page appear here.")
    for start in range(0, len(views), COLUMNS):  # row by row: the cards of a row line up
        columns = st.columns(COLUMNS)
        for column, view in zip(columns, views[start:start + COLUMNS]):
            with column, st.container(border=True, key=f"history_card_{view.id}"):
                card_of(view)
    prev_col, next_col = st.columns(2)
    prev_col.button("Newer", disabled=page == 0, on_click=state.__setitem__, args=("history_page", page - 1),
                    key="history_prev", icon=":material/arrow_back:")
    next_col.button("Older", disabled=page >= pages - 1, on_click=state.__setitem__,
                    args=("history_page", page + 1), key="history_next", icon=":material/arrow_forward:")
    return total


def card_of(view) -> None:
    """One generation: picture, number, kind, status, date and one short line (the prompt's start,
    or the background), so the cards of a row have one height."""
    picture = thumbs.thumbnail(view)
    if picture:
        st.image(picture, width="stretch")
    star = " ★" if view.favourite else ""
    st.text(f"#{view.id} {form.kind_label(view.background_kind)} · {view.status}{star}")
    st.caption(f"{view.created_at:%Y-%m-%d %H:%M} UTC")
    line = " ".join(view.prompt.split()) or str(view.request.get("background", ""))
    st.text(line[:16] + ("..." if len(line) > 16 else ""), help=line if len(line) > 16 else None)
    st.button("Open", key=f"history_open_{view.id}", on_click=select, args=(view.id,))


def select(generation_id: int | None) -> None:
    """Open a generation (None: the list); what was pressed on the one open before is forgotten."""
    for key in ("history_rerun", "history_delete_yes"):
        state.pop(press.press_state_key(key), None)
    state.history_selected = generation_id
    state.history_confirm_delete = False


def detail(generation_id: int) -> None:
    try:
        view = history.get(generation_id, user=ui.current_user())
    except history.NotFound:
        st.warning(f"Generation {generation_id} no longer exists, or is not yours.")
        select(None)
        st.query_params.pop("id", None)
        return
    st.button("Back to all generations", on_click=select, args=(None,), icon=":material/arrow_back:",
              key="history_back")
    st.subheader(f"Generation #{view.id}")
    st.text(f"{view.status} · {form.kind_label(view.background_kind)} · "
            f"created {view.created_at:%Y-%m-%d %H:%M:%S} UTC" + (" · favourite" if view.favourite else ""))
    actions(view)
    left, right = st.columns([3, 2])
    with left:
        if view.status in UNFINISHED:
            job_view.job_progress(view.id, key="history")
        elif view.status == Status.DONE:
            if view.cancel_requested:
                st.warning(job_view.TOO_LATE.format(id=view.id, ran=finished_text(view)))
            else:
                st.caption(f"Done: {finished_text(view)}.")
            results.show_outputs(view, key=f"history_{view.id}")
        elif view.error:
            st.code(view.error, language=None, wrap_lines=True)
    with right:
        st.caption("Input photo")
        st.image(str(get_database().images.thumbnail(view.input_sha256, 512)))
        if view.timings:
            st.caption("Timings (seconds)")
            st.dataframe([{"stage": k, "seconds": round(float(v), 3)} for k, v in view.timings.items()],
                         hide_index=True)
        if view.models:
            st.caption(f"Models (device: {view.device or 'n/a'})")
            st.json(view.models, expanded=True)
        if not view.timings and not view.models and view.status in (Status.CANCELLED, Status.FAILED):
            st.caption("Nothing was recorded as run: it stopped before any stage finished.")
        lineage(view)
    parameters(view)


def parameters(view) -> None:
    """The prompts as typed and as they ran, every parameter from the request's field table
    (label, value, default), what ran (the run record) and the library versions."""
    try:
        request = view.generation_request()
    except BackdropError as error:
        ui.user_error("The stored request cannot be read:", str(error))
        return
    if request.prompt or request.negative_prompt:
        st.caption("Prompt")
        st.code(request.prompt, language=None, wrap_lines=True)
        prompt_as_it_ran(request, view.record)
        st.caption("Negative prompt")
        st.code(request.negative_prompt, language=None, wrap_lines=True)
        ran = view.record.get("negative_prompt")
        if ran is not None and ran != request.negative_prompt:
            st.caption("Negative prompt as it ran (with the standard quality terms)")
            st.code(ran, language=None, wrap_lines=True)
    st.caption(f"Every parameter (request version {SCHEMA_VERSION})")
    st.dataframe([{"parameter": spec.label, "value": str(getattr(request, spec.name)), "default": str(spec.default),
                   "changed": getattr(request, spec.name) != spec.default} for spec in FIELDS],
                 hide_index=True)
    record, versions = st.columns(2)
    for column, title, values in ((record, "What ran", view.record), (versions, "Library versions", view.versions)):
        if values:  # nothing ran (cancelled before it started): no empty {}
            column.caption(title)
            column.json(values, expanded=False)


def prompt_as_it_ran(request, record: dict) -> None:
    """The prompt the encoder read, when it is not the one typed: the prompt assistant's text
    (with its model, revision and time) and what the deny-list took out."""
    ran = record.get("prompt")
    if ran is None or ran == request.prompt:
        return
    assistant = record.get("prompt_assistant")
    st.caption("Prompt as it ran" + (", written by the prompt assistant from the prompt above" if assistant else
                                     ", after the deny-list"))
    st.code(ran, language=None, wrap_lines=True)
    if assistant:
        reused = " (written earlier, for the same words)" if assistant.get("cached") else ""
        st.text(f"{assistant['model']} @ {assistant['revision'] or '-'}: {assistant['tokens']} tokens in "
                f"{assistant['seconds']:.1f} s{reused}")
    removed = [*record.get("prompt_removed", ()), *(assistant or {}).get("removed_after", ())]
    if removed:
        st.text("Taken out by the deny-list: " + ", ".join(dict.fromkeys(removed)))


def lineage(view) -> None:
    st.caption("Lineage")
    if not view.ancestors and not view.children:
        st.text("An original: not a re-run or remix, and nothing made from it yet.")
    for label, ids in (("Made from", view.ancestors[:1]), ("Earlier ancestors", view.ancestors[1:]),
                       ("Re-runs and remixes of it", view.children)):
        if ids:
            st.text(label)
            cols = st.columns(min(len(ids), 6))
            for i, other in enumerate(ids):
                cols[i % len(cols)].button(f"#{other}", key=f"history_lineage_{view.id}_{other}",
                                           on_click=select, args=(other,))


def actions(view) -> None:
    user = ui.current_user()
    rerun_col, remix_col, fav_col, export_col, delete_col = st.columns(5)
    with rerun_col:
        again = press.press("Re-run", "history_rerun", icon=":material/replay:",
                            help="Same photo, mask and settings (same seed gives the same image)")
        if again.pending:
            rerun(again, view.id)
    if again.take_outcome(select):  # the new generation opens
        st.rerun()
    with remix_col:
        remix = press.press("Remix in Studio", "history_remix", icon=":material/tune:",
                            help="Open this photo and its settings in the Studio to change them")
        if remix.pending:
            state.studio_remix = view.id
            remix.settle()
            st.switch_page("app_pages/studio.py")
    fav_col.button("Unfavourite" if view.favourite else "Favourite", key="history_fav_toggle",
                   icon=":material/star:", on_click=history.set_favourite,
                   args=(view.id, not view.favourite), kwargs={"user": ui.current_user()})
    export_col.download_button("Export zip", lambda: export([view.id], user), file_name=f"backdrop-{view.id}.zip",
                               mime="application/zip", key="history_export_dl", on_click="ignore",
                               icon=":material/folder_zip:", help="Its images, request and run record, in one zip")
    if not state.get("history_confirm_delete"):
        delete_col.button("Delete", key="history_delete", icon=":material/delete:",
                          on_click=state.__setitem__, args=("history_confirm_delete", True))
    else:
        st.warning(f"Delete generation #{view.id} and its images? This cannot be undone.")
        yes, no = st.columns(2)
        with yes:
            delete = press.press("Yes, delete", "history_delete_yes", type="primary")
            if delete.pending:
                try:
                    history.delete(view.id, user=user)
                except BackdropError as error:
                    delete.settle(error=str(error))
                else:
                    delete.settle(outcome=view.id)
            if delete.take_outcome(lambda _deleted: select(None)):
                st.rerun()
            if delete.error:
                st.error(delete.error)
        no.button("Keep it", key="history_delete_no", on_click=state.__setitem__,
                  args=("history_confirm_delete", False))
    if again.error:
        st.error(again.error)


def rerun(again: press.Press, generation_id: int) -> None:
    """Re-run was pressed: queue the generation again as its child (the new one opens)."""
    user = ui.current_user()
    try:
        job = job_view.resubmit(generation_id, user=user)
    except BackdropError as error:
        again.settle(error=str(error))
    else:
        again.settle(outcome=job)


def export(ids: list[int] | None, user, **chosen) -> bytes:
    """The zip of ``user``'s generations ``ids`` (or those ``chosen`` selects), made when its
    download button is clicked (on a thread of its own: nothing here may read session state)."""
    with tempfile.TemporaryDirectory() as folder:
        path, _ = history.export(Path(folder) / "export.zip", ids=ids, user=user, **chosen)
        return path.read_bytes()


st.title("History")
address = ui.address_on_arrival("history", "id")  # a reload (a new session) of ?id=N opens generation N again
if address is not None and address.isdigit():
    select(int(address))
if state.get("history_selected"):
    st.query_params["id"] = str(state.history_selected)
    detail(state.history_selected)
else:
    st.query_params.pop("id", None)
    chosen = filters()
    if chosen != state.get("history_filters"):
        state.history_filters, state.history_page = chosen, 0
    total = gallery(chosen)
    if total:  # nothing to export from an empty list
        user = ui.current_user()
        st.download_button(f"Export {total} generation{'s' if total != 1 else ''} as a zip",
                           lambda: export(None, user, **chosen), file_name="backdrop-history.zip",
                           mime="application/zip", key="history_export_all_dl", on_click="ignore",
                           icon=":material/folder_zip:")
