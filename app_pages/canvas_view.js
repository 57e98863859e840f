// The Studio's canvas (streamlit-drawable-canvas, mounted by this wrapper) with zoom and pan.
//
// The view is a CSS transform of the canvas (translate, then scale from its top-left corner)
// inside a frame of the size it is shown at: nothing goes to the server to zoom, and the canvas's
// coordinates stay its own. The canvas holds more pixels than it is shown with (up to 3 per
// screen pixel: scaled down to fit), so zoomed in it stays sharp. Fabric.js maps each pointer through the
// canvas element's on-screen box (getBoundingClientRect, which includes the transform), so a
// stroke painted while zoomed is recorded, and rendered for the mask, where it lies on the photo.
// The brush keeps its size on the screen: its width on the canvas is divided by the scale it is
// shown at, so zooming in paints finer.
//
// Wheel: zoom at the pointer. Pinch: zoom (two fingers), in Move mode one finger pans. Pan with
// the middle button, with Space held, or in Move mode. Fit: the whole photo again. A finger that
// touches the canvas is held back for a moment (its touches replayed to the canvas after it),
// so that the first finger of a pinch paints nothing.

export const MIN_ZOOM = 1;
export const MAX_ZOOM = 8;
export const STEP = Math.SQRT2;  // one press of Zoom in or Zoom out
export const FIT = Object.freeze({ z: 1, x: 0, y: 0 });
const HOLD_MS = 120;  // a finger waits this long for a second one (a pinch) before it paints

// A point of the frame (CSS px from its top-left corner) on the canvas, in canvas px.
export function toCanvas(view, sx, sy) {
  return { x: (sx - view.x) / view.z, y: (sy - view.y) / view.z };
}

// The view with its zoom limited and its pan keeping the canvas over the whole frame (w x h).
export function clamp(view, w, h) {
  const z = Math.min(Math.max(view.z, MIN_ZOOM), MAX_ZOOM);
  return { z, x: Math.min(0, Math.max(w * (1 - z), view.x)), y: Math.min(0, Math.max(h * (1 - z), view.y)) };
}

// The view zoomed to ``z`` with the canvas point under (sx, sy) staying under it.
export function zoomAt(view, z, sx, sy, w, h) {
  const c = toCanvas(view, sx, sy);
  const zoom = Math.min(Math.max(z, MIN_ZOOM), MAX_ZOOM);
  return clamp({ z: zoom, x: sx - zoom * c.x, y: sy - zoom * c.y }, w, h);
}

// Two fingers moved from ``from`` to ``to`` (each [{x, y}, {x, y}] in frame px) on ``view``:
// the canvas point under their first midpoint follows their midpoint, scaled by their spread.
export function pinch(view, from, to, w, h) {
  const mid = (t) => ({ x: (t[0].x + t[1].x) / 2, y: (t[0].y + t[1].y) / 2 });
  const spread = (t) => Math.hypot(t[0].x - t[1].x, t[0].y - t[1].y) || 1;
  const c = toCanvas(view, mid(from).x, mid(from).y);
  const z = Math.min(Math.max(view.z * spread(to) / spread(from), MIN_ZOOM), MAX_ZOOM);
  const m = mid(to);
  return clamp({ z, x: m.x - z * c.x, y: m.y - z * c.y }, w, h);
}

// the frame and the zoom buttons, and their style: the component's own HTML is one empty element
// (what it is declared with is re-sent with every rerun; this module is fetched once)
const HTML = `
<div class="bd-frame"><div class="canvas-root"></div></div>
<div class="bd-zoom-bar" role="toolbar" aria-label="Zoom">
  <button type="button" class="bd-out" aria-label="Zoom out" title="Zoom out (mouse wheel, pinch)">&minus;</button>
  <span class="bd-level" aria-live="polite">100%</span>
  <button type="button" class="bd-in" aria-label="Zoom in" title="Zoom in (mouse wheel, pinch)">+</button>
  <button type="button" class="bd-fit" title="The whole photo">Fit</button>
  <button type="button" class="bd-move" aria-pressed="false"
          title="Drag to move the zoomed photo (or hold Space, or drag with the middle button)">Move</button>
</div>
`;

