"""The Studio's mask editor without Streamlit (core.masks.editor): undo and redo across strokes,
selections and region flips, Clear and Reset, a new photo replacing everything, the canvas's
stale values, and the mask a generation is sent with.

A small photo with a rectangular subject and one unsure corner region stands in for the
segmenter (its analysis is exact, so every pixel's expected value is known); the canvas is
played as it behaves: it returns its objects with their pixels, and after a new drawing it
returns what it held before until it has reloaded.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from core.errors import InputError, ModelMissingError
from core.masks import brush
from core.masks.cleanup import UnsureRegion
from core.masks.editor import MaskEditor
from core.masks.segment import MaskAnalysis

SIZE = (40, 30)  # the photo's size, and the canvas's: one canvas pixel is one photo pixel
SUBJECT = (10, 5, 30, 25)  # what the automatic mask keeps
UNSURE = (0, 0, 6, 6)  # the region it was unsure about, dropped unless decided otherwise
CLICKED = (32, 0, 40, 5)  # the region a click or box selects
ADD = ("add", (0, 22, 5, 27))  # a brush stroke adding a patch of background
ERASE = ("erase", (15, 10, 20, 15))  # one erasing a patch of the subject
SOFT_ERASE = ("soft_erase", (12, 9, 28, 21))  # the soft brush across the subject, 12 px wide


def box_mask(*boxes) -> Image.Image:
    values = np.zeros((SIZE[1], SIZE[0]), np.uint8)
    for x0, y0, x1, y1 in boxes:
        values[y0:y1, x0:x1] = 255
    return Image.fromarray(values, "L")


def at(mask: Image.Image, box) -> int:
    """The mask's value inside ``box`` (one value, or an assertion error)."""
    x0, y0, x1, y1 = box
    (value,) = np.unique(np.asarray(mask)[y0:y1, x0:x1])
    return int(value)


class Analyser:
    """analyse_mask's stand-in: the subject, and the unsure corner kept only when decided so."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __call__(self, photo, segmenter, decisions=None) -> MaskAnalysis:
        self.calls.append((photo.size, segmenter, dict(decisions or {})))
        kept = (decisions or {}).get(0, False)
        labels = box_mask(UNSURE).point(lambda v: 1 if v else 0)
        return MaskAnalysis(box_mask(SUBJECT, *([UNSURE] if kept else [])), (UnsureRegion(0, UNSURE, 0.03, 0.3, kept),),
                            labels)


def png(rgb=(120, 90, 60)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", SIZE, rgb).save(buffer, format="PNG")
    return buffer.getvalue()


RGB = {"add": brush.ADD_RGB, "erase": brush.ERASE_RGB, "soft_add": brush.SOFT_ADD_RGB,
       "soft_erase": brush.SOFT_ERASE_RGB}


def drawing(*paints) -> dict:
    """The canvas's objects for ``paints``: a stroke as wide as its box is high, in its colour."""
    return {"objects": [{"type": "path", "mode": mode, "box": list(box), "strokeWidth": box[3] - box[1],
                         "stroke": brush.stroke_color(mode.removeprefix("soft_"), mode.startswith("soft_"))}
                        for mode, box in paints]}


def pixels(*paints) -> np.ndarray:
    """The RGBA image the canvas renders for brush strokes ``paints`` ((mode, box), in order)."""
    image = np.zeros((SIZE[1], SIZE[0], 4), np.uint8)
    for mode, (x0, y0, x1, y1) in paints:
        image[y0:y1, x0:x1] = (*RGB[mode], round(brush.STROKE_ALPHA * 255))
    return image


def canvas_shows(editor: MaskEditor, *paints) -> None:
    """The canvas returns the strokes ``paints``: their objects and their pixels."""
    editor.canvas_returned(drawing(*paints), pixels(*paints))


def select_clicked(editor: MaskEditor, mode: str = "add") -> None:
    editor.select(mode, ("box", CLICKED), box_mask(CLICKED))


@pytest.fixture
def analyser():
    return Analyser()


@pytest.fixture
def editor(analyser):
    editor = MaskEditor(analyse=analyser)
    editor.open(png(), "photo.png", "u2netp")
    editor.fit(SIZE)
    editor.canvas_returned(None, None)  # the fresh canvas has sent nothing yet
    return editor


