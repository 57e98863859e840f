"""Content-addressed image store: a file's name is the sha256 of its bytes.

Layout: ``images/ab/cd/<sha256>`` (no extension; the database records the format) and cached
thumbnails ``thumbs/ab/<sha256>-<size>.webp``. Files are written to a temporary file in the same
directory, flushed to disk and renamed, so a reader never sees half a file and a crash leaves at
most an unreferenced temporary file. The same bytes stored twice are one file.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image as PILImage
from PIL import PngImagePlugin

from core.errors import InputError
from core.files import write_atomic
from core.imaging import PNG_COMPRESS_LEVEL, upright_srgb
from storage.errors import from_oserror

THUMBNAIL_SIZE = 256
_FORMATS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tif", "MPO": "jpg"}


@dataclass(frozen=True)
class StoredImage:
    sha256: str
    format: str
    width: int
    height: int
    bytes: int
    created: bool = False  # this call wrote the file (it was not in the store yet)


def encode_png(image: PILImage.Image, pnginfo: dict[str, str] | None = None) -> bytes:
    """PNG bytes with optional tEXt chunks; the same image and chunks give the same bytes."""
    info = None
    if pnginfo:
        info = PngImagePlugin.PngInfo()
        for key, value in pnginfo.items():
            info.add_text(key, value)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info, compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def png_text_info(image: PILImage.Image) -> PngImagePlugin.PngInfo | None:
    """The tEXt chunks a loaded PNG carries, ready to write again (``save(..., pnginfo=)``)."""
    text = getattr(image, "text", None)
    if not text:
        return None
    info = PngImagePlugin.PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
    return info


class ImageStore:
    def __init__(self, root: str | Path, thumbs: str | Path):
        self.root = Path(root)
        self.thumbs = Path(thumbs)

    def path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put_bytes(self, data: bytes) -> StoredImage:
        """Store an encoded image file as given (inputs keep their original bytes)."""
        try:
            with PILImage.open(io.BytesIO(data)) as probe:
                fmt, (width, height) = probe.format or "", probe.size
        except (OSError, ValueError, PILImage.DecompressionBombError) as exc:
            raise InputError(f"not an image file the store can keep: {exc}") from exc
        return self._put(data, _FORMATS.get(fmt, fmt.lower() or "bin"), width, height)

    def put_image(self, image: PILImage.Image, pnginfo: dict[str, str] | None = None) -> StoredImage:
        """Store a PIL image as PNG (with ``pnginfo`` text chunks)."""
        return self._put(encode_png(image, pnginfo), "png", image.width, image.height)

    def _put(self, data: bytes, fmt: str, width: int, height: int) -> StoredImage:
        sha = hashlib.sha256(data).hexdigest()
        target = self.path(sha)
        created = not target.exists()
        if created:
            try:
                write_atomic(target, lambda stream: stream.write(data), make_folder=True)
            except OSError as exc:
                raise from_oserror(exc, self.root, "storing an image") or exc
        return StoredImage(sha, fmt, width, height, len(data), created)

    def read(self, sha256: str) -> bytes:
        return self.path(sha256).read_bytes()

    def open(self, sha256: str) -> PILImage.Image:
        """The stored image, fully loaded (the file is closed)."""
        with PILImage.open(self.path(sha256)) as image:
            image.load()
            return image

    def thumbnail(self, sha256: str, size: int = THUMBNAIL_SIZE) -> Path:
        """A cached WebP thumbnail at most ``size`` px on its longer side (alpha kept)."""
        target = self.thumbs / sha256[:2] / f"{sha256}-{size}.webp"
        if not target.exists():
            image = upright_srgb(self.open(sha256))
            if image.mode not in ("RGB", "RGBA"):
                image = image.convert("RGBA" if "A" in image.getbands() or "transparency" in image.info else "RGB")
            image.thumbnail((size, size), PILImage.Resampling.LANCZOS)
            buffer = io.BytesIO()
            image.save(buffer, format="WEBP", quality=85)
            data = buffer.getvalue()
            write_atomic(target, lambda stream: stream.write(data), make_folder=True)
        return target

    def delete(self, sha256: str) -> bool:
        """Remove the file and its thumbnails. Callers check references first (history.delete)."""
        path = self.path(sha256)
        for thumb in (self.thumbs / sha256[:2]).glob(f"{sha256}-*.webp"):
            thumb.unlink(missing_ok=True)
        existed = path.exists()
        path.unlink(missing_ok=True)
        return existed

