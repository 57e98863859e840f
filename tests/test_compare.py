"""How results are shown: transparency on a checkerboard, cards of one size, and the window on
the subject's edge that "Edge at 100%" shows."""

import numpy as np
from PIL import Image

from app_pages import compare


def test_transparency_on_a_checkerboard_and_opaque_images_as_they_are():
    rgba = Image.new("RGBA", (40, 20), (255, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (0, 0, 20, 20))
    shown = np.asarray(compare.on_checkerboard(rgba, square=10))
    assert tuple(shown[5, 5]) == (0, 0, 255)  # opaque: itself
    assert tuple(shown[5, 25]) == compare.LIGHT and tuple(shown[5, 35]) == compare.DARK  # see-through: squares
    photo = Image.new("RGB", (8, 8), (1, 2, 3))
    assert np.array_equal(np.asarray(compare.on_checkerboard(photo)), np.asarray(photo))


def test_cards_have_one_size_whatever_the_shape():
    tall, wide = Image.new("RGB", (100, 400), (9, 9, 9)), Image.new("RGB", (400, 100), (9, 9, 9))
    for image in (tall, wide):
        card = compare.card(image, (320, 240))
        assert card.size == (320, 240) and card.getpixel((160, 120)) == (9, 9, 9)
    assert compare.card(tall, (320, 240)).getpixel((5, 120)) == compare.CARD_FILL  # letterboxed


def test_edge_window_sits_on_the_busiest_edge():
    mask = np.zeros((3000, 4000), np.uint8)
    mask[1000:3000, 500:1500] = 255  # a block with a straight edge...
    mask[200:260, 3000:3900:20] = 255  # ...and a fringe of thin hairs, far from it: the most edge
    x0, y0, x1, y1 = compare.edge_window(Image.fromarray(mask), (480, 360))
    assert (x1 - x0, y1 - y0) == (480, 360)
    assert x0 <= 3450 <= x1 and y0 <= 230 <= y1
    assert compare.edge_window(Image.fromarray(mask[:100, :200]), (480, 360)) == (0, 0, 200, 100)  # a small photo: all of it
    assert compare.edge_window(Image.new("L", (1000, 800), 0), (480, 360)) == (260, 220, 740, 580)  # no edge: the centre