def test_a_new_photo_starts_from_its_automatic_mask(editor, analyser):
    assert editor.photo.size == SIZE and editor.name == "photo.png" and editor.photo_bytes == png()
    assert analyser.calls == [(SIZE, "u2netp", {})]
    assert np.array_equal(np.asarray(editor.mask()), np.asarray(box_mask(SUBJECT)))
    assert editor.sent_mask() is None  # the automatic mask: the pipeline records it as such
    assert not editor.can_undo and not editor.can_redo and editor.parent is None
    assert not editor.region_kept(0)


def test_strokes_correct_the_mask_and_are_sent(editor):
    canvas_shows(editor, ADD)
    canvas_shows(editor, ADD, ERASE)
    mask = editor.mask()
    assert at(mask, ADD[1]) == 255 and at(mask, ERASE[1]) == 0 and at(mask, (20, 20, 25, 25)) == 255
    assert editor.sent_mask() is mask and editor.can_undo
    assert [o["mode"] for o in editor.strokes] == ["add", "erase"]
    canvas_shows(editor, ADD, ERASE)  # the same drawing again (any rerun): nothing new to record
    editor.undo()
    editor.undo()
    assert not editor.can_undo


def test_undo_and_redo_across_strokes_selections_and_region_flips(editor, analyser):
    canvas_shows(editor, ADD)
    select_clicked(editor)
    editor.flip(0)
    canvas_shows(editor, ADD, ERASE)
    assert analyser.calls[-1] == (SIZE, "u2netp", {0: True})
    full = editor.mask()
    assert [at(full, box) for box in (ADD[1], CLICKED, UNSURE, ERASE[1])] == [255, 255, 255, 0]

    editor.undo()  # the erasing stroke: the canvas is handed the drawing without it
    assert editor.canvas["objects"] == drawing(ADD)["objects"]
    canvas_shows(editor, ADD, ERASE)  # ...and returns what it held until it has reloaded: ignored
    assert editor.strokes == drawing(ADD)["objects"]
    canvas_shows(editor, ADD)  # reloaded
    assert at(editor.mask(), ERASE[1]) == 255
    editor.undo()  # the selection; the flipped region stays flipped, the stroke stays
    assert not editor.selections and at(editor.mask(), CLICKED) == 0
    assert at(editor.mask(), UNSURE) == 255 and at(editor.mask(), ADD[1]) == 255
    editor.undo()  # the adding stroke: no strokes left, so none are painted
    assert editor.canvas["objects"] == [] and at(editor.mask(), ADD[1]) == 0
    assert not editor.can_undo and editor.decisions == {0: True}
    editor.undo()  # nothing left: nothing happens
    assert at(editor.mask(), UNSURE) == 255

    editor.redo()
    assert editor.canvas["objects"] == drawing(ADD)["objects"]
    canvas_shows(editor, ADD)
    editor.redo()
    assert at(editor.mask(), CLICKED) == 255
    editor.redo()
    assert editor.canvas["objects"] == drawing(ADD, ERASE)["objects"]
    canvas_shows(editor, ADD, ERASE)
    assert np.array_equal(np.asarray(editor.mask()), np.asarray(full)) and not editor.can_redo

    editor.undo()
    canvas_shows(editor, ADD)
    select_clicked(editor, "remove")  # something new: what was undone cannot come back
    assert not editor.can_redo and at(editor.mask(), CLICKED) == 0


def test_flipping_a_region_twice_brings_the_automatic_mask_back(editor):
    editor.flip(0)
    assert editor.region_kept(0) and at(editor.mask(), UNSURE) == 255
    assert editor.sent_mask() is not None
    editor.flip(0)
    assert not editor.region_kept(0) and editor.decisions == {0: False}
    assert editor.sent_mask() is None
    assert not editor.can_undo  # a flip is taken back by flipping again, not by Undo


