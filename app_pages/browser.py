"""What the pages need from the browser itself, as small components (Streamlit's components v2
with inline JavaScript: nothing to build, nothing fetched from a network).

- ``canvas``: streamlit-drawable-canvas's own canvas, mounted through a wrapper: Streamlit runs a
  component's clean-up when one update of it overlaps the previous one still starting (Brush
  size changed key by key), and the canvas's clean-up disposes of the drawing (the strokes
  vanished, issue 21); the wrapper disposes only once the canvas has left the page. Its photo
  goes by URL, and without its own hover toolbar (its undo and reset would bypass the Studio's,
  which also undo click selections). The wrapper (canvas_view.js) also zooms and pans it, in the
  browser alone.
- ``studio_helper``: the width the canvas may take (so it fits a phone's screen), the brush's
  keyboard shortcuts (Ctrl+Z undo, Ctrl+Shift+Z or Ctrl+Y redo; outside text fields, where the
  browser's own undo stays) and Enter in the prompt box to generate (Shift+Enter for a new line).
- ``tab_session``: this browser tab's sign-in token, kept in its ``sessionStorage`` (the tab's
  own: gone when it closes, never sent with a request, never in the address), read back after a
  reload so the tab comes back signed in (storage.sessions).
- ``compare``: a before/after slider over two images of the same size, fitted to the width or
  at 100% (one image pixel per screen pixel), on a checkerboard where the result is transparent.

Pictures reach these components as URLs of Streamlit's media endpoint (``media_url``), never
inside the page's messages: every rerun re-sends a component's data, and a photo in it made
each rerun tens to hundreds of kilobytes (see .streamlit/config.toml on the message cache).
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st
import streamlit_drawable_canvas
from streamlit.runtime import Runtime

_STUDIO_JS = r"""
const mounted = new WeakMap();

export default function (component) {
  const { parentElement, data } = component;
  let state = mounted.get(parentElement);
  if (state) {
    state.component = component;
    state.measure();
    return state.cleanup;
  }
  state = { component, width: null };
  mounted.set(parentElement, state);

  const host = parentElement instanceof ShadowRoot ? parentElement.host : parentElement;
  // report only what changes the canvas, and only when the app assumes another width: every
  // report reruns the page (a scrollbar coming and going must not; nor a desktop's first look)
  state.measure = () => {
    const d = state.component.data;
    const width = Math.min(Math.floor(host.getBoundingClientRect().width), d.max_width);
    if (width > 0 && width !== d.known && width !== state.width) {
      state.width = width;
      state.component.setStateValue("width", width);
    }
  };
  const resize = new ResizeObserver(() => state.measure());
  resize.observe(host);

  const trigger = (action) => state.component.setTriggerValue("key", action);
  const onKey = (event) => {
    const d = state.component.data;
    const target = event.target;
    const typing = target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.isContentEditable);
    const mod = (event.ctrlKey || event.metaKey) && !event.altKey;
    const key = (event.key || "").toLowerCase();
    if (mod && (key === "z" || key === "y")) {
      if (typing) return;  // the text field's own undo
      event.preventDefault();
      trigger(key === "y" || event.shiftKey ? "redo" : "undo");
      return;
    }
    if (key === "enter" && !event.shiftKey && !mod && !event.altKey && !event.isComposing && target
        && target.tagName === "TEXTAREA" && target.closest(d.prompt)) {
      event.preventDefault();
      target.blur();  // hands the typed text to the app first
      setTimeout(() => {
        const button = document.querySelector(d.generate);
        if (button && !button.disabled) button.click();
      }, 60);
    }
  };
  document.addEventListener("keydown", onKey, true);
  state.measure();

  // Streamlit also cleans up when an update overlapped the one before: only once off the page
  state.cleanup = () => setTimeout(() => {
    if (parentElement.isConnected || mounted.get(parentElement) !== state) return;
    resize.disconnect();
    document.removeEventListener("keydown", onKey, true);
    mounted.delete(parentElement);
  }, 0);
  return state.cleanup;
}
"""

_COMPARE_HTML = """
<div class="bd-compare">
  <div class="bd-scroll">
    <div class="bd-stage">
      <img class="bd-before" alt="before" draggable="false">
      <img class="bd-after" alt="after" draggable="false">
      <div class="bd-line"></div>
      <input class="bd-range" type="range" min="0" max="100" step="0.5" value="50"
             aria-label="Slide between before and after">
    </div>
  </div>
  <div class="bd-labels"><span>Before</span><span class="bd-caption"></span><span>After</span></div>
