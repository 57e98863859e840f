"""History with 10,000 recorded generations (issue 15): the page opens, searches and pages in
under 2 s each on this machine. The rows are made through the storage layer's own model: one
generation run for real (its photo, result and thumbnails stored), copied 9,999 times with their
own prompts, kinds, statuses and dates.
"""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from app_pages import job_view
from core.request import GenerationRequest

ROWS = 10_000
LIMIT_S = 2.0
pytestmark = pytest.mark.slow  # 10,000 generations recorded first


@pytest.fixture
def many(tmp_path, monkeypatch, lemur_path):
    from sqlalchemy import select

    from storage import history, service
    from storage.db import get_database, utcnow
    from storage.models import Generation, Output

    monkeypatch.setenv("BACKDROP_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("BACKDROP_DATABASE_URL", raising=False)
    job_view.workers.clear()
    first, _ = service.generate_and_record(lemur_path.read_bytes(),
                                           GenerationRequest(background="color:#336699", prompt="first"))
    db = get_database()
    with db.session() as session:
        row = session.get(Generation, first)
        outputs = list(session.scalars(select(Output).where(Output.generation_id == first)))
        columns = {c.key: getattr(row, c.key) for c in Generation.__table__.columns if c.key != "id"}
        now = utcnow()
        copies = []
        for i in range(1, ROWS):
            kind = ("color", "gradient", "blur", "transparent")[i % 4]
            copies.append(Generation(**{**columns, "prompt": ("harbour" if i % 100 == 0 else "field") + f" {i}",
                                        "background_kind": kind, "favourite": i % 7 == 0,
                                        "status": "done" if i % 10 else "failed",
                                        "created_at": now - timedelta(minutes=i)}))
        session.add_all(copies)
        session.flush()
        session.add_all(Output(**{c.key: getattr(o, c.key) for c in Output.__table__.columns if c.key != "id"}
                               | {"generation_id": g.id}) for g in copies for o in outputs)
    assert history.count_generations() == ROWS
    yield
    job_view.workers().stop(timeout=30)
    job_view.workers.clear()


def timed(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def test_history_of_ten_thousand_generations_pages_and_searches_quickly(many):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file("../streamlit_app.py", default_timeout=60).run()
    at.switch_page("app_pages/history.py").run()  # the first run imports the page's modules: not timed
    figures = {"open": timed(lambda: at.switch_page("app_pages/history.py").run())}
    assert not at.exception, at.exception
    assert sum(1 for b in at.button if (b.key or "").startswith("history_open_")) == 12
    assert any(c.value.startswith(f"{ROWS} generation(s); page 1 of 834") for c in at.caption)
    figures["search"] = timed(lambda: at.text_input(key="history_search").set_value("harbour").run())
    assert any(c.value.startswith(f"{ROWS // 100 - 1} generation(s)") for c in at.caption), [c.value for c in at.caption]
    at.text_input(key="history_search").set_value("").run()
    figures["next_page"] = timed(lambda: at.button(key="history_next").click().run())
    assert not at.exception, at.exception
    print("history with", ROWS, "generations:", {k: round(v, 3) for k, v in figures.items()})
    assert all(seconds < LIMIT_S for seconds in figures.values()), figures