def test_clear_removes_the_strokes_and_reset_everything(editor):
    canvas_shows(editor, ADD)
    select_clicked(editor)
    canvas_shows(editor, ADD, ERASE)
    editor.flip(0)
    nonce = editor.canvas["backdrop_nonce"]
    editor.clear()
    assert editor.canvas["objects"] == [] and editor.canvas["backdrop_nonce"] != nonce
    assert at(editor.mask(), ADD[1]) == 0 and at(editor.mask(), ERASE[1]) == 255  # unpainted at once
    assert at(editor.mask(), CLICKED) == 255 and editor.region_kept(0)  # selections and flips stay
    assert not editor.can_redo
    editor.undo()  # what is left to undo: the selection
    assert not editor.selections and not editor.can_undo

    select_clicked(editor)
    editor.reset()
    assert not editor.selections and editor.decisions == {} and not editor.can_undo and not editor.can_redo
    assert np.array_equal(np.asarray(editor.mask()), np.asarray(editor.auto_mask))
    assert editor.sent_mask() is None


def test_after_clear_or_reset_the_automatic_mask_is_sent(editor):
    """After Clear the canvas still sends a drawing: an empty one, with empty pixels. Before it has
    reloaded, it sends the strokes it held: ignored."""
    canvas_shows(editor, ADD)
    assert editor.sent_mask() is not None
    editor.clear()
    canvas_shows(editor, ADD)  # stale
    assert editor.sent_mask() is None
    editor.canvas_returned({"objects": []}, np.zeros((SIZE[1], SIZE[0], 4), np.uint8))
    assert editor.sent_mask() is None and not editor.can_undo

    canvas_shows(editor, ERASE)
    select_clicked(editor)
    editor.reset()
    canvas_shows(editor, ERASE)  # stale
    editor.canvas_returned({"objects": []}, np.zeros((SIZE[1], SIZE[0], 4), np.uint8))
    assert editor.sent_mask() is None


def test_a_new_photo_replaces_everything(editor, analyser):
    editor.open(png(), "generation 5", "u2netp", mask=box_mask((0, 0, 40, 30)), parent=5)  # a remix
    canvas_shows(editor, ADD)
    select_clicked(editor)
    editor.flip(0)
    editor.undo()
    editor.notice = "the last click selected nothing"
    nonce = editor.canvas["backdrop_nonce"]
    other = png((10, 200, 10))
    editor.open(other, "second.png", "isnet-general-use")
    assert editor.photo_bytes == other and editor.name == "second.png"
    assert editor.photo.getpixel((0, 0)) == (10, 200, 10) and editor.parent is None
    assert analyser.calls[-1] == (SIZE, "isnet-general-use", {})
    assert editor.selections == [] and editor.decisions == {} and editor.strokes == [] and editor.painted is None
    assert editor.notice is None and not editor.can_undo and not editor.can_redo
    assert editor.canvas["objects"] == [] and editor.canvas["backdrop_nonce"] != nonce
    assert editor.sent_mask() is None  # the new photo's automatic mask, not the remixed one's
    canvas_shows(editor, ADD)  # the canvas still holds the first photo's stroke until it has reloaded
    assert editor.strokes == [] and editor.sent_mask() is None and not editor.can_undo
    editor.flip(0)
    assert analyser.calls[-1] == (SIZE, "isnet-general-use", {0: True})  # the photo's own segmenter


def test_a_file_that_is_not_a_photo_keeps_the_photo_until_closed(editor):
    canvas_shows(editor, ADD)
    with pytest.raises(InputError, match="notes.txt"):
        editor.open(b"not an image", "notes.txt", "u2netp")
    assert editor.name == "photo.png" and editor.can_undo
    editor.close()
    assert editor.photo is None and editor.photo_bytes is None and editor.analysis is None and not editor.can_undo


def test_a_recorded_mask_is_where_a_reopened_generation_starts(analyser):
    recorded = box_mask((5, 5, 35, 25))
    editor = MaskEditor(analyse=analyser)
    editor.open(png(), "generation 7", "u2netp", mask=recorded, parent=7)
    assert editor.parent == 7
    assert np.array_equal(np.asarray(editor.sent_mask()), np.asarray(recorded))
    select_clicked(editor)
    assert at(editor.mask(), CLICKED) == 255 and at(editor.mask(), (5, 5, 10, 25)) == 255
    editor.reset()  # Reset goes to the automatic mask, not the recorded one
    assert editor.sent_mask() is None and editor.parent == 7


