"""Engines and migrations: SQLite by default (WAL, foreign keys on), PostgreSQL by URL.

SQLite writers take the write lock at ``BEGIN IMMEDIATE`` (not at their first write), so two
assignment transactions can never both read "one slot left" and both take it; Python's sqlite3
driver is told to stay out of transaction handling so that our BEGIN is the one that runs.
PostgreSQL uses row locks (``SELECT ... FOR UPDATE SKIP LOCKED``) in :mod:`alignkit.feedback.store`.
The schema is owned by the Alembic scripts shipped in ``alignkit/feedback/migrations``;
:func:`init_db` runs them programmatically (``upgrade head``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Engine, create_engine, event

MIGRATIONS = Path(__file__).parent / "migrations"


def normalize_url(url: str) -> str:
    """Accept a bare path as SQLite, and ``postgresql://`` as psycopg 3."""
    if "://" not in url:
        return f"sqlite:///{url}"
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str, echo: bool = False) -> Engine:
    url = normalize_url(url)
    if url.startswith("sqlite"):
        memory = ":memory:" in url or url == "sqlite://"
        pool: dict[str, Any] = {} if memory else {"pool_size": 20, "max_overflow": 20, "pool_timeout": 60}
        engine = create_engine(url, echo=echo, connect_args={"timeout": 60, "check_same_thread": False}, **pool)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            if not memory:
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("write") else "BEGIN")

        return engine
    # A pool as large as the web server's thread pool (anyio's 40 threads), so a request never waits
    # for a connection while a thread is free; no pre-ping round trip per checkout (a dropped
    # connection fails its request once and SQLAlchemy then invalidates the pool).
    return create_engine(url, echo=echo, pool_size=20, max_overflow=20, pool_timeout=60)


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%"))
    return cfg


def init_db(engine: Engine) -> None:
    """Create or upgrade the schema to the newest migration (idempotent)."""
    cfg = alembic_config(engine)
    with engine.connect() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
        conn.commit()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
