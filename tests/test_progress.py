"""The words beside the queue's estimates (storage.progress), without Streamlit: a job's place
in its lane, its progress and time left, how long it ran; and the progress fraction the app and
the HTTP API share (GenerationView.progress_fraction)."""

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

from storage.history import GenerationView
from storage.jobs import Place
from storage.progress import duration, finished_text, progress_text

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def view(**fields) -> GenerationView:
    defaults = dict(id=1, request={}, prompt="", background_kind="ai", status="queued", progress_stage="",
                    progress_step=0, progress_total=0, cancel_requested=False, error=None, timings={}, device=None,
                    versions={}, models={}, warnings=[], created_at=NOW, started_at=None, finished_at=None,
                    favourite=False, parent_id=None, owner_id=None, input_sha256="0" * 64, mask_sha256=None,
                    user_mask_sha256=None, background_sha256=None, record={})
    return GenerationView(**{**defaults, **fields})


def test_waiting_in_a_lane():
    queued = view()
    assert progress_text(queued, Place("ai", "queued", 2, 80.0, 20.0, 3)) == (
        0.0, "Waiting in the AI queue: 2 jobs ahead, starting in about 1 min 20 s; then about 20 s to run "
             "(from 3 similar jobs).")
    assert progress_text(queued, Place("ai", "queued", 1, 5.0, 20.0, 1))[1] == (
        "Waiting in the AI queue: 1 job ahead, starting in about 5 s; then about 20 s to run (from 1 similar job).")
    assert progress_text(queued, Place("quick", "queued", 0, 0.0, None, 0))[1] == \
        "Next in the queue for colour, gradient, blur, picture and transparent backgrounds."
    assert progress_text(queued, Place("ai", "queued", 1, None, None, 0))[1] == (
        "Waiting in the AI queue: 1 job ahead; no estimate yet (no similar job has finished here).")
    assert progress_text(queued) == (0.0, "Waiting for the worker...")
    # issue 21: "then about under a second to run" is "then under a second to run"
    assert progress_text(queued, Place("quick", "queued", 1, 0.3, 0.4, 2))[1] == (
        "Waiting in the queue for colour, gradient, blur, picture and transparent backgrounds: 1 job ahead, "
        "starting in under a second; then under a second to run (from 2 similar jobs).")
    assert progress_text(queued, Place("quick", "queued", 1, 3.0, None, 4))[1].endswith(
        "starting in about 3 s; no estimate of its run yet (the similar jobs that finished here were of another size).")


def test_running_with_its_time_so_far_and_left():
    running = view(status="running", progress_total=25, progress_step=5, progress_stage="generate",
                   started_at=NOW - timedelta(seconds=12))
    assert progress_text(running, None, step_seconds=2.0, now=NOW) == (
        0.2, "generate: step 5 of 25 · 12 s so far · about 40 s left")
    assert progress_text(running, Place("ai", "running", 0, 0.0, 100.0, 1), now=NOW) == (
        0.2, "generate: step 5 of 25 · 12 s so far · about 1 min 28 s left")
    assert progress_text(running, Place("ai", "running", 0, 0.0, 10.0, 1), now=NOW)[1].endswith(
        "taking longer than similar jobs")
    assert progress_text(running, Place("ai", "running", 0, 0.0, 12.5, 1), now=NOW)[1].endswith(
        "12 s so far · under a second left")
    starting = view(status="running", started_at=NOW)
    assert progress_text(starting, now=NOW + timedelta(minutes=2)) == (0.0, "starting... · 2 min so far")


def test_how_long_it_ran_and_waited():
    done = view(status="done", started_at=NOW + timedelta(seconds=14.6), finished_at=NOW + timedelta(seconds=15.1))
    assert finished_text(done) == "ran under a second, after 15 s in the queue"
    assert finished_text(replace(done, started_at=NOW + timedelta(seconds=0.5))) == "ran 15 s"
    cancelled = view(status="cancelled", finished_at=NOW + timedelta(seconds=65))
    assert finished_text(cancelled) == "never started, after 1 min 5 s in the queue"


@pytest.mark.parametrize("seconds, text", [(0, "under a second"), (0.4, "under a second"), (12, "12 s"),
                                           (60, "1 min"), (80, "1 min 20 s"), (3600, "1 h"), (3725, "1 h 2 min"),
                                           (-5, "under a second")])
def test_duration(seconds, text):
    assert duration(seconds) == text


@pytest.mark.parametrize("status, step, total, fraction", [
    ("queued", 0, 0, 0.0), ("running", 5, 25, 0.2), ("running", 0, 0, 0.0), ("running", 30, 25, 1.0),
    ("done", 1, 1, 1.0), ("done", 3, 25, 1.0), ("failed", 5, 25, 0.0), ("cancelled", 5, 25, 0.0)])
def test_progress_fraction(status, step, total, fraction):
    """One fraction for the app's progress bar and the API's ``progress.fraction``."""
    assert view(status=status, progress_step=step, progress_total=total).progress_fraction == fraction


def test_the_fast_switch_says_what_each_mode_takes_here():
    """Both modes' expected times from the queue's estimates (seconds per network row of a step,
    from similar finished jobs), or before any, how much less work fast mode is."""
    from core.request import GenerationRequest
    from storage.progress import fast_mode_text

    class Queue:
        def __init__(self, per_row):
            self.per_row = per_row

        def expected_run_s(self, request):
            from core.engine.recipes import step_rows

            return (None, 0) if self.per_row is None else (self.per_row * step_rows(request.params()), 3)

    request = GenerationRequest(background="ai")
    assert fast_mode_text(Queue(None), request) == (
        "Fast mode: 4 steps instead of 25, without the second pass for guidance: about 12x less work (no time "
        "estimate yet: no AI background has finished here).")
    assert fast_mode_text(Queue(10.0), request) == (
        "Expected here: fast about 40 s, standard about 8 min 20 s (from 3 similar jobs).")

    class OnlyFast(Queue):  # the jobs finished here tell fast mode's time, not the standard's 12x the work
        def expected_run_s(self, request):
            return super().expected_run_s(request) if request.fast else (None, 0)

    assert fast_mode_text(OnlyFast(10.0), request) == (
        "Expected here: fast about 40 s (from 3 similar jobs); standard does about 12x the work.")