def test_clicks_and_boxes_become_selections_and_leave_the_canvas(editor):
    found = []

    def find(photo, kind, target):
        found.append((kind, target))
        return box_mask(CLICKED)

    click = {"type": "circle", "left": 30, "top": 0, "radius": 3, "strokeWidth": 2}
    sent = {"objects": drawing(ADD)["objects"] + [click]}
    nonce = editor.canvas["backdrop_nonce"]
    editor.take_marks(sent, "add", find)
    assert found == [brush.mark_target(click, SIZE, SIZE)] == [("point", (34, 4))]
    assert [s.target for s in editor.selections] == found and editor.selections[0].mode == "add"
    assert editor.canvas["objects"] == drawing(ADD)["objects"] and editor.canvas["backdrop_nonce"] != nonce
    editor.canvas_returned(sent, pixels(ADD))  # the drawing with the click, until the canvas reloads
    assert editor.strokes == drawing(ADD)["objects"] and editor.can_undo
    editor.take_marks(drawing(ADD), "add", find)  # no clicks or boxes: nothing to do
    assert len(found) == 1

    def no_model(photo, kind, target):
        raise ModelMissingError("Segment Anything's weights are not on this machine")

    box = {"type": "rect", "left": 0, "top": 0, "width": 10, "height": 10}
    editor.take_marks({"objects": [box]}, "remove", no_model)
    assert editor.notice == "Segment Anything's weights are not on this machine" and len(editor.selections) == 1
    assert editor.canvas["objects"] == []  # the box is taken off all the same
    editor.take_marks({"objects": [box]}, "remove", find)
    assert editor.notice is None and editor.selections[-1].target == ("box", (0, 0, 10, 10))
    assert at(editor.mask(), CLICKED) == 0


def test_the_canvas_follows_the_screen_and_a_fresh_canvas_gets_the_strokes(editor):
    stroke = {"type": "path", "left": 10, "top": 4, "scaleX": 1, "scaleY": 1}
    editor.canvas_returned({"objects": [stroke]}, pixels(ADD))
    editor.fit(SIZE)  # the same size: nothing changes
    assert editor.strokes == [stroke]
    editor.fit((80, 60))
    assert editor.canvas["objects"] == [{"type": "path", "left": 20.0, "top": 8.0, "scaleX": 2.0, "scaleY": 2.0}]
    nonce = editor.canvas["backdrop_nonce"]
    editor.remount()  # back from another page: the canvas starts from the strokes as they are
    assert editor.canvas == {"objects": editor.strokes, "backdrop_nonce": nonce}


def test_the_canvas_background_is_encoded_once_per_base_mask_and_size(editor):
    first = editor.canvas_background(SIZE)
    assert Image.open(io.BytesIO(first)).size == SIZE and Image.open(io.BytesIO(first)).format == "JPEG"
    assert editor.canvas_background(SIZE) is first
    canvas_shows(editor, ADD)  # strokes are drawn over it by the canvas, not into it
    assert editor.canvas_background(SIZE) is first
    select_clicked(editor)
    second = editor.canvas_background(SIZE)
    assert second != first and editor.canvas_background((20, 15)) != second


def test_a_stroke_equal_to_the_previous_photos_stroke_is_applied(editor):
    """The canvas held the first photo's stroke; once it has reloaded (it returns the new, empty
    drawing), the same stroke painted on the next photo is a new stroke, not a stale value."""
    canvas_shows(editor, ADD)
    editor.open(png((10, 200, 10)), "second.png", "u2netp")
    canvas_shows(editor, ADD)  # stale: the canvas has not reloaded yet
    assert editor.strokes == [] and not editor.can_undo
    canvas_shows(editor)  # reloaded: the second photo's empty drawing
    canvas_shows(editor, ADD)  # the same path, painted on the second photo
    assert editor.strokes == drawing(ADD)["objects"] and editor.can_undo
    assert at(editor.mask(), ADD[1]) == 255 and editor.sent_mask() is not None
    editor.undo()
    canvas_shows(editor)
    assert at(editor.mask(), ADD[1]) == 0 and editor.sent_mask() is None


