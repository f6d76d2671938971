"""The ledger's queue: entries committed with flash reports join the log later, each once, in order."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from gsomia.store import ledger_store
from gsomia.store import schema as t
from gsomia.store.db import open_database
from nodes import pg_databases

T0 = datetime(2019, 11, 22, 9, 0, tzinfo=UTC)


def entry(n: int) -> dict[str, object]:
    return {
        "at": T0 + timedelta(seconds=n, microseconds=n),
        "kind": "receipt",
        "actor": "JPN",
        "item_id": f"item-{n}",
        "detail": {"n": n, "lane": "flash", "text": "발사 ミサイル"},
    }


@pytest.fixture(params=["sqlite", "postgresql"])
def engines(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Engine, Engine]]:
    """Two empty node databases on the backend."""
    if request.param == "sqlite":
        pair = (open_database(f"sqlite:///{tmp_path}/a.db"), open_database(f"sqlite:///{tmp_path}/b.db"))
        yield pair
        for e in pair:
            e.dispose()
        return
    with pg_databases(2) as urls:
        pair = (open_database(urls[0]), open_database(urls[1]))
        yield pair
        for e in pair:
            e.dispose()


def log_of(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(select(t.ledger_entries.c.body).order_by(t.ledger_entries.c.idx)).scalars())


def test_queued_entries_join_the_log_as_the_same_entries_appended_then_would(engines: tuple[Engine, Engine]) -> None:
    queued_then_sequenced, direct = engines
    rows = [entry(n) for n in range(6)]
    with queued_then_sequenced.begin() as conn:
        ledger_store.append_rows(conn, rows[0:2])
        ledger_store.enqueue_rows(conn, rows[2:5])
        ledger_store.append_rows(conn, rows[5:6])
        assert ledger_store.queued(conn) == 3
        assert ledger_store.size(conn) == 3
    with queued_then_sequenced.begin() as conn:
        assert ledger_store.sequence_queued(conn) == 3
        assert ledger_store.sequence_queued(conn) == 0
        assert ledger_store.queued(conn) == 0
    with direct.begin() as conn:
        ledger_store.append_rows(conn, [rows[i] for i in (0, 1, 5, 2, 3, 4)])  # queued ones join when sequenced
    assert log_of(queued_then_sequenced) == log_of(direct)
    with queued_then_sequenced.connect() as a, direct.connect() as b:
        assert ledger_store.verify_all(a).root == ledger_store.verify_all(b).root


def test_two_sequencers_at_once_append_each_queued_entry_exactly_once(engines: tuple[Engine, Engine]) -> None:
    engine, _ = engines
    with engine.begin() as conn:
        ledger_store.enqueue_rows(conn, [entry(n) for n in range(300)])
    errors: list[BaseException] = []

    def sequencer() -> None:
        try:
            while True:
                with engine.begin() as conn:
                    if not ledger_store.sequence_queued(conn, limit=7):
                        return
        except BaseException as exc:  # the test reports it
            errors.append(exc)

    threads = [threading.Thread(target=sequencer) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(60)
    assert errors == []
    with engine.connect() as conn:
        items = list(conn.execute(select(t.ledger_entries.c.item_id).order_by(t.ledger_entries.c.idx)).scalars())
        assert ledger_store.verify_all(conn).size == 300
    assert items == [f"item-{n}" for n in range(300)]  # once each, in the order queued


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(["append", "queue", "sequence"]), min_size=1, max_size=12))
def test_any_mix_of_appends_queueing_and_sequencing_keeps_a_log_that_verifies(
    tmp_path_factory: pytest.TempPathFactory, steps: list[str]
) -> None:
    engine = open_database(f"sqlite:///{tmp_path_factory.mktemp('mix')}/node.db")
    expected: list[str] = []  # item ids, in the order they must stand in the log
    waiting: list[str] = []
    for n, step in enumerate(steps):
        with engine.begin() as conn:
            if step == "append":
                ledger_store.append_rows(conn, [entry(n)])
                expected.append(f"item-{n}")
            elif step == "queue":
                ledger_store.enqueue_rows(conn, [entry(n)])
                waiting.append(f"item-{n}")
            else:
                ledger_store.sequence_queued(conn)
                expected += waiting
                waiting = []
    with engine.connect() as conn:
        items = list(conn.execute(select(t.ledger_entries.c.item_id).order_by(t.ledger_entries.c.idx)).scalars())
        assert ledger_store.verify_all(conn).size == len(expected)
        assert ledger_store.queued(conn) == len(waiting)
    engine.dispose()
    assert items == expected