const CSS = `
.bd-frame { position: relative; overflow: hidden; touch-action: none; }
.bd-frame .dc-scroll { overflow: hidden !important; }
.bd-frame.bd-can-pan .dc-container { cursor: grab; }
.bd-frame.bd-can-pan .dc-container * { cursor: inherit !important; }
.bd-frame.bd-panning .dc-container { cursor: grabbing; }
.bd-zoom-bar { display: flex; align-items: center; gap: .35rem; padding-top: .35rem;
               font: .85rem sans-serif; color: var(--st-text-color, #31333f); }
.bd-zoom-bar button { min-width: 2.2rem; height: 2rem; padding: 0 .6rem; border-radius: .5rem; cursor: pointer;
                      border: 1px solid rgba(49, 51, 63, .2); background: var(--st-background-color, #fff);
                      color: inherit; font: inherit; }
.bd-zoom-bar button:disabled { opacity: .4; cursor: default; }
.bd-zoom-bar button[aria-pressed="true"] { border-color: var(--st-primary-color, #ff4b4b);
                                           color: var(--st-primary-color, #ff4b4b); }
.bd-level { min-width: 3.2rem; text-align: center; font-variant-numeric: tabular-nums; }
`;

let canvasModule = null;
const mounted = new WeakMap();
const replayed = new WeakSet();  // touch events this wrapper hands on to the canvas

function typing(target) {
  return target && (target.tagName === "INPUT" || target.tagName === "TEXTAREA" || target.isContentEditable);
}

