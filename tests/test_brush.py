"""The brush: the canvas's strokes turned into the corrected mask, and the sizes it is drawn at."""

import numpy as np
from PIL import Image

from core.masks import brush


def strokes(size, add_box=None, erase_box=None) -> np.ndarray:
    """An RGBA drawing like the canvas returns: see-through green (add) and red (erase) paint."""
    drawing = np.zeros((size[1], size[0], 4), np.uint8)
    alpha = round(brush.STROKE_ALPHA * 255)
    for box, rgb in ((add_box, brush.ADD_RGB), (erase_box, brush.ERASE_RGB)):
        if box:
            x0, y0, x1, y1 = box
            drawing[y0:y1, x0:x1] = (*rgb, alpha)
    return drawing


def test_strokes_set_and_clear_the_mask_and_later_strokes_win():
    base = Image.fromarray(np.full((100, 200), 128, np.uint8))
    drawing = strokes((100, 50), add_box=(0, 0, 50, 50), erase_box=(40, 0, 100, 25))
    mask = np.asarray(brush.corrected_mask(base, drawing))  # drawn at half size, scaled up
    assert mask[80, 20] == 255  # added only
    assert mask[20, 150] == 0  # erased only
    assert mask[80, 150] == 128  # untouched
    # red painted over green: the canvas composites later strokes on top, the erase wins there
    assert mask[20, 90] == 0
    over = drawing.copy()
    over[0:25, 40:50] = (235, 200, 30, 200)  # a mixed edge pixel, red still dominating
    assert np.asarray(brush.corrected_mask(base, over))[20, 90] == 0
    assert brush.corrected_mask(base, None) is base


def test_display_size_keeps_aspect_and_limits():
    assert brush.display_size(1080, 1920) == (338, 600)
    assert brush.display_size(4000, 1000) == (540, 135)
    assert brush.display_size(300, 200) == (300, 200)  # never enlarged


def test_the_canvas_holds_more_pixels_than_it_is_shown_with_but_never_more_than_the_photo():
    assert brush.canvas_size((4000, 3000), (540, 405)) == (1620, 1215)  # 3 per pixel on the screen
    assert brush.canvas_size((680, 440), (358, 232)) == (680, 440)  # the photo's own
    assert brush.canvas_size((300, 200), (300, 200)) == (300, 200)


def test_click_and_box_marks_in_photo_pixels():
    """The canvas's objects for a click ("point" mode: a circle whose left edge sits radius +
    half a stroke left of the click) and a box ("rect" mode), read back as the pixels of the
    photo they were made on: a photo twice the canvas's size here."""
    click = {"type": "circle", "left": 40 - 7, "top": 30, "radius": 6, "strokeWidth": 2, "originX": "left",
             "originY": "center"}
    box = {"type": "rect", "left": 10, "top": 20, "width": 30.4, "height": 15, "originX": "left", "originY": "top",
           "scaleX": 1, "scaleY": 1}
    path = {"type": "path", "path": [["M", 1, 1], ["L", 5, 5]]}
    strokes_, marks = brush.marks({"objects": [path, click, box]})
    assert strokes_ == [path] and marks == [click, box]
    assert brush.mark_target(click, (800, 600), (400, 300)) == ("point", (80, 60))
    assert brush.mark_target(box, (800, 600), (400, 300)) == ("box", (20, 40, 81, 70))
    # a box dragged past the photo's edge is clipped to it; a click there stays on the last pixel
    assert brush.mark_target({**box, "left": 390, "width": 50}, (800, 600), (400, 300))[1][::2] == (780, 800)
    assert brush.mark_target({**click, "left": 500}, (800, 600), (400, 300))[1] == (799, 60)


def test_scale_drawing_follows_the_canvas_width():
    drawing = {"objects": [{"type": "path", "left": 10, "top": 20, "scaleX": 1, "scaleY": 1}], "background": ""}
    scaled = brush.scale_drawing(drawing, 0.5)
    assert scaled["objects"] == [{"type": "path", "left": 5.0, "top": 10.0, "scaleX": 0.5, "scaleY": 0.5}]
    assert scaled["background"] == "" and drawing["objects"][0]["left"] == 10  # the original untouched


