"""A database that restarts or fails over under a running node (PostgreSQL).

A pooled connection is checked at checkout (``db._check_alive``) and one the server has
closed replaced before use; a statement the database does not answer is a 503 problem
document, never a bare 500.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError

from gsomia.store import db
from nodes import PG_ADMIN, pg_databases


@pytest.fixture
def engine() -> Iterator[Engine]:
    with pg_databases(1) as [url]:
        made = db.make_engine(url)
        yield made
        made.dispose()


def _kill_backends_of(engine: Engine) -> int:
    """End the server process of every connection the pool holds, as a restart would."""
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            return len(
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :d AND pid <> pg_backend_pid()"
                    ),
                    {"d": engine.url.database},
                ).all()
            )
    finally:
        admin.dispose()


def _backend_pid(engine: Engine) -> int:
    with db.reading(engine) as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def _gone(pid: int) -> None:
    """Wait until the server process ``pid`` has exited (a termination is only signalled)."""
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        deadline = time.monotonic() + 10
        with admin.connect() as conn:
            while conn.execute(text("SELECT 1 FROM pg_stat_activity WHERE pid = :p"), {"p": pid}).first():
                assert time.monotonic() < deadline, f"server process {pid} did not exit"
                time.sleep(0.01)
    finally:
        admin.dispose()


def test_a_pooled_connection_that_died_is_replaced_before_use(engine: Engine) -> None:
    before = _backend_pid(engine)
    assert _kill_backends_of(engine) == 1
    _gone(before)
    assert _backend_pid(engine) != before  # found closed at checkout, replaced: no error


def test_a_pooled_connection_is_checked_without_a_round_trip(engine: Engine) -> None:
    """A live pooled connection is handed out as it is: the server hears nothing (no ping)."""
    _backend_pid(engine)  # the pool holds one connection; the server saw that statement last
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn, admin.connect() as watch:
            pid = conn.connection.dbapi_connection.info.backend_pid  # type: ignore[union-attr]
            last = watch.execute(text("SELECT query FROM pg_stat_activity WHERE pid = :p"), {"p": pid}).scalar_one()
    finally:
        admin.dispose()
    assert last == "SELECT pg_backend_pid()"


def test_a_database_that_does_not_answer_is_a_503_problem_document() -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from gsomia.node.api import problems

    app = FastAPI()
    problems.install(app)

    @app.get("/items")
    def items() -> None:
        raise OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))

    r = TestClient(app).get("/items")
    assert r.status_code == 503
    assert r.headers["content-type"] == problems.MEDIA_TYPE
    assert r.headers["retry-after"] == "1"
    assert r.json()["title"] == "Database unavailable"
    assert "server closed" not in r.text  # no internals