function setUp(parentElement) {
  const root = parentElement.querySelector(".bd-zoom");
  const style = document.createElement("style");
  style.textContent = CSS;
  root.innerHTML = HTML;
  root.prepend(style);
  const frame = root.querySelector(".bd-frame");
  const level = root.querySelector(".bd-level");
  const buttons = {
    out: root.querySelector(".bd-out"), in: root.querySelector(".bd-in"),
    fit: root.querySelector(".bd-fit"), move: root.querySelector(".bd-move"),
  };
  const state = { view: { ...FIT }, key: null, size: null, moveMode: false, space: false, hover: false,
                  gesture: null, held: null, painting: false, base: 1, baseY: 1 };
  const size = () => ({ w: state.size[0], h: state.size[1] });
  const at = (clientX, clientY) => {
    const box = frame.getBoundingClientRect();
    return { x: clientX - box.left, y: clientY - box.top };
  };

  state.render = () => {
    const { z, x, y } = state.view;
    const container = frame.querySelector(".dc-container");
    if (container) {
      container.style.transformOrigin = "0 0";
      container.style.transform = `translate(${x}px, ${y}px) scale(${z * state.base}, ${z * state.baseY})`;
    }
    frame.dataset.zoom = String(z);
    frame.dataset.panX = String(x);
    frame.dataset.panY = String(y);
    level.textContent = `${Math.round(z * 100)}%`;
    buttons.out.disabled = z <= MIN_ZOOM;
    buttons.in.disabled = z >= MAX_ZOOM;
    buttons.fit.disabled = z === 1 && x === 0 && y === 0;
    buttons.move.setAttribute("aria-pressed", String(state.moveMode));
    frame.classList.toggle("bd-panning", Boolean(state.gesture && state.gesture.kind === "pan"));
    frame.classList.toggle("bd-can-pan", state.moveMode || state.space);
  };
  // the canvas, mounted or updated, with the brush's width divided by the scale it is shown at
  state.apply = () => {
    const c = state.component, d = c.data, z = state.view.z, scale = z * state.base;
    state.appliedZoom = z;
    const data = { ...d, strokeWidth: d.strokeWidth / scale, displayRadius: d.displayRadius / scale };
    const dispose = state.mount({ data, parentElement: c.parentElement, setStateValue: c.setStateValue,
                                  setTriggerValue: c.setTriggerValue });
    state.render();
    return dispose;
  };
  state.set = (view) => {
    const { w, h } = size();
    state.view = clamp(view, w, h);
    if (state.view.z !== state.appliedZoom) state.apply();
    else state.render();
  };
  const zoomBy = (factor, sx, sy) => {
    const { w, h } = size();
    state.set(zoomAt(state.view, state.view.z * factor, sx ?? w / 2, sy ?? h / 2, w, h));
  };
  buttons.in.onclick = () => zoomBy(STEP);
  buttons.out.onclick = () => zoomBy(1 / STEP);
  buttons.fit.onclick = () => state.set({ ...FIT });
  buttons.move.onclick = () => { state.moveMode = !state.moveMode; state.render(); };

  const onWheel = (event) => {
    const scale = event.deltaMode === 1 ? 0.05 : event.deltaMode === 2 ? 1 : 0.0015;
    const factor = Math.exp(-event.deltaY * scale);
    if (factor < 1 && state.view.z <= MIN_ZOOM) return;  // the whole photo shown: the page scrolls on
    event.preventDefault();
    event.stopPropagation();
    const p = at(event.clientX, event.clientY);
    zoomBy(factor, p.x, p.y);
  };
  // panning with the mouse: the middle button, Space held, or Move mode (the canvas never sees it)
  const onMouseMove = (event) => {
    const g = state.gesture;
    if (!g || g.kind !== "pan") return;
    event.stopPropagation();
    state.set({ ...state.view, x: g.view.x + event.clientX - g.x, y: g.view.y + event.clientY - g.y });
  };
  const onMouseUp = (event) => {
    if (!state.gesture) return;
    event.stopPropagation();
    state.gesture = null;
    window.removeEventListener("mousemove", onMouseMove, true);
    window.removeEventListener("mouseup", onMouseUp, true);
    state.render();
  };
  const onMouseDown = (event) => {
    if (!(event.button === 1 || (event.button === 0 && (state.space || state.moveMode)))) return;
    event.preventDefault();
    event.stopPropagation();
    state.gesture = { kind: "pan", x: event.clientX, y: event.clientY, view: { ...state.view } };
    window.addEventListener("mousemove", onMouseMove, true);
    window.addEventListener("mouseup", onMouseUp, true);
    state.render();
  };
  // fingers: two pinch (and move) the view; in Move mode one pans it. One finger otherwise paints:
  // held back (HOLD_MS) in case a second one follows, then its touches are replayed to the canvas
  const points = (touches) => Array.from(touches, (t) => at(t.clientX, t.clientY));
  const onTouchMove = (event) => {
    const g = state.gesture;
    if (!g) return;
    event.preventDefault();
    event.stopPropagation();
    const now = points(event.touches);
    const { w, h } = size();
    if (g.kind === "pinch" && now.length >= 2) state.set(pinch(g.view, g.from, now.slice(0, 2), w, h));
    else if (g.kind === "pan" && now.length === 1) {
      state.set({ ...state.view, x: g.view.x + now[0].x - g.from[0].x, y: g.view.y + now[0].y - g.from[0].y });
    }
  };
  const startGesture = (touches) => {
    const now = points(touches);
    state.gesture = now.length >= 2 ? { kind: "pinch", from: now.slice(0, 2), view: { ...state.view } }
      : { kind: "pan", from: now, view: { ...state.view } };
  };
  const onTouchEnd = (event) => {
    if (!state.gesture) return;
    event.stopPropagation();
    if (event.touches.length) {
      startGesture(event.touches);  // the fingers left go on from where the view is
      return;
    }
    state.gesture = null;
    window.removeEventListener("touchmove", onTouchMove, true);
    window.removeEventListener("touchend", onTouchEnd, true);
    window.removeEventListener("touchcancel", onTouchEnd, true);
    state.render();
  };
  const replay = (target, event) => {
    const copy = new TouchEvent(event.type, {
      bubbles: true, cancelable: true, composed: true, touches: Array.from(event.touches),
      targetTouches: Array.from(event.targetTouches), changedTouches: Array.from(event.changedTouches),
    });
    replayed.add(copy);
    target.dispatchEvent(copy);
  };
  const onHeld = (event) => {
    if (replayed.has(event) || !state.held) return;
    event.preventDefault();
    event.stopPropagation();
    state.held.events.push(event);
    if (event.type !== "touchmove") release();  // lifted (a tap): a dot, painted now
  };
  const unhold = () => {
    clearTimeout(state.held.timer);
    state.held = null;
    for (const type of ["touchmove", "touchend", "touchcancel"]) window.removeEventListener(type, onHeld, true);
  };
  const release = () => {
    const { events, target } = state.held;
    unhold();
    state.painting = true;
    events.forEach((event) => replay(target, event));
  };
  const onTouchStart = (event) => {
    if (replayed.has(event)) return;
    const fresh = event.touches.length === event.changedTouches.length;  // no finger was down before
    if (fresh) state.painting = false;
    if (state.painting) return;  // more fingers while one paints: the canvas ignores them
    event.preventDefault();
    event.stopPropagation();
    if (!state.gesture && !state.held && !state.moveMode && event.touches.length === 1) {
      // (its target now: once dispatched, an event from inside a shadow root forgets it)
      state.held = { events: [event], target: event.target, timer: setTimeout(release, HOLD_MS) };
      for (const type of ["touchmove", "touchend", "touchcancel"]) {
        window.addEventListener(type, onHeld, { capture: true, passive: false });
      }
      return;
    }
    if (state.held) unhold();  // a second finger: a pinch, and the first one paints nothing
    if (!state.gesture) {
      window.addEventListener("touchmove", onTouchMove, { capture: true, passive: false });
      window.addEventListener("touchend", onTouchEnd, true);
      window.addEventListener("touchcancel", onTouchEnd, true);
    }
    startGesture(event.touches);
  };
  const onKey = (event) => {
    if (event.key !== " " || typing(event.target)) return;
    const down = event.type === "keydown";
    if (down && !state.hover && !state.space) return;
    event.preventDefault();  // no page scroll while Space pans
    if (state.space !== down) {
      state.space = down;
      state.render();
    }
  };
  const onEnter = () => { state.hover = true; };
  const onLeave = () => { state.hover = false; };

  frame.addEventListener("wheel", onWheel, { capture: true, passive: false });
  frame.addEventListener("mousedown", onMouseDown, true);
  frame.addEventListener("touchstart", onTouchStart, { capture: true, passive: false });
  frame.addEventListener("mouseenter", onEnter);
  frame.addEventListener("mouseleave", onLeave);
  window.addEventListener("keydown", onKey, true);
  window.addEventListener("keyup", onKey, true);
  state.detach = () => {
    window.removeEventListener("keydown", onKey, true);
    window.removeEventListener("keyup", onKey, true);
    window.removeEventListener("mousemove", onMouseMove, true);
    window.removeEventListener("mouseup", onMouseUp, true);
    window.removeEventListener("touchmove", onTouchMove, true);
    window.removeEventListener("touchend", onTouchEnd, true);
    window.removeEventListener("touchcancel", onTouchEnd, true);
    if (state.held) unhold();
  };
  state.frame = frame;
  return state;
}