</div>
"""

_COMPARE_CSS = """
.bd-scroll { max-width: 100%; overflow: auto; }
.bd-stage { position: relative; line-height: 0; touch-action: pan-y;
            background: repeating-conic-gradient(#ccc 0% 25%, #fff 0% 50%) 0 0 / 20px 20px; }
.bd-stage.fit { width: 100%; }
.bd-stage.fit img { width: 100%; height: auto; }
.bd-stage.natural { width: max-content; }
.bd-stage.natural img { max-width: none; }
.bd-stage img { display: block; user-select: none; -webkit-user-select: none; }
.bd-after { position: absolute; top: 0; left: 0; }
.bd-line { position: absolute; top: 0; bottom: 0; width: 2px; margin-left: -1px; background: #fff;
           box-shadow: 0 0 0 1px rgba(0, 0, 0, .45); pointer-events: none; }
.bd-range { position: absolute; inset: 0; width: 100%; height: 100%; margin: 0; opacity: 0; cursor: ew-resize; }
.bd-labels { display: flex; justify-content: space-between; gap: .5rem; padding-top: .25rem;
             font: .8rem sans-serif; color: var(--st-text-color, #31333f); opacity: .75; }
"""

_COMPARE_JS = r"""
export default function ({ parentElement, data }) {
  const stage = parentElement.querySelector(".bd-stage");
  const before = parentElement.querySelector(".bd-before");
  const after = parentElement.querySelector(".bd-after");
  const line = parentElement.querySelector(".bd-line");
  const range = parentElement.querySelector(".bd-range");
  if (before.getAttribute("src") !== data.before) before.setAttribute("src", data.before);
  if (after.getAttribute("src") !== data.after) after.setAttribute("src", data.after);
  stage.className = "bd-stage " + (data.natural ? "natural" : "fit");
  parentElement.querySelector(".bd-caption").textContent = data.caption || "";
  const show = () => {
    const at = Number(range.value);  // before on the left of the line, after on the right
    before.style.clipPath = `inset(0 ${100 - at}% 0 0)`;
    after.style.clipPath = `inset(0 0 0 ${at}%)`;
    line.style.left = `${at}%`;
  };
  range.oninput = show;
  show();
}
"""


_TAB_SESSION_JS = r"""
const KEY = "backdrop.session";
const reported = new WeakMap();

export default function ({ data, parentElement, setStateValue }) {
  let kept = "";
  try {
    if (data.forget) window.sessionStorage.removeItem(KEY);
    else if (data.keep) window.sessionStorage.setItem(KEY, data.keep);
    kept = window.sessionStorage.getItem(KEY) || "";
  } catch (error) {
    kept = "";  // storage refused (the browser's settings): this tab signs in after each reload
  }
  if (data.ask && !reported.has(parentElement)) {  // once: a rerun more could take a click's place
    reported.set(parentElement, true);
    setStateValue("token", kept);
  }
}
"""

# the canvas with its zoom and pan (canvas_view.js), fetched once by URL: a component's inline
# script is re-sent with every rerun, this loader only
_CANVAS_VIEW_JS = (Path(__file__).parent / "canvas_view.js").read_bytes()
_CANVAS_JS = r"""
let view = null;

export default async function (component) {
  view = view || import(new URL(component.data.view, window.location.href).href);
  return (await view).default(component);
}
"""
_CANVAS_NAME = "streamlit-drawable-canvas.streamlit_drawable_canvas"
_CANVAS_CSS = (Path(streamlit_drawable_canvas.__file__).parent / "frontend" / "build" / "index-style.css").read_text()
_canvas = st.components.v2.component("backdrop_canvas", html='<div class="bd-zoom"></div>', js=_CANVAS_JS,
                                     css=_CANVAS_CSS + ".dc-toolbar { display: none !important; }")
_tab_session = st.components.v2.component("backdrop_tab_session", html="<div></div>", js=_TAB_SESSION_JS)
_helper = st.components.v2.component("backdrop_studio_helper", html="<div></div>", js=_STUDIO_JS, isolate_styles=False)
_compare = st.components.v2.component("backdrop_compare", html=_COMPARE_HTML, css=_COMPARE_CSS, js=_COMPARE_JS)


def served_path(path: str) -> str:
    """``path`` on this server as the browser reaches it (under ``server.baseUrlPath``)."""
    base = (st.get_option("server.baseUrlPath") or "").strip("/")
    return f"/{base}{path}" if base else path


def media_url(data: bytes, mimetype: str, where: str) -> str:
    """A URL the browser fetches ``data`` from (Streamlit's media endpoint, as ``st.image`` uses
    it): kept while the page's runs show it, forgotten after a run that no longer does.
    ``where``: a name for the place on the page (one file at a time per place)."""
    manager = Runtime.instance().media_file_mgr
    return served_path(manager.add(data, mimetype, f"backdrop.{where}"))


def canvas(*, key: str, background: bytes, width: int, height: int, initial_drawing: dict, drawing_mode: str,
           stroke_width: int, stroke_color: str, fill_color: str, point_display_radius: int = 3, on_change=None,
           shown: tuple[int, int] | None = None, view_key: str = ""):
    """streamlit-drawable-canvas's canvas (its arguments as ``st_canvas`` takes them, the ones
    the Studio uses; its photo ``background`` as JPEG bytes, sent by URL) returning its
    ``CanvasResult``: the drawing's objects and its pixels, in the canvas's own (unzoomed)
    pixels. ``shown``: the size it takes on the screen (default: its own, ``width`` x
    ``height``; smaller: scaled down, sharper when zoomed in). Zoom and pan happen in the
    browser (canvas_view.js); a new ``view_key`` (another photo) shows the whole photo again."""
    shown = shown or (width, height)
    drawing = {**initial_drawing, "background": ""}
    js = Runtime.instance().bidi_component_registry.get(_CANVAS_NAME).js_url
    data = {
        "module": served_path(f"/_stcore/bidi-components/{_CANVAS_NAME}/{js}"), "fillColor": fill_color,
        "strokeWidth": stroke_width, "strokeColor": stroke_color, "backgroundColor": "",
        "backgroundImageURL": media_url(background, "image/jpeg", f"{key}.background"),
        "realtimeUpdateStreamlit": drawing_mode != "polygon", "canvasWidth": width, "canvasHeight": height,
        "drawingMode": drawing_mode, "initialDrawing": drawing, "displayRadius": point_display_radius,
        "returnImageData": True, "disabled": False, "backgroundImageFit": "stretch", "maxDisplayHeight": None,
        "fontSize": 20, "label": "", "viewKey": view_key, "shownWidth": shown[0], "shownHeight": shown[1],
        "view": media_url(_CANVAS_VIEW_JS, "text/javascript", f"{key}.view"),
    }
    result = _canvas(data=data, key=key, default={"drawing": {"raw": drawing, "data": None}, "backgroundFit": None},
                     on_drawing_change=on_change or (lambda: None), on_backgroundFit_change=lambda: None,
                     width="content", height="content")
    sent = result.get("drawing") or {"raw": drawing, "data": None}
    return streamlit_drawable_canvas.CanvasResult(sent.get("raw"), sent.get("data"), True)


def tab_session(key: str, keep: str | None = None, forget: bool = False, ask: bool = False) -> str | None:
    """This tab's sign-in token: ``keep`` stores one, ``forget`` removes it; with ``ask`` the tab
    says which it holds ("" for none; None until it has said)."""
    result = _tab_session(key=key, data={"keep": keep, "forget": forget, "ask": ask}, default={"token": None},
                          on_token_change=lambda: None, height="content")
    return result.get("token")


def studio_helper(key: str, prompt_key: str, generate_key: str, max_width: int):
    """Mount the Studio's helper where the canvas goes; returns (the width in px the canvas may
    take: at most ``max_width``, which it is until the browser says otherwise; "undo", "redo"
    or None: the shortcut just pressed)."""
    known = (st.session_state.get(key) or {}).get("width") or max_width
    result = _helper(
        key=key, data={"prompt": f".st-key-{prompt_key}",
                       "generate": f".st-key-{generate_key} button", "max_width": max_width, "known": known},
        default={"width": None}, on_width_change=lambda: None, on_key_change=lambda: None, height="content",
    )
    return result.get("width") or max_width, result.get("key")


def compare(before: str, after: str, key: str, natural: bool = False, caption: str = "") -> None:
    """A before/after slider over two images (URLs, data: URLs included) of the same size: fitted
    to the width, or at 100% with ``natural`` (scrolls when wider than the screen)."""
    _compare(key=key, data={"before": before, "after": after, "natural": natural, "caption": caption})
