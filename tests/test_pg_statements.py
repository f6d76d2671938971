"""PostgreSQL statements that save work: a claim updates outbox rows in place (heap-only tuples, migration
0009); received flash reports are stored in one statement (``store_fresh_alerts``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from gsomia.store import db
from gsomia.store import schema as t
from gsomia.store.ledger_store import insert_many
from nodes import pg_databases


def test_a_claim_adds_no_index_entries_for_the_rows_it_takes() -> None:
    with pg_databases(1) as [url]:
        engine = db.open_database(url)
        try:
            now = datetime.now(UTC)
            rows = [
                {
                    "peer": "JPN",
                    "lane": "bulk",
                    "kind": "item",
                    "ref": f"item-{n}",
                    "body": b"",
                    "created_at": now,
                    "attempts": 0,
                }
                for n in range(500)
            ]
            with engine.begin() as conn:
                insert_many(conn, t.outbox, rows)
            with engine.begin() as conn:  # what a claim sets: no indexed column
                taken = conn.execute(
                    text("UPDATE outbox SET claimed_by = 'w1', claimed_until = :until"),
                    {"until": now + timedelta(seconds=30)},
                ).rowcount
                hot = conn.execute(
                    text("SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables WHERE relname = 'outbox'")
                ).one()
        finally:
            engine.dispose()
    assert taken == 500
    assert hot.n_tup_upd == 500
    assert hot.n_tup_hot_upd >= 400  # 460 here; pages filled to the brim (the default) gave none


def test_received_reports_stored_in_one_statement_queue_entries_and_alerts_for_fresh_ones_only() -> None:
    """``store_fresh_alerts``: a repeat is not stored, queued or alerted twice; order is kept."""
    from gsomia.store.ledger_store import store_fresh_alerts

    def item(n: int) -> dict[str, object]:
        return {
            "item_id": f"item-{n}",
            "agreement": "a",
            "originator": "JPN",
            "direction": "in",
            "peer": "JPN",
            "classification": "秘",
            "label": "{}",
            "envelope": bytes([n]) * 10,
            "lane": "flash",
            "provided_at": now,
            "received_at": now,
            "route": "direct",
        }

    def entry(n: int) -> dict[str, object]:
        return {"at": now, "kind": "receipt", "actor": "JPN", "item_id": f"item-{n}", "detail": {"from": "JPN"}}

    def alert(n: int) -> dict[str, object]:
        return {"alert_id": f"item-{n}", "origin": "JPN", "direction": "in", "body": "{}", "created_at": now}

    now = datetime.now(UTC)
    with pg_databases(1) as [url]:
        engine = db.open_database(url)
        try:
            with engine.connect() as conn:
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
                first = store_fresh_alerts(conn, t.items, [item(1)], [entry(1)], t.alerts, [alert(1)])
                again = store_fresh_alerts(  # item 1 again (a repeat), then 3 and 2 in that order
                    conn,
                    t.items,
                    [item(1), item(3), item(2)],
                    [entry(1), entry(3), entry(2)],
                    t.alerts,
                    [alert(1), alert(3), alert(2)],
                )
                queued = conn.execute(text("SELECT item_id FROM ledger_queue ORDER BY seq")).scalars().all()
                alerts = conn.execute(text("SELECT alert_id FROM alerts ORDER BY seq")).scalars().all()
                stored = conn.execute(text("SELECT count(*) FROM items")).scalar_one()
        finally:
            engine.dispose()
    assert list(first) == ["item-1"]
    assert list(again) == ["item-3", "item-2"]
    assert again["item-3"] < again["item-2"]
    assert queued == ["item-1", "item-3", "item-2"]
    assert alerts == ["item-1", "item-3", "item-2"]
    assert stored == 3
