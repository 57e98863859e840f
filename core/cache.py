"""Reuse of per-image and per-prompt work across variants and re-runs.

The mask, the depth map and the text embeddings depend only on the input pixels, the model
(id and revision) and, for embeddings, the prompt pair and device/dtype. A re-run or remix with
the same inputs should not pay for them again, so they live in one bounded in-memory LRU cache
keyed by those parts. Images enter keys through ``image_digest`` (a hash of the pixels, not of
the file, so the same photo decoded twice is one entry).

Typical call::

    mask = get_cache().get_or_compute(
        "mask", (image_digest(photo), request.segmenter), lambda: automatic_mask(photo, request.segmenter)
    )

``BACKDROP_CACHE_MB`` sets the budget (default 512); 0 turns caching off.
"""

from __future__ import annotations

import hashlib
import sys
import threading
from collections import OrderedDict
from typing import Any, Callable, Hashable, TypeVar

from PIL import Image

from core.config import config

T = TypeVar("T")



def image_digest(image: Image.Image) -> str:
    """SHA-256 of mode, size and pixels: equal pixels give equal keys whatever file they came from."""
    digest = hashlib.sha256(f"{image.mode}:{image.width}x{image.height}:".encode())
    digest.update(image.tobytes())
    return digest.hexdigest()


def _size_of(value: Any) -> int:
    """Bytes a cached value holds, close enough to keep the budget honest."""
    if isinstance(value, Image.Image):
        return value.width * value.height * len(value.getbands())
    if isinstance(value, (tuple, list)):
        return sum(_size_of(v) for v in value)
    nbytes = getattr(value, "nbytes", None)  # numpy arrays and torch tensors
    if isinstance(nbytes, int):
        return nbytes
    return sys.getsizeof(value)


def _detach(value: T) -> T:
    """What a caller receives: PIL images and numpy arrays are copied so a caller's in-place edit
    cannot corrupt the cached entry. Tensors are shared (copying GPU embeddings would cost more
    than it protects; the pipelines that take them do not edit them in place)."""
    if isinstance(value, Image.Image):
        return value.copy()  # type: ignore[return-value]
    if isinstance(value, tuple):
        return tuple(_detach(v) for v in value)  # type: ignore[return-value]
    if isinstance(value, list):
        return [_detach(v) for v in value]  # type: ignore[return-value]
    if type(value).__module__ == "numpy" and hasattr(value, "copy"):
        return value.copy()  # type: ignore[union-attr]
    return value


class StageCache:
    """Thread-safe LRU of stage results bounded by bytes. Values are computed outside the lock,
    so a slow model call never blocks readers of other entries."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple, tuple[Any, int]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits: dict[str, int] = {}
        self.misses: dict[str, int] = {}

    def get_or_compute(self, stage: str, parts: tuple[Hashable, ...], compute: Callable[[], T]) -> T:
        """Return the cached result for (stage, *parts), or compute, store and return it."""
        key = (stage, *parts)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                self.hits[stage] = self.hits.get(stage, 0) + 1
                return _detach(entry[0])
            self.misses[stage] = self.misses.get(stage, 0) + 1
        value = compute()
        self._store(key, value)
        return _detach(value)

    def _store(self, key: tuple, value: Any) -> None:
        size = _size_of(value)
        if size > self.max_bytes:
            return  # larger than the whole budget: caching it would evict everything for one entry
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            self._entries[key] = (value, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, (_, evicted) = self._entries.popitem(last=False)
                self._bytes -= evicted

    @property
    def nbytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0
            self.hits.clear()
            self.misses.clear()


_cache: StageCache | None = None
_cache_lock = threading.Lock()


def get_cache() -> StageCache:
    """The process-wide cache the pipeline, the worker and the app share."""
    global _cache
    with _cache_lock:
        if _cache is None:
            _cache = StageCache(int(config().cache_mb * 2**20))
        return _cache