def test_unsure_regions_outlined_and_numbered():
    overlay = Image.new("RGB", (100, 60), (0, 0, 0))
    labels = np.zeros((120, 200), np.uint8)
    labels[20:80, 40:120] = 1  # region 0, at twice the overlay's size
    out = np.asarray(brush.outline_regions(overlay, Image.fromarray(labels), 1))
    assert tuple(out[30, 59]) == brush.OUTLINE_RGB  # on its outline (right edge at x 59)
    assert tuple(out[25, 40]) == (0, 0, 0)  # inside it, away from the number and the outline
    assert tuple(out[5, 5]) == (0, 0, 0)  # outside it
    assert tuple(out[10, 21]) == brush.OUTLINE_RGB  # the number's box at the region's corner
    assert brush.outline_regions(overlay, None, 0) is overlay


def test_soft_strokes_are_told_apart_by_their_pale_colour_even_where_strokes_overlap():
    """A stroke painted over another covers it at 55%: the canvas's blend is still the later
    stroke's kind (add or erase, hard or soft)."""
    alpha = brush.STROKE_ALPHA

    def over(top, under):
        a = alpha + alpha * (1 - alpha)
        rgb = [(alpha * t + alpha * (1 - alpha) * u) / a for t, u in zip(top, under)]
        return (*[round(v) for v in rgb], round(a * 255))

    colours = {"add": brush.ADD_RGB, "erase": brush.ERASE_RGB, "soft_add": brush.SOFT_ADD_RGB,
               "soft_erase": brush.SOFT_ERASE_RGB}
    for top, rgb in colours.items():
        for under_rgb in colours.values():
            drawing = np.array([[(*rgb, round(alpha * 255)), over(rgb, under_rgb)]], np.uint8)
            kinds = brush.stroke_masks(drawing, (2, 1))
            assert [name for name, where in kinds.items() if where.all()] == [top], (top, under_rgb)
    assert brush.stroke_color("add", soft=True) in brush.SOFT_COLORS
    assert brush.stroke_color("erase") not in brush.SOFT_COLORS


def test_a_soft_stroke_fades_from_its_middle_to_its_edge_at_the_photos_scale():
    """A soft add stroke 20 canvas px wide on a canvas half the photo's size: in the photo it is
    40 px wide and fades in over 20 px from each edge (half its width); it takes nothing from
    the subject it does not cover, and does not fade where it runs off the photo."""
    base = Image.fromarray(np.zeros((100, 200), np.uint8))
    drawing = np.zeros((50, 100, 4), np.uint8)
    drawing[15:35, :60] = (*brush.SOFT_ADD_RGB, round(brush.STROKE_ALPHA * 255))  # from the photo's left edge
    stroke = {"type": "path", "stroke": brush.stroke_color("add", soft=True), "strokeWidth": 10, "scaleX": 2}
    reach = brush.soft_reach([stroke, {"type": "path", "stroke": brush.stroke_color("add"), "strokeWidth": 90}],
                             (100, 50), (200, 100))
    assert reach == 20  # 10 px scaled twice on the canvas: 20 canvas px, half of it at twice the size
    mask = np.asarray(brush.corrected_mask(base, drawing, reach)).astype(int)
    column = mask[30:70, 40]
    assert column[19] == 255 and column[20] == 255 and column[0] < 20 and column[-1] < 20
    assert np.all(np.diff(column[:20]) >= 0) and np.all(np.diff(column[20:]) <= 0) and 100 < column[9] < 160
    assert mask[50, 0] == 255  # the photo's edge is not the stroke's edge
    assert 0 < mask[50, 110] < 255 and mask[50, 121] == 0  # its own end fades; past it nothing
    assert mask[20, 40] == 0 and mask[80, 40] == 0
    assert brush.soft_reach([stroke], None, (200, 100)) == 0 and brush.soft_reach([], (100, 50), (200, 100)) == 0


def test_outlines_and_numbers_on_a_canvas_shown_scaled_down_are_as_large_on_the_screen():
    """A canvas shown at a third of its pixels gets outlines and numbers three times as large."""
    labels = np.zeros((60, 100), np.uint8)
    labels[10:50, 20:80] = 1
    overlay = Image.new("RGB", (300, 180), (0, 0, 0))
    out = np.asarray(brush.outline_regions(overlay, Image.fromarray(labels), 1, scale=3)).astype(int)
    on = (np.abs(out - brush.OUTLINE_RGB).max(axis=2) < 40)
    assert on[90, 234:240].all() and not on[90, 228:232].any()  # the right edge (x 239): 6 px wide
    assert on[30:78, 60:90].mean() > 0.5  # the number's box: 3x16 px high from the corner (60, 30)
    assert not on[90, 150]
