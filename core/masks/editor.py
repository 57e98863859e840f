"""The Studio's mask editor without Streamlit: a photo, its automatic mask and the user's
corrections, with undo and redo, and the mask a generation is sent with.

The masks it builds, each from the one before:
- *decided*: the automatic mask (core.masks.segment.analyse_mask) with the user's decisions on
  the regions it was unsure about (or, for a recorded generation opened again, its mask);
- *base*: the decided mask with every click or box selection (core.masks.click_select) combined
  onto it in order: what the brush paints on;
- *mask*: the base mask with the brush strokes (core.masks.brush), as the canvas rendered them
  (hard ones set the mask, soft ones fade into it from their edge).
Undo and Redo take back and put back strokes and selections in the order they were made; a
region is flipped back by flipping it again; Clear removes the strokes, Reset everything.

The canvas: the editor hands it a drawing (``canvas``: the strokes and a nonce that makes each
replacement a new drawing, which the canvas reloads even when the strokes are the same as an
earlier one's) and reads what it returns (``canvas_returned``). Until it has reloaded, the
canvas still returns what it held before: that value (``stale``) is ignored, and only until
the canvas has returned something else (the same stroke painted on the next photo is new). A
canvas whose frontend was mounted afresh starts from the drawing it was last handed: the
strokes it returned since and no longer holds are kept and handed back. The canvas's state
outlives a photo: a new photo (``open``) replaces everything else.

The Studio keeps one editor in its session and changes it only through these methods: each
change happens in one call, which Streamlit never interrupts (it abandons a run on an access of
session state or a drawing, when another rerun waits), so a page never sees half an edit.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image

from core.errors import BackdropError
from core.imaging import load_image
from core.masks import brush
from core.masks.click_select import combine
from core.masks.segment import MaskAnalysis, analyse_mask

# (photo, kind, target) -> the region Segment Anything finds: kind "point" with (x, y), or
# "box" with (x0, y0, x1, y1), in the photo's pixels; raises BackdropError when it cannot
FindRegion = Callable[[Image.Image, str, tuple], Image.Image]


@dataclass(frozen=True)
class Selection:
    """One click or box: the region Segment Anything found there, added to or removed from the mask."""

    mode: str  # "add" or "remove"
    target: tuple  # ("point", (x, y)) or ("box", (x0, y0, x1, y1)), in the photo's pixels
    region: Image.Image


def fingerprint(drawing: dict | None) -> str:
    """What a drawing the canvas returned holds, to tell a new one from a stale one."""
    objects = (drawing or {}).get("objects", [])
    return hashlib.sha1(json.dumps(objects, sort_keys=True, default=str).encode()).hexdigest()


class MaskEditor:
    """One photo's mask and its corrections (see the module docstring). ``analyse``: how the
    automatic mask is found (``analyse_mask``'s signature; tests pass a quicker one)."""

    def __init__(self, analyse: Callable[..., MaskAnalysis] = analyse_mask) -> None:
        self._analyse = analyse
        self._nonce = 0
        self.canvas: dict = {"objects": []}  # the drawing the canvas is (re)loaded with
        self.canvas_size: tuple[int, int] | None = None  # the canvas's own size, in its pixels
        self._seen: str | None = None  # fingerprint of what the canvas returned last
        self._stale: str | None = None  # ...and of what it returns until it has reloaded
        self._version = 0  # counts base masks: the canvas's background is encoded once per base mask
        self._forget_photo()

    def _forget_photo(self) -> None:
        self.photo: Image.Image | None = None
        self.photo_bytes: bytes | None = None
        self.name: str | None = None
        self.photo_sha: str | None = None
        self.segmenter: str | None = None
        self.analysis: MaskAnalysis | None = None
        self.parent: int | None = None  # the recorded generation this photo and mask came from
        self.decisions: dict[int, bool] = {}  # region index -> kept
        self.decided_mask: Image.Image | None = None
        self.selections: list[Selection] = []
        self.base_mask: Image.Image | None = None
        self.strokes: list[dict] = []  # the canvas's objects for the brush strokes
        self.painted: np.ndarray | None = None  # the strokes as the canvas rendered them (RGBA)
        self.notice: str | None = None  # why the last click or box selected nothing
        self._done: list[str] = []  # "stroke" or "select", in the order made: what Undo takes back
        self._undone: list[tuple[str, object]] = []  # what Redo puts back
        self._mask: Image.Image | None = None
        self._background: tuple | None = None  # (key, JPEG bytes) of the canvas's background

    # ------------------------------------------------------------ the photo

    def open(self, data: bytes, name: str, segmenter: str, mask: Image.Image | None = None,
             parent: int | None = None) -> None:
        """A new photo (``name``: what error messages call it): decode it and find its automatic
        mask, then replace everything the previous photo left. ``mask``: a recorded mask to start
        from instead of the automatic one; ``parent``: the generation it came from. Raises
        BackdropError (the previous photo kept) when the file is no photo or the mask cannot be
        found."""
        photo = load_image(data, what=name)
        analysis = self._analyse(photo, segmenter)
        self._forget_photo()
        self.photo, self.photo_bytes, self.name = photo, data, name
        self.photo_sha = hashlib.sha256(data).hexdigest()
        self.segmenter, self.analysis, self.parent = segmenter, analysis, parent
        self.decided_mask = analysis.mask if mask is None else mask
        self._rebuild()
        self._replace_strokes([])

    def close(self) -> None:
        """No photo any more (nothing may run on the previous one by mistake)."""
        self._forget_photo()

    @property
    def auto_mask(self) -> Image.Image:
        return self.analysis.mask

    # ------------------------------------------------------------ the masks

    def mask(self) -> Image.Image:
        """The corrected mask: what will be kept."""
        if self._mask is None:
            reach = brush.soft_reach(self.strokes, self.canvas_size, self.photo.size)
            self._mask = brush.corrected_mask(self.base_mask, self.painted, reach)
        return self._mask

    def sent_mask(self) -> Image.Image | None:
        """The mask a generation is sent with: None when it is the automatic one (the pipeline then
        computes and records it as automatic, with the segmenter's name), whatever was drawn and
        undone before."""
        mask = self.mask()
        return None if np.array_equal(np.asarray(mask), np.asarray(self.auto_mask)) else mask

    def _rebuild(self) -> None:
        base = self.decided_mask
        for selection in self.selections:
            base = combine(base, selection.region, selection.mode)
        self.base_mask, self._mask = base, None
        self._version += 1

    def canvas_background(self, size: tuple[int, int], scale: float = 1.0) -> bytes:
        """The canvas's background at ``size``: the photo with the base mask's tint and the unsure
        regions outlined, as a JPEG, encoded once per base mask and size. ``scale``: the canvas's
        pixels per pixel on the screen (``brush.outline_regions``)."""
        key = (self._version, size, scale)
        if self._background is None or self._background[0] != key:
            image = brush.outline_regions(brush.mask_overlay(self.photo, self.base_mask, size),
                                          self.analysis.labels, len(self.analysis.regions), scale)
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=90)
            self._background = key, buffer.getvalue()
        return self._background[1]

    # ------------------------------------------------------------ regions, selections

    def region_kept(self, index: int) -> bool:
        return self.decisions.get(index, self.analysis.regions[index].kept)

    def flip(self, index: int) -> None:
        """Keep a region the automatic mask dropped, or drop one it kept."""
        decisions = {**self.decisions, index: not self.region_kept(index)}
        decided = self._analyse(self.photo, self.segmenter, decisions).mask
        self.decisions, self.decided_mask = decisions, decided
        self._rebuild()

    def select(self, mode: str, target: tuple, region: Image.Image) -> None:
        """Add ``region`` to the mask (mode "add") or remove it ("remove"), for Undo to take back."""
        self.selections.append(Selection(mode, target, region))
        self._did("select")
        self._rebuild()

    def take_marks(self, drawing: dict | None, mode: str, find: FindRegion) -> None:
        """The canvas sent ``drawing``: each click or box on it becomes a selection (the region
        ``find`` finds there, or a ``notice`` saying why none) and is taken off the canvas."""
        painted, marks = brush.marks(drawing)
        if not marks:
            return
        for mark in marks:
            kind, target = brush.mark_target(mark, self.photo.size, self.canvas_size)
            try:
                region = find(self.photo, kind, target)
            except BackdropError as error:
                self.notice = str(error)
                continue
            self.notice = None
            self.select(mode, (kind, target), region)
        self._replace_strokes(painted, stale=fingerprint(drawing))

    # ------------------------------------------------------------ strokes and the canvas

    def canvas_returned(self, drawing: dict | None, image: np.ndarray | None) -> None:
        """What the canvas returned: its drawing's objects and their pixels (RGBA). New strokes
        are recorded for Undo; a stale value, or one with clicks or boxes still on it (taken off
        in ``take_marks``), is ignored. Strokes the canvas lost are kept (see ``_restore``)."""
        seen = fingerprint(drawing)
        self._seen = seen
        if drawing is None or image is None:  # None: a fresh canvas that has sent nothing yet
            return
        if seen == self._stale:
            return
        # the canvas has reloaded: from now on a drawing equal to what it held before is new (the
        # same stroke painted again, e.g. on the next photo), not stale
        self._stale = None
        painted, marks = brush.marks(drawing)
        if marks:
            return
        handed = len(self.canvas["objects"])
        if painted[handed:len(self.strokes)] != self.strokes[handed:]:
            self._restore(painted[handed:], image, seen)
            return
        for _ in range(len(painted) - len(self.strokes)):
            self._did("stroke")
        self.strokes, self.painted, self._mask = painted, image, None

    def _restore(self, new: list[dict], image: np.ndarray, seen: str) -> None:
        """The canvas came back without strokes it had returned before: its frontend was
        mounted afresh (Streamlit runs a component's clean-up when two of its updates overlap)
        from the drawing it was last handed, and ``new`` are the strokes painted on it since.
        Keep every stroke: the lost ones' pixels stay under the new ones', and the canvas is
        handed all of them."""
        for _ in new:
            self._did("stroke")
        if self.painted is not None and self.painted.shape == image.shape:
            image = np.asarray(Image.alpha_composite(Image.fromarray(self.painted), Image.fromarray(image)))
        strokes = self.strokes + new
        self._replace_strokes(strokes, stale=seen)
        self.painted, self._mask = image, None

    def remount(self) -> None:
        """A fresh canvas (the first view, or back from another page) starts from the strokes."""
        self.canvas = {"objects": list(self.strokes), "backdrop_nonce": self._nonce}

    def fit(self, size: tuple[int, int]) -> None:
        """The canvas follows the screen's width: when its size changes, the strokes scale with it."""
        before, self.canvas_size = self.canvas_size, size
        if before and before != size and self.strokes:
            self._replace_strokes(brush.scale_drawing({"objects": self.strokes}, size[0] / before[0])["objects"])

    def _replace_strokes(self, objects: list[dict], stale: str | None = None) -> None:
        """Hand the canvas a new drawing. Until it has reloaded, it returns what it held before
        (``stale``, by default the last value read), which is ignored."""
        self._nonce += 1
        self.strokes = list(objects)
        self.canvas = {"objects": list(objects), "backdrop_nonce": self._nonce}
        self._stale = stale or self._seen
        if not objects:
            self.painted, self._mask = None, None

    # ------------------------------------------------------------ undo, redo, clear, reset

    @property
    def can_undo(self) -> bool:
        return bool(self._done)

    @property
    def can_redo(self) -> bool:
        return bool(self._undone)

    def _did(self, action: str) -> None:
        self._done.append(action)
        self._undone = []

    def undo(self) -> None:
        """Take back the last stroke or selection."""
        if not self._done:
            return
        if self._done.pop() == "select":
            self._undone.append(("select", self.selections.pop()))
            self._rebuild()
        elif self.strokes:
            objects = list(self.strokes)
            self._undone.append(("stroke", objects.pop()))
            self._replace_strokes(objects)

    def redo(self) -> None:
        """Put back what Undo took."""
        if not self._undone:
            return
        kind, item = self._undone.pop()
        self._done.append(kind)
        if kind == "select":
            self.selections.append(item)
            self._rebuild()
        else:
            self._replace_strokes(self.strokes + [item])

    def clear(self) -> None:
        """Remove every brush stroke (the selections stay)."""
        self._done = [action for action in self._done if action != "stroke"]
        self._undone = []
        self._replace_strokes([])

    def reset(self) -> None:
        """Back to the automatic mask: no strokes, selections or region decisions."""
        self.decisions, self.selections, self._done, self._undone = {}, [], [], []
        self.decided_mask = self.auto_mask
        self._rebuild()
        self._replace_strokes([])
