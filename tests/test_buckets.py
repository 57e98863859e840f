"""Working-size buckets: few sizes, the photo never stretched, pad and crop exact inverses."""

import itertools

import numpy as np
import pytest
from PIL import Image

from core.engine.buckets import MIN_SHORT, STEP, TIERS, crop, pad, placement


@pytest.mark.parametrize(
    "size, content, bucket",
    [((4000, 3000), (1024, 768), (1024, 768)), ((3000, 4000), (768, 1024), (768, 1024)),
     ((512, 512), (512, 512), (512, 512)), ((768, 1024), (768, 1024), (768, 1024)),
     ((256, 192), (512, 384), (512, 384)), ((680, 440), (768, 497), (768, 512)),
     ((1001, 999), (1024, 1022), (1024, 1024)), ((16, 5000), (3, 1024), (MIN_SHORT, 1024)),
     ((1920, 1080), (1024, 576), (1024, 576)), ((4032, 3024), (1024, 768), (1024, 768))],
)
def test_placement(size, content, bucket):
    place = placement(*size)
    assert (place.content, place.bucket) == (content, bucket)


def test_buckets_are_few_and_keep_the_photo_unstretched():
    buckets = set()
    for width, height in itertools.product(range(100, 6001, 37), range(100, 6001, 53)):
        place = placement(width, height)
        buckets.add(place.bucket)
        bw, bh = place.bucket
        assert bw % STEP == 0 and bh % STEP == 0 and max(bw, bh) in TIERS
        assert place.content[0] <= bw and place.content[1] <= bh and max(place.content) == max(bw, bh)
        # the photo keeps its aspect ratio (to rounding), and the bucket wastes less than a STEP strip
        assert abs(place.content[0] / place.content[1] - width / height) <= 1.0 / min(place.content) * (width / height + 1)
        assert bw - place.content[0] < STEP and bh - place.content[1] < STEP or min(bw, bh) == MIN_SHORT
    # 3 tiers x short sides from MIN_SHORT up in STEP px, both orientations: a fixed set of 51,
    # of which a phone's 4:3, 3:2, 16:9 and square photos use 8 at the 1024 tier
    assert len(buckets) <= 51
    assert {placement(4 * k, 3 * k).bucket for k in (300, 1000)} == {(1024, 768)}


def test_pad_and_crop_are_inverses(astronaut):
    photo = astronaut.resize((300, 211))
    place = placement(*photo.size)
    work = photo.resize(place.content)
    for fill in (None, (0, 0, 0)):
        padded = pad(work, place, fill=fill)
        assert padded.size == place.bucket
        assert crop(padded, place).tobytes() == work.tobytes()
    edges = np.asarray(pad(work, place))  # edge pixels repeated outward
    x, y = place.offset
    assert (edges[: y + 1] == np.asarray(work)[0]).all()
    mask = pad(Image.new("L", place.content, 0), place, fill=255)
    assert np.asarray(mask).sum() == 255 * (place.bucket[0] * place.bucket[1] - place.content[0] * place.content[1])
    with pytest.raises(ValueError):
        pad(photo, place)
