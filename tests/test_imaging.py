"""Loading real photos in every awkward format, refusing broken ones, masks, atomic writes."""

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.errors import InputError
from core.engine.buckets import placement
from core.imaging import MAX_PIXELS, load_image, load_mask, save_png_atomic


@pytest.fixture(scope="module")
def photo(astronaut) -> Image.Image:
    return astronaut.resize((256, 192))


def _bytes(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def bomb_png(width: int, height: int) -> bytes:
    """A valid PNG header claiming a huge size, with a tiny compressed body."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    body = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def test_exif_orientation_is_applied(photo):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    loaded = load_image(_bytes(photo, "JPEG", quality=95, exif=exif))
    assert loaded.size == (192, 256)
    assert loaded.mode == "RGB"
    # the photo's top-left corner is now at the top-right
    upright = np.asarray(photo.transpose(Image.Transpose.ROTATE_270), dtype=int)
    assert np.abs(np.asarray(loaded, dtype=int) - upright).mean() < 4


def test_rgba_is_flattened_on_white(photo):
    rgba = photo.convert("RGBA")
    alpha = Image.new("L", photo.size, 255)
    alpha.paste(0, (0, 0, 64, 64))
    rgba.putalpha(alpha)
    loaded = np.asarray(load_image(_bytes(rgba, "PNG")))
    assert (loaded[:64, :64] == 255).all()
    assert (loaded[100:, 100:] == np.asarray(photo)[100:, 100:]).all()


def test_palette_with_transparency(photo):
    palette = photo.convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    palette.info["transparency"] = palette.getpixel((0, 0))
    loaded = load_image(_bytes(palette, "PNG", transparency=palette.getpixel((0, 0))))
    assert loaded.mode == "RGB" and loaded.size == photo.size
    assert tuple(loaded.getpixel((0, 0))) == (255, 255, 255)


def test_cmyk_jpeg(photo):
    loaded = load_image(_bytes(photo.convert("CMYK"), "JPEG", quality=95))
    assert loaded.mode == "RGB" and loaded.size == photo.size
    assert np.abs(np.asarray(loaded, dtype=int) - np.asarray(photo, dtype=int)).mean() < 8


def test_adobe_rgb_photo_is_converted_to_srgb():
    import skimage
    from PIL import ImageCms

    path = Path(skimage.__file__).parent / "data" / "rocket.jpg"  # a real photo tagged Adobe RGB (1998)
    raw = Image.open(path)
    assert "Adobe RGB" in ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(raw.info["icc_profile"])))
    plain = np.asarray(raw.convert("RGB"), dtype=int)
    loaded = np.asarray(load_image(path), dtype=int)

    def chroma(a):
        return (a.max(axis=2) - a.min(axis=2)).mean()

    assert chroma(loaded) > 1.2 * chroma(plain)  # read as sRGB, Adobe RGB values look dull
    # the same pixels with transparency: colours converted alike, the alpha kept (then flattened)
    rgba = raw.convert("RGBA")
    rgba.paste((0, 0, 0, 0), (0, 0, 100, 100))
    flat = np.asarray(load_image(_bytes(rgba, "PNG", icc_profile=raw.info["icc_profile"])), dtype=int)
    assert (flat[:100, :100] == 255).all() and np.array_equal(flat[100:], loaded[100:])
    # tagged sRGB, or with a profile littlecms cannot read: the pixels exactly as they are
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    for icc in (srgb, b"not a profile"):
        assert np.array_equal(np.asarray(load_image(_bytes(raw, "PNG", icc_profile=icc))), plain)


def test_16_bit_greyscale_png_is_scaled_not_clipped(photo):
    grey16 = (np.asarray(photo.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    image = Image.fromarray(grey16)
    assert image.mode.startswith("I;16")
    loaded = load_image(_bytes(image, "PNG"))
    assert loaded.mode == "RGB"
    assert np.abs(np.asarray(loaded)[..., 0].astype(int) - np.asarray(photo.convert("L"), dtype=int)).max() <= 1


def test_greyscale(photo):
    loaded = load_image(_bytes(photo.convert("L"), "PNG"))
    assert loaded.mode == "RGB" and loaded.size == photo.size


def test_animated_gif_gives_first_frame(photo):
    frames = [photo.convert("P"), Image.new("RGB", photo.size, (255, 0, 0)).convert("P")]
    data = _bytes(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    loaded = np.asarray(load_image(data), dtype=int)
    assert np.abs(loaded - np.asarray(photo, dtype=int)).mean() < 20  # not the red frame


def test_webp(photo):
    assert load_image(_bytes(photo, "WEBP")).size == photo.size


def test_path_and_bytes_agree(photo, tmp_path):
    path = tmp_path / "photo.png"
    photo.save(path)
    assert load_image(path).tobytes() == load_image(path.read_bytes()).tobytes() == photo.tobytes()


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: _bytes(p, "JPEG")[: len(_bytes(p, "JPEG")) // 2], "truncated"),
        (lambda p: _bytes(p, "PNG")[:2000], "truncated"),
        (lambda p: b"this is a shopping list, not a photo\n" * 10, "not an image"),
        (lambda p: b"", "empty"),
        (lambda p: bomb_png(20000, 20000), "megapixels"),
        (lambda p: bomb_png(10000, 9000), "megapixels"),
        (lambda p: _bytes(Image.new("RGB", (1, 5000)), "PNG"), "at least 16 px"),
        (lambda p: _bytes(Image.new("RGB", (5000, 8)), "PNG"), "at least 16 px"),
    ],
    ids=["truncated-jpeg", "truncated-png", "text", "empty", "bomb", "bomb-90mp", "strip-1x5000", "strip-5000x8"],
)
def test_bad_inputs_raise_input_error(photo, tmp_path, make, message):
    path = tmp_path / "bad.jpg"
    path.write_bytes(make(photo))
    with pytest.raises(InputError, match=message):
        load_image(path)


def test_bomb_limit_is_below_pillows_own():
    assert MAX_PIXELS <= Image.MAX_IMAGE_PIXELS


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(InputError, match="folder"):
        load_image(tmp_path)


def test_load_mask(tmp_path):
    mask = Image.new("L", (64, 48), 0)
    mask.paste(255, (10, 10, 40, 40))
    path = tmp_path / "mask.png"
    mask.save(path)
    assert load_mask(path, (64, 48)).tobytes() == mask.tobytes()
    # an RGBA mask uses its alpha channel
    rgba = Image.new("RGBA", (64, 48), (0, 0, 0, 0))
    rgba.putalpha(mask)
    rgba.save(path)
    assert load_mask(path, (64, 48)).tobytes() == mask.tobytes()


def test_mask_at_working_size_is_enlarged(tmp_path):
    mask = Image.new("L", placement(2000, 1500).content, 0)
    mask.paste(255, (100, 100, 500, 500))
    path = tmp_path / "mask.png"
    mask.save(path)
    assert load_mask(path, (2000, 1500)).size == (2000, 1500)


@pytest.mark.parametrize(
    "mask, message",
    [(Image.new("L", (64, 48), 0), "empty"), (Image.new("L", (64, 48), 255), "whole image"),
     (Image.new("L", (48, 64), 128), "must have the photo's size")],
)
def test_bad_masks(tmp_path, mask, message):
    path = tmp_path / "mask.png"
    mask.save(path)
    with pytest.raises(InputError, match=message):
        load_mask(path, (64, 48))


def test_save_png_atomic(tmp_path, photo):
    target = tmp_path / "out.png"
    save_png_atomic(photo, target)
    assert Image.open(target).tobytes() == photo.tobytes()
    assert os.stat(target).st_mode & 0o044  # readable by others like any normal file
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_save_png_atomic_leaves_nothing_on_failure(tmp_path, photo):
    target = tmp_path / "out.png"
    target.write_bytes(b"previous")

    broken = photo.copy()
    broken.save = None  # type: ignore[assignment]  # save() raises TypeError mid-write
    with pytest.raises(TypeError):
        save_png_atomic(broken, target)
    assert target.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]
    with pytest.raises(InputError, match="does not exist"):
        save_png_atomic(photo, Path(tmp_path / "missing" / "out.png"))


def test_atomic_writes_follow_the_umask_without_changing_it(tmp_path):
    """Written files get the permissions any file gets under the process's umask, and the
    umask itself is never read or changed (a process-wide side effect threads would race on)."""
    import os

    from core.files import write_atomic
    from core.imaging import save_png_atomic

    old = os.umask(0o027)
    try:
        save_png_atomic(Image.new("RGB", (20, 20)), tmp_path / "a.png")
        write_atomic(tmp_path / "b.bin", lambda stream: stream.write(b"x"))
        assert os.umask(0o027) == 0o027  # still what this test set
    finally:
        os.umask(old)
    assert {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()} == {"a.png": 0o640, "b.bin": 0o640}
