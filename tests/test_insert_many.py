"""``inserts.insert_many``: the rows as given, in the order given, on both backends."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from gsomia.store import schema as t
from gsomia.store.db import open_database
from gsomia.store.inserts import insert_many
from nodes import pg_databases


def item_row(n: int, at: datetime, **changes: object) -> dict[str, object]:
    """An item row, its id made from ``n``."""
    return {
        "item_id": f"00000000-0000-4000-8000-{n:012d}",
        "agreement": "a",
        "originator": "KOR",
        "direction": "in",
        "peer": "KOR",
        "classification": "c",
        "label": "{}",
        "envelope": b"e",
        "lane": "bulk",
        "provided_at": at,
        "received_at": None,
        "route": "direct",
        **changes,
    }


@pytest.fixture
def engine(tmp_path: Path, backend: str) -> Iterator[Engine]:
    if backend == "sqlite":
        e = open_database(f"sqlite:///{tmp_path}/n.db")
        yield e
        e.dispose()
        return
    with pg_databases(1) as (url,):
        e = open_database(url)
        yield e
        e.dispose()


def _outbox_row(i: int, at: datetime) -> dict[str, object]:
    return {
        "peer": "JPN",
        "lane": "bulk",
        "kind": "item",
        "ref": f"ref-{i:04d}",
        "body": bytes([i % 256]) * (i + 1),
        "created_at": at,
        "attempts": 0,
    }


def test_rows_keep_their_values_and_their_order(engine: Engine) -> None:
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    # Refs in an order their sort would not give: the seq must follow the order given.
    order = [(i * 37) % 300 for i in range(300)]
    with engine.begin() as conn:
        insert_many(conn, t.outbox, [_outbox_row(i, at + timedelta(seconds=i)) for i in order])
    with engine.connect() as conn:
        rows = conn.execute(select(t.outbox).order_by(t.outbox.c.seq)).mappings().all()
    assert [r["ref"] for r in rows] == [f"ref-{i:04d}" for i in order]
    for r, i in zip(rows, order, strict=True):
        assert bytes(r["body"]) == bytes([i % 256]) * (i + 1)
        assert r["created_at"] == at + timedelta(seconds=i)
        assert r["attempts"] == 0
        assert r["delivered_at"] is None
        assert r["claimed_by"] is None


@pytest.mark.parametrize("backend", ["postgresql"])  # RETURNING from many rows is the PostgreSQL form
def test_conflicts_are_skipped_and_the_fresh_ones_returned(engine: Engine) -> None:
    at = datetime(2026, 1, 2, tzinfo=UTC)

    def item(n: int) -> dict[str, object]:
        return item_row(n, at)

    with engine.begin() as conn:
        first = insert_many(conn, t.items, [item(1), item(2)], ignore_conflicts_on="item_id", returning="item_id")
        again = insert_many(
            conn, t.items, [item(2), item(3), item(1)], ignore_conflicts_on="item_id", returning="item_id"
        )
    assert sorted(first) == [item(1)["item_id"], item(2)["item_id"]]
    assert again == [item(3)["item_id"]]
    with engine.connect() as conn:
        stored = conn.execute(select(t.items.c.item_id, t.items.c.received_at).order_by(t.items.c.seq)).all()
    assert [s[0] for s in stored] == [item(n)["item_id"] for n in (1, 2, 3)]
    assert all(s[1] is None for s in stored)


@pytest.mark.parametrize("backend", ["postgresql"])  # one statement of data-modifying CTEs: PostgreSQL's
def test_received_reports_are_queued_and_alerted_once_each_in_order(engine: Engine) -> None:
    """``store_fresh_alerts``: a repeat is not stored, queued or alerted twice; order is kept."""
    from sqlalchemy import text

    from gsomia.store.ledger_store import store_fresh_alerts

    at = datetime(2026, 1, 2, tzinfo=UTC)

    def report(n: int) -> tuple[dict[str, object], dict[str, object], dict[str, object]]:
        row = item_row(n, at, lane="flash", received_at=at)
        entry = {"at": at, "kind": "receipt", "actor": "KOR", "item_id": row["item_id"], "detail": {"from": "KOR"}}
        alert = {"alert_id": row["item_id"], "origin": "KOR", "direction": "in", "body": "{}", "created_at": at}
        return row, entry, alert

    def store(*ns: int) -> dict[str, int]:
        rows, entries, alerts = zip(*(report(n) for n in ns), strict=True)
        with engine.connect() as conn:
            auto = conn.execution_options(isolation_level="AUTOCOMMIT")
            return store_fresh_alerts(auto, t.items, list(rows), list(entries), t.alerts, list(alerts))

    first = store(1)
    again = store(1, 3, 2)  # a repeat, then two new ones in that order
    ids = {n: item_row(n, at)["item_id"] for n in (1, 2, 3)}
    assert list(first) == [ids[1]]
    assert list(again) == [ids[3], ids[2]]
    assert again[ids[3]] < again[ids[2]]
    with engine.connect() as conn:
        queued = conn.execute(text("SELECT item_id FROM ledger_queue ORDER BY seq")).scalars().all()
        alerted = conn.execute(text("SELECT alert_id FROM alerts ORDER BY seq")).scalars().all()
        stored = conn.execute(text("SELECT count(*) FROM items")).scalar_one()
    assert queued == alerted == [ids[1], ids[3], ids[2]]
    assert stored == 3


@pytest.mark.parametrize("backend", ["postgresql"])
@pytest.mark.parametrize("claimed", [True, False])
def test_sent_reports_are_stored_queued_alerted_and_returned_in_order(engine: Engine, claimed: bool) -> None:
    """``store_sent_alerts``: every row of every table, in the order given; each outbox row
    comes back with its columns and the seq of its own report's alert."""
    from sqlalchemy import text

    from gsomia.store.ledger_store import store_sent_alerts

    at = datetime(2026, 1, 2, tzinfo=UTC)
    until = at + timedelta(seconds=30)
    with engine.begin() as conn:  # an alert already there: the seqs of alerts and outbox rows differ
        conn.execute(
            t.alerts.insert(), {"alert_id": "x", "origin": "KOR", "direction": "in", "body": "{}", "created_at": at}
        )
    ns = [3, 1, 2]
    rows = [item_row(n, at, lane="flash", direction="out", peer="KOR") for n in ns]
    ids = [str(r["item_id"]) for r in rows]
    outbox = [
        {
            "peer": "KOR",
            "lane": "flash",
            "kind": "item",
            "ref": item_id,
            "body": item_id.encode(),
            "created_at": at,
            "attempts": 0,
            **({"claimed_by": "worker-1", "claimed_until": until} if claimed else {}),
        }
        for item_id in ids
    ]
    entries = [{"at": at, "kind": "provide", "actor": "duty", "item_id": i, "detail": {"to": "KOR"}} for i in ids]
    alerts = [{"alert_id": i, "origin": "JPN", "direction": "out", "body": "{}", "created_at": at} for i in ids]
    with engine.connect() as conn:
        auto = conn.execution_options(isolation_level="AUTOCOMMIT")
        sent = store_sent_alerts(
            auto, t.items, rows, t.outbox, outbox, ("seq", "ref", "body"), entries, t.alerts, alerts
        )
    assert [r["ref"] for r in sent] == ids
    assert [bytes(r["body"]) for r in sent] == [i.encode() for i in ids]
    with engine.connect() as conn:
        stored = conn.execute(text("SELECT item_id FROM items ORDER BY seq")).scalars().all()
        queued = conn.execute(text("SELECT item_id, detail FROM ledger_queue ORDER BY seq")).all()
        alerted = dict(conn.execute(text("SELECT alert_id, seq FROM alerts")).all())
        boxed = conn.execute(text("SELECT seq, ref, claimed_by, claimed_until FROM outbox ORDER BY seq")).all()
    assert stored == ids
    assert [q[0] for q in queued] == ids
    assert all(q[1] == '{"to": "KOR"}' for q in queued)
    assert [r["alert_seq"] for r in sent] == [alerted[i] for i in ids]
    assert sorted(alerted.values()) == [alerted["x"], *[alerted[i] for i in ids]]  # after the one before, in order
    assert [(b[0], b[1]) for b in boxed] == [(r["seq"], r["ref"]) for r in sent]
    assert all(b[2:] == (("worker-1", until) if claimed else (None, None)) for b in boxed)
