"""What serves the job queue, as one type: an ``Executor`` runs the jobs the queue holds, in
this process (storage.jobs.LaneWorkers: a worker thread per lane) or on a Ray cluster
(storage.ray_workers.RayExecutor: actors, one per GPU). The app and the HTTP API start one with
``start_serving`` and use only what the protocol says."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from core.request import GenerationRequest
from storage.jobs import JobQueue, LaneWorkers
from storage.ray_workers import RayExecutor, configured_address


@runtime_checkable
class Executor(Protocol):
    kind: str  # "in-process" or "ray": what the API's health check reports
    queue: JobQueue  # the queue it serves; jobs are submitted there

    def start(self) -> None: ...

    def wake(self) -> None:
        """A job was submitted: look now instead of at the next poll."""

    def running(self) -> dict[str | None, int | None]:
        """The job each lane's worker runs now (None: idle); the key None stands for workers
        that serve every lane."""

    def worker_count(self) -> int: ...

    def is_alive(self) -> bool:
        """False once a worker died: the app then starts another executor."""

    def stop(self, timeout: float | None = None) -> None:
        """Stop after the current jobs (cancel them first to stop sooner)."""


def start_serving(queue: JobQueue | None = None, registry=None, warm_up: GenerationRequest | None = None,
                  ray_address: str | None = None, ray_workers: int | None = None) -> Executor:
    """Start what serves the queue and return it: Ray workers when a Ray cluster is named
    (``ray_address``, else BACKDROP_RAY_ADDRESS), else a worker thread per lane in this process."""
    address = configured_address(ray_address)
    executor: Executor
    if address:
        executor = RayExecutor(queue, address=address, workers=ray_workers, warm_up=warm_up)
    else:
        executor = LaneWorkers(queue, registry=registry, warm_up=warm_up)
    executor.start()
    return executor
