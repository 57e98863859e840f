"""Optional: the guided step compiled with torch.compile, prepared in the background.

Measured on an H100 on 2026-11-23 (bench/h100/README.md): Inductor makes the step 11 ms instead of the graph's
15 ms, but the first compile takes 112 s (15-18 s with a saved cache), far too long to make a
user wait. So with ``BACKDROP_COMPILE=1`` the worker keeps serving with the plain step (CUDA
graph) while this module compiles each shape on a background thread; once a shape is compiled,
runs of that shape use the compiled step (captured as a CUDA graph again on CUDA). The Inductor
cache lives under the data folder and its artifacts are saved per shape
(``torch.compiler.save_cache_artifacts``) and loaded at start, so later processes compile in
seconds. ``BACKDROP_COMPILE_BACKEND`` picks another torch.compile backend (the tests use
"eager", which checks the plumbing without a C++ toolchain's minutes).
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import os
import queue
import threading
import time
from pathlib import Path

import torch

from core.config import config
from core.engine.step import GuidedStep

log = logging.getLogger(__name__)

RECOMPILE_LIMIT = 64  # one compiled graph per shape; dynamo's default of 8 shapes is too few for the buckets


_configured: Path | None = None


def use_cache_dir(folder: Path) -> None:
    """Keep compiled code in ``folder`` (storage points this into its data folder) unless
    ``$BACKDROP_COMPILE_CACHE`` says otherwise."""
    global _configured
    _configured = Path(folder)


def cache_dir() -> Path:
    """Where compiled code is kept between processes: a cache, not data (deleting it only costs
    a compile): ``$BACKDROP_COMPILE_CACHE``, else the data folder's (use_cache_dir), else the
    user's cache folder."""
    folder = config().compile_cache
    if folder is not None:
        return folder
    if _configured is not None:
        return _configured
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "backdrop" / "compile"


class CompiledStep:
    """A compiled copy of one GuidedStep and the shapes it is ready for."""

    def __init__(self, step: GuidedStep, backend: str | None = None, folder: Path | None = None) -> None:
        import torch._dynamo

        self.backend = backend or config().compile_backend
        self.folder = folder or cache_dir()
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
        if self.backend == "inductor":
            os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(self.folder / "inductor"))
            self._load_artifacts()
        self.module = torch.compile(step, backend=self.backend, fullgraph=True, dynamic=False)
        self._ready: dict[tuple, float] = {}  # shape key -> seconds its compile took
        self._failed: dict[tuple, str] = {}
        self._queued: set[tuple] = set()
        self._jobs: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        # a compile cut off by the interpreter's exit aborts the process: finish it (its cache
        # then serves the next process)
        atexit.register(self._finish)

    def ready(self, key: tuple) -> bool:
        with self._lock:
            return key in self._ready

    def requested(self) -> list[tuple]:
        """Every shape asked for so far (compiling, ready or failed)."""
        with self._lock:
            return [*self._ready, *self._queued, *self._failed]

    def status(self, key: tuple) -> str:
        with self._lock:
            if key in self._ready:
                return "ready"
            if key in self._failed:
                return "failed: " + self._failed[key]
            return "compiling" if key in self._queued else "not requested"

    def request(self, key: tuple, example: tuple) -> None:
        """Compile for ``key`` in the background with ``example`` inputs (copied: the caller's
        tensors may change before the thread runs)."""
        with self._lock:
            if key in self._ready or key in self._failed or key in self._queued:
                return
            self._queued.add(key)
            self._jobs.put((key, tuple(t.clone() if isinstance(t, torch.Tensor) else t for t in example)))
            if self._thread is None or not self._thread.is_alive():
                # a thread that ends when the queue is empty: none is left running at exit
                self._thread = threading.Thread(target=self._serve, name="backdrop-compile", daemon=True)
                self._thread.start()

    def wait(self, key: tuple, timeout: float) -> bool:
        """Block until ``key`` is compiled (or failed, or ``timeout`` passed); True when ready."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if key in self._ready:
                    return True
                if key in self._failed:
                    return False
            time.sleep(0.05)
        return self.ready(key)

    def _finish(self) -> None:
        thread = self._thread
        if thread is not None and thread.is_alive():
            log.warning("finishing the step compile before exiting (BACKDROP_COMPILE=1)")
            thread.join()

    def _serve(self) -> None:
        while True:
            with self._lock:
                if self._jobs.empty():
                    self._thread = None
                    return
                key, example = self._jobs.get()
            start = time.perf_counter()
            try:
                with torch.inference_mode():
                    if example[0].is_cuda:
                        stream = torch.cuda.Stream()
                        with torch.cuda.stream(stream):
                            self.module(*example)
                        stream.synchronize()
                    else:
                        self.module(*example)
                self._save_artifacts(key)
            except Exception as exc:  # noqa: BLE001 - a failed compile leaves the plain step serving
                reason = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
                log.warning("compiling the step for %s failed; the plain step keeps serving: %s", key, reason)
                with self._lock:
                    self._failed[key] = reason
                    self._queued.discard(key)
                continue
            with self._lock:
                self._ready[key] = time.perf_counter() - start
                self._queued.discard(key)

    def _artifact_path(self, key: tuple) -> Path:
        return self.folder / f"artifacts-{hashlib.sha256(repr(key).encode()).hexdigest()[:16]}.bin"

    def _save_artifacts(self, key: tuple) -> None:
        if self.backend != "inductor":
            return
        saved = torch.compiler.save_cache_artifacts()
        if saved:
            from core.imaging import write_atomic

            self.folder.mkdir(parents=True, exist_ok=True)
            write_atomic(self._artifact_path(key), lambda stream: stream.write(saved[0]))

    def _load_artifacts(self) -> None:
        for path in sorted(self.folder.glob("artifacts-*.bin")) if self.folder.is_dir() else []:
            try:
                torch.compiler.load_cache_artifacts(path.read_bytes())
            except Exception as exc:  # noqa: BLE001 - a stale or damaged cache only costs a compile
                log.warning("ignoring compile cache %s: %s", path.name, exc)
