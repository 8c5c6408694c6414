"""Store fixtures: every store test runs on SQLite, and also on PostgreSQL when
``ALIGNKIT_TEST_PG_URL`` is set (each test then gets its own freshly created database)."""

from __future__ import annotations

import os
import uuid

import pytest

PG_URL = os.environ.get("ALIGNKIT_TEST_PG_URL")
BACKENDS = ["sqlite"] + ([pytest.param("postgresql", marks=pytest.mark.postgres)] if PG_URL else [])


def _pg_database() -> tuple[str, callable]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from alignkit.feedback.db import normalize_url

    admin = make_url(normalize_url(PG_URL))
    name = f"alignkit_test_{uuid.uuid4().hex[:12]}"
    engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = admin.set(database=name).render_as_string(hide_password=False)

    def drop() -> None:
        with engine.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()

    return url, drop


@pytest.fixture(params=BACKENDS)
def db_url(request, tmp_path):
    if request.param == "sqlite":
        yield str(tmp_path / "feedback.db")
        return
    url, drop = _pg_database()
    try:
        yield url
    finally:
        drop()


@pytest.fixture
def store(db_url):
    from alignkit.feedback.store import FeedbackStore

    s = FeedbackStore(db_url)
    yield s
    s.close()
