"""What the pages need from the browser itself, as two small components (Streamlit's components
v2 with inline JavaScript: nothing to build, nothing fetched from a network).

- ``studio_helper``: the width the canvas may take (so it fits a phone's screen), the brush's
  keyboard shortcuts (Ctrl+Z undo, Ctrl+Shift+Z or Ctrl+Y redo; outside text fields, where the
  browser's own undo stays), Enter in the prompt box to generate (Shift+Enter for a new line),
  and the canvas without its own hover toolbar (its undo and reset would bypass the Studio's,
  which also undo click selections).
- ``compare``: a before/after slider over two images of the same size, fitted to the width or
  at 100% (one image pixel per screen pixel), on a checkerboard where the result is transparent.
"""

from __future__ import annotations

import streamlit as st

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

  let queued = false;
  const hideCanvasToolbar = () => {
    queued = false;
    document.querySelectorAll(state.component.data.canvas).forEach((element) => {
      element.querySelectorAll("*").forEach((node) => {
        const root = node.shadowRoot;
        if (root && !root.querySelector("style[data-backdrop]")) {
          const style = document.createElement("style");
          style.dataset.backdrop = "";
          style.textContent = ".dc-toolbar { display: none !important; }";
          root.appendChild(style);
        }
      });
    });
  };
  const watch = new MutationObserver(() => {
    if (!queued) { queued = true; requestAnimationFrame(hideCanvasToolbar); }
  });
  watch.observe(document.body, { childList: true, subtree: true });
  hideCanvasToolbar();
  state.measure();

  state.cleanup = () => {
    resize.disconnect();
    watch.disconnect();
    document.removeEventListener("keydown", onKey, true);
    mounted.delete(parentElement);
  };
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


_helper = st.components.v2.component("backdrop_studio_helper", html="<div></div>", js=_STUDIO_JS, isolate_styles=False)
_compare = st.components.v2.component("backdrop_compare", html=_COMPARE_HTML, css=_COMPARE_CSS, js=_COMPARE_JS)


def studio_helper(key: str, canvas_key: str, prompt_key: str, generate_key: str, max_width: int):
    """Mount the Studio's helper where the canvas goes; returns (the width in px the canvas may
    take: at most ``max_width``, which it is until the browser says otherwise; "undo", "redo"
    or None: the shortcut just pressed)."""
    known = (st.session_state.get(key) or {}).get("width") or max_width
    result = _helper(
        key=key, data={"canvas": f".st-key-{canvas_key}", "prompt": f".st-key-{prompt_key}",
                       "generate": f".st-key-{generate_key} button", "max_width": max_width, "known": known},
        default={"width": None}, on_width_change=lambda: None, on_key_change=lambda: None, height="content",
    )
    return result.get("width") or max_width, result.get("key")


def compare(before: str, after: str, key: str, natural: bool = False, caption: str = "") -> None:
    """A before/after slider over two images (URLs, data: URLs included) of the same size: fitted
    to the width, or at 100% with ``natural`` (scrolls when wider than the screen)."""
    _compare(key=key, data={"before": before, "after": after, "natural": natural, "caption": caption})
