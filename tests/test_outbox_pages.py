"""PostgreSQL: a claim updates outbox rows in place (heap-only tuples), as migration 0009 intends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from gsomia.store import db
from gsomia.store import schema as t
from gsomia.store.inserts import insert_many
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