export default async function (component) {
  const { data, parentElement } = component;
  canvasModule = canvasModule || import(new URL(data.module, window.location.href).href);
  const mount = (await canvasModule).default;
  let state = mounted.get(parentElement);
  if (!state) {
    state = setUp(parentElement);
    mounted.set(parentElement, state);
  }
  state.component = component;
  state.mount = mount;
  const size = [data.shownWidth || data.canvasWidth, data.shownHeight || data.canvasHeight];
  if (state.key !== data.viewKey || !state.size || state.size[0] !== size[0] || state.size[1] !== size[1]) {
    state.key = data.viewKey;  // another photo, or the canvas resized with the screen: the whole photo
    state.view = { ...FIT };
  }
  state.size = size;
  // the canvas scaled down to the size it is shown at (each side rounded on its own: to the pixel)
  state.base = size[0] / data.canvasWidth;
  state.baseY = size[1] / data.canvasHeight;
  state.frame.style.width = `${size[0]}px`;
  state.frame.style.height = `${size[1]}px`;
  const dispose = state.apply();
  // Streamlit runs this both when the canvas leaves the page and when an update of it overlapped
  // the one before, still starting: the canvas's own clean-up disposes of its drawing, so it
  // may run only in the first case
  return () => setTimeout(() => {
    if (parentElement.isConnected) return;
    if (dispose) dispose();
    state.detach();
    mounted.delete(parentElement);
  }, 0);
}
