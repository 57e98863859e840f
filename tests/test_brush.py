"""The brush: the canvas's strokes turned into the corrected mask, and the sizes it is drawn at."""

import numpy as np
from PIL import Image

from core import brush


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
