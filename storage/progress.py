"""How a job's place in the queue, its progress and its durations read to a person: the words
beside the queue's estimates (storage.jobs.JobQueue.place), for the app's pages. Plain text from
a generation and its Place, with the moment ``now`` given (tests) or read from the clock."""

from __future__ import annotations

from datetime import datetime

from storage.db import utcnow
from storage.history import GenerationView
from storage.jobs import Place
from storage.lifecycle import Status

LANE_NAMES = {"ai": "AI queue", "quick": "queue for colour, gradient, blur, picture and transparent backgrounds"}


def duration(seconds: float) -> str:
    """12 s, 1 min 20 s, 2 h 5 min."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s" if seconds else "under a second"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def about(seconds: float) -> str:
    """An estimate in words: "about 12 s", or "under a second" (never "about under a second")."""
    text = duration(seconds)
    return text if text == "under a second" else f"about {text}"


def _between(start: datetime | None, end: datetime | None = None) -> float:
    """Seconds from ``start`` to ``end`` (default: now); 0 without a start."""
    return ((end or utcnow()) - start).total_seconds() if start else 0.0


def progress_text(view: GenerationView, place: Place | None = None, step_seconds: float | None = None,
                  now: datetime | None = None) -> tuple[float, str]:
    """(fraction, label) for a queued or running generation. Queued: how many jobs are ahead in
    its lane and when it should start; running: the stage and step, the time so far and the time
    left. ``place``: the queue's ``JobQueue.place``; ``step_seconds``: the seconds per step the
    page has seen the job take (None until it has seen two steps)."""
    if view.status == Status.QUEUED:
        if place is None:
            return 0.0, "Waiting for the worker..."
        where = LANE_NAMES[place.lane]
        label = (f"Waiting in the {where}: {place.ahead} job{'s' if place.ahead != 1 else ''} ahead"
                 if place.ahead else f"Next in the {where}")
        if place.wait_s is None:
            label += "; no estimate yet (no similar job has finished here)"
        else:
            label += f", starting in {about(place.wait_s)}" if place.ahead else ""
            if place.run_s is not None:
                label += f"; then {about(place.run_s)} to run (from {place.similar} similar job" \
                         f"{'s' if place.similar != 1 else ''})"
            elif place.similar:
                label += "; no estimate of its run yet (the similar jobs that finished here were of another size)"
        return 0.0, label + "."
    total = max(view.progress_total, 1)
    step = min(view.progress_step, total)
    stage = view.progress_stage or "starting"
    label = f"{stage}: step {step} of {total}" if total > 1 else f"{stage}..."
    elapsed = _between(view.started_at, now)
    label += f" · {duration(elapsed)} so far"
    if step_seconds is not None and total > 1:
        label += f" · {about(step_seconds * (total - step))} left"
    elif place is not None and place.run_s is not None:
        left = place.run_s - elapsed
        label += f" · {about(left)} left" if left > 0 else " · taking longer than similar jobs"
    return view.progress_fraction, label


def finished_text(view: GenerationView) -> str:
    """How long a finished generation ran, and how long it waited for its worker first."""
    ran = _between(view.started_at, view.finished_at) if view.started_at else None
    waited = _between(view.created_at, view.started_at or view.finished_at)
    parts = [f"ran {duration(ran)}"] if ran is not None else ["never started"]
    if waited >= 1:
        parts.append(f"after {duration(waited)} in the queue")
    return ", ".join(parts)


def fast_mode_text(queue, request) -> str:
    """What the Fast switch says of the two modes for ``request``: each one's expected time from
    the similar jobs finished here (``queue``: a JobQueue), or, before any, how much less work
    fast mode is."""
    from core.engine.recipes import RECIPES, sampling, step_rows

    fast, standard = request.replace(fast=True), request.replace(fast=False)
    (fast_s, fast_similar), (standard_s, standard_similar) = queue.expected_run_s(fast), queue.expected_run_s(standard)
    ratio = step_rows(standard.params()) / step_rows(fast.params())

    def jobs(count: int) -> str:
        return f"from {count} similar job{'s' if count != 1 else ''}"

    if fast_s is not None and standard_s is not None:
        return f"Expected here: fast about {duration(fast_s)}, standard about {duration(standard_s)} ({jobs(fast_similar)})."
    if fast_s is not None:  # the jobs finished here are too unlike the other mode to tell its time
        return (f"Expected here: fast about {duration(fast_s)} ({jobs(fast_similar)}); standard does about "
                f"{ratio:.0f}x the work.")
    if standard_s is not None:
        return (f"Expected here: standard about {duration(standard_s)} ({jobs(standard_similar)}); fast mode does "
                f"about {ratio:.0f}x less work.")
    plan, recipe = sampling(standard), RECIPES[fast.fast_lora]
    return (f"Fast mode: {recipe.steps} steps instead of {plan.steps}"
            + (", without the second pass for guidance" if plan.guided else "") + f": about {ratio:.0f}x less "
            "work (no time estimate yet: no AI background has finished here).")
