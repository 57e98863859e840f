"""Reading photos and masks safely, the working size, and atomic PNG writes.

Every way a user's file can be unusable (empty, truncated, not an image, a decompression bomb,
too small) ends here as an InputError with a message a user can act on, so no later stage sees
a half-decoded image.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps, UnidentifiedImageError

from core.errors import InputError, OutputError
from core.files import write_atomic

PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")  # what a folder of photos is read for (batch, eval)
MAX_PIXELS = 80_000_000  # larger images are refused before decoding (decompression bombs)
MIN_SIDE = 16  # px; thinner strips have no subject to cut out
PNG_COMPRESS_LEVEL = 1  # a 12 MP PNG writes in ~0.7 s at level 1, ~3.8 s at the default 6
_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def load_image(source: str | Path | bytes, what: str = "image") -> Image.Image:
    """Decode a photo to an RGB image, upright (EXIF orientation applied).

    Transparent inputs are flattened onto white; CMYK, 16-bit, greyscale and palette images are
    converted; photos tagged with another colour space are converted to sRGB; animations give
    their first frame. ``what`` names the file in error messages.
    """
    return to_rgb(upright_srgb(_open(source, what)))


def upright_srgb(image: Image.Image) -> Image.Image:
    """The image as a viewer shows it: EXIF orientation applied, colours in sRGB (its mode
    otherwise kept). Thumbnails use it too, so they match what the pipeline sees."""
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - a corrupt EXIF block must not lose the photo
        pass
    return to_srgb(image)


def to_srgb(image: Image.Image) -> Image.Image:
    """Pixels in sRGB when the file's ICC profile says they are in another space (Adobe RGB,
    Display P3, a CMYK press profile). The models, the colour pickers and the untagged PNGs we
    write all mean sRGB: read as sRGB, an Adobe RGB subject would come out dull in every viewer.
    sRGB-tagged and untagged images are returned as they are; a profile littlecms cannot use
    leaves the pixels as they are (like a corrupt EXIF block, it must not lose the photo)."""
    icc = image.info.get("icc_profile")
    if not icc or image.mode not in ("RGB", "RGBA", "CMYK", "L", "LA"):
        return image
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if ImageCms.getProfileDescription(source).strip().startswith("sRGB"):
            return image
        alpha = image.getchannel("A") if image.mode in ("RGBA", "LA") else None
        colour = image.convert(image.mode[:-1]) if alpha is not None else image
        converted = ImageCms.profileToProfile(colour, source, _SRGB, outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError):
        return image
    if alpha is not None:
        converted.putalpha(alpha)
    return converted


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB; transparency is flattened onto white."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        image = _to_8bit(image)
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        flat = Image.new("RGB", rgba.size, (255, 255, 255))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        return flat
    return image.convert("RGB")


def _to_8bit(image: Image.Image) -> Image.Image:
    """Scale 16-bit / 32-bit greyscale to 8 bits (Pillow's own convert clips at 255)."""
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        lo, hi = float(values.min()), float(values.max())
        scaled = (values - lo) / (hi - lo or 1.0) * 255.0
    elif image.mode.startswith("I;16") or values.max() > 255:
        scaled = values / 257.0
    else:
        scaled = values
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), "L")


def _open(source: str | Path | bytes, what: str) -> Image.Image:
    """Open and fully decode ``source`` (first frame), turning every failure into InputError."""
    if isinstance(source, (bytes, bytearray)):
        name, data = what, bytes(source)
    else:
        path = Path(source)
        name = f"{what} {str(path)!r}"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise InputError(f"{name} does not exist") from None
        except IsADirectoryError:
            raise InputError(f"{name} is a folder, not an image file") from None
        except OSError as exc:
            raise InputError(f"cannot read {name}: {exc.strerror or exc}") from None
    if not data:
        raise InputError(f"{name} is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise InputError(
                    f"{name} is {width}x{height} = {width * height / 1e6:.0f} megapixels; the limit is "
                    f"{MAX_PIXELS / 1e6:.0f} megapixels (this protects against decompression bombs)"
                )
            if min(width, height) < MIN_SIDE:
                raise InputError(f"{name} is {width}x{height}; each side must be at least {MIN_SIDE} px")
            image.seek(0)
            image.load()
    except InputError:
        raise
    except UnidentifiedImageError:
        raise InputError(f"{name} is not an image Pillow can read (JPEG, PNG, WebP, ...)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(
            f"{name} is larger than the {MAX_PIXELS / 1e6:.0f} megapixels limit (this protects against decompression bombs)"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InputError(f"{name} is damaged or truncated and cannot be decoded ({exc})") from None
    return image


def load_mask(source: str | Path | bytes, size: tuple[int, int]) -> Image.Image:
    """Read a user's mask (white = subject) for a photo of ``size``; checked by check_mask.

    A mask with real transparency uses its alpha channel, otherwise its brightness.
    """
    image = _open(source, "mask")
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # noqa: BLE001 - same tolerance as for photos
        pass
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA") and image.getchannel("A").getextrema() != (255, 255):
        mask = image.getchannel("A")
    else:
        mask = to_rgb(image).convert("L")
    return fit_mask(mask, size)


def fit_mask(mask: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Accept a mask at the photo's size, or at its working size (the size the generator sees
    it at, core.engine.buckets), resized to the photo's size; anything else is a mismatch. Returns a
    checked 'L' mask."""
    from core.engine.buckets import placement

    mask = mask.convert("L")
    if mask.size != size:
        if mask.size != placement(*size).content:
            raise InputError(
                f"mask is {mask.size[0]}x{mask.size[1]} but the photo is {size[0]}x{size[1]}: "
                "the mask must have the photo's size"
            )
        mask = mask.resize(size, Image.Resampling.BILINEAR)
    check_mask(mask)
    return mask


def check_mask(mask: Image.Image) -> None:
    """Refuse masks that mark no subject or no background (subject = at least half opaque)."""
    histogram = mask.convert("L").histogram()
    if sum(histogram[128:]) == 0:
        raise InputError("mask is empty: no pixel is marked as subject (white)")
    if sum(histogram[:128]) == 0:
        raise InputError("mask covers the whole image: no pixel is left as background (black)")


def save_png_atomic(image: Image.Image, path: str | Path, pnginfo=None) -> Path:
    """Write a PNG so that a crash or a full disk never leaves a half-written file under the
    final name (see core.files.write_atomic); OutputError when it cannot be written."""
    try:
        return write_atomic(
            path, lambda stream: image.save(stream, format="PNG", pnginfo=pnginfo, compress_level=PNG_COMPRESS_LEVEL)
        )
    except OSError as exc:
        raise OutputError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None