def test_strokes_a_remounted_canvas_lost_are_kept(editor):
    """The canvas's frontend was mounted afresh (Streamlit cleans a component up when two of its
    updates overlap, e.g. Brush size changed key by key): it starts from the drawing it was last
    handed (empty here), so the next stroke comes back alone. The stroke painted before stays in
    the mask, both are handed back to the canvas, and Undo takes them back one by one."""
    canvas_shows(editor, ADD)
    assert editor.canvas["objects"] == []  # never handed: the canvas drew it itself
    canvas_shows(editor, ERASE)  # remounted from the empty drawing, then ERASE painted on it
    assert editor.strokes == drawing(ADD, ERASE)["objects"]
    mask = editor.mask()
    assert at(mask, ADD[1]) == 255 and at(mask, ERASE[1]) == 0
    assert editor.canvas["objects"] == drawing(ADD, ERASE)["objects"], "the canvas is handed both"
    canvas_shows(editor, ERASE)  # stale until it has reloaded
    canvas_shows(editor, ADD, ERASE)  # reloaded with both
    assert editor.strokes == drawing(ADD, ERASE)["objects"] and np.array_equal(np.asarray(editor.mask()), np.asarray(mask))
    editor.undo()
    canvas_shows(editor, ADD)
    assert at(editor.mask(), ERASE[1]) == 255 and at(editor.mask(), ADD[1]) == 255
    editor.undo()
    canvas_shows(editor)
    assert at(editor.mask(), ADD[1]) == 0 and not editor.can_undo


def test_a_remounted_canvas_that_sends_only_its_handed_drawing_gets_the_strokes_back(editor):
    canvas_shows(editor, ADD)
    canvas_shows(editor, ADD, ERASE)
    editor.undo()  # hands [ADD]
    canvas_shows(editor, ADD)
    canvas_shows(editor, ADD, ERASE)  # painted again
    canvas_shows(editor, ADD)  # a fresh canvas from the handed [ADD]: ERASE is not lost
    assert editor.strokes == drawing(ADD, ERASE)["objects"] and at(editor.mask(), ERASE[1]) == 0
    assert editor.canvas["objects"] == drawing(ADD, ERASE)["objects"]


def test_a_soft_stroke_fades_into_the_mask_and_undo_and_redo_take_it(editor):
    """The soft brush: its stroke takes the subject away fully only along its middle, and less
    towards its edges (a soft alpha edge in the mask, half its width deep); Undo takes it back
    and Redo puts it back, values and all."""
    canvas_shows(editor, SOFT_ERASE)
    mask = np.asarray(editor.mask())
    column = mask[9:21, 20]  # across the stroke, through its middle
    assert column[5] == 0 and column[6] == 0  # 6 px from both edges: all of it
    assert 200 < column[0] < 255 and 200 < column[-1] < 255  # the edge rows: barely
    assert np.all(np.diff(column[:6].astype(int)) < 0) and np.all(np.diff(column[6:].astype(int)) > 0)
    assert 100 < column[2] < 160  # halfway in: about half
    assert at(mask, (10, 5, 30, 8)) == 255 and at(mask, (0, 0, 6, 6)) == 0  # outside the stroke: as before
    assert editor.sent_mask() is not None and editor.can_undo
    softened = mask.copy()
    editor.undo()
    assert np.array_equal(np.asarray(editor.mask()), np.asarray(box_mask(SUBJECT)))
    assert editor.sent_mask() is None
    editor.canvas_returned(drawing(SOFT_ERASE), pixels(SOFT_ERASE))  # stale: the canvas has not reloaded yet
    editor.canvas_returned({"objects": []}, np.zeros((SIZE[1], SIZE[0], 4), np.uint8))
    editor.redo()
    assert editor.canvas["objects"] == drawing(SOFT_ERASE)["objects"]
    canvas_shows(editor, SOFT_ERASE)  # the canvas reloaded with it
    assert np.array_equal(np.asarray(editor.mask()), softened)


def test_a_hard_stroke_over_a_soft_one_sets_the_mask(editor):
    canvas_shows(editor, SOFT_ERASE)
    canvas_shows(editor, SOFT_ERASE, ("add", (18, 9, 22, 21)))
    mask = editor.mask()
    assert at(mask, (18, 9, 22, 21)) == 255  # painted last, hard: all subject
    row = np.asarray(mask)[15].astype(int)
    assert 255 > row[12] > row[14] > row[16] >= 0  # the soft one beside it, fading in from its own edge
