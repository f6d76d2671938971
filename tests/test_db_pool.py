"""A database that restarts or fails over under a running node (PostgreSQL).

A pooled connection is pinged at checkout (``pool_pre_ping``) and a dead one replaced
before use; a statement the database does not answer is a 503 problem document, never a
bare 500.
"""

from __future__ import annotations

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


def test_a_pooled_connection_that_died_is_replaced_before_use(engine: Engine) -> None:
    before = _backend_pid(engine)
    assert _kill_backends_of(engine) == 1
    assert _backend_pid(engine) != before  # pinged at checkout, found dead, replaced: no error


def test_a_database_that_does_not_answer_is_a_503_problem_document() -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from gsomia.node import problems

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
