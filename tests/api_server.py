"""`backdrop serve` as a user starts it, on a free loopback port, for the API and Ray tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

BACKDROP = Path(sys.executable).parent / "backdrop"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(data_dir: Path, *args: str, env: dict | None = None, timeout: float = 120,
          one_thread: bool = True) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run ``backdrop serve --port P ARGS`` with its data in ``data_dir``; yields (its base URL,
    the process) once /v1/health answers, and stops it with Ctrl-C (SIGINT) afterwards.
    ``one_thread``: torch and onnxruntime use one thread (tests on a shared machine)."""
    port = free_port()
    environment = {**os.environ, "BACKDROP_DATA_DIR": str(data_dir), **(env or {})}
    if one_thread:
        environment["OMP_NUM_THREADS"] = "1"
    log = open(data_dir.parent / f"serve-{port}.log", "w+")
    process = subprocess.Popen([str(BACKDROP), "serve", "--port", str(port), *args], env=environment,
                               stdout=log, stderr=subprocess.STDOUT, cwd=data_dir.parent)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                log.seek(0)
                raise AssertionError(f"backdrop serve exited with {process.returncode}:\n{log.read()}")
            try:
                if httpx.get(f"{url}/v1/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("backdrop serve did not answer in time")
            time.sleep(0.2)
        yield url, process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)
        log.close()


def wait_finished(client: httpx.Client, generation_id: int, timeout: float = 120) -> dict:
    """Poll the generation until it is no longer queued or running; returns its JSON."""
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(f"/v1/generations/{generation_id}").json()
        if body["status"] not in ("queued", "running"):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"generation {generation_id} still {body['status']} after {timeout} s")
        time.sleep(0.1)
