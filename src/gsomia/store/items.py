"""Items, with their alerts (flash reports) and ledger entries, as a provision or a receipt writes them.

Each write here is one transaction (or, on PostgreSQL's flash lane, one statement in
autocommit): the items, their outbox rows, their ledger entries and their alerts commit
together or not at all. The dialect's fast paths are chosen here and nowhere else.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Table, insert, select
from sqlalchemy.dialects import sqlite

from gsomia.core.label import Label
from gsomia.store import flash, gate, inserts, ledger_store, outbox
from gsomia.store import schema as t
from gsomia.store.db import reading
from gsomia.store.lane import Store


def item_row(
    label: Label, env: bytes, direction: str, peer: str, lane: str, provided: datetime, received: datetime | None
) -> dict[str, Any]:
    return {
        "item_id": label.item_id,
        "agreement": label.agreement,
        "originator": label.originator,
        "direction": direction,
        "peer": peer,
        "classification": label.classification,
        "label": label.to_bytes().decode("utf-8"),
        "envelope": env,
        "lane": lane,
        "provided_at": provided,
        "received_at": received,
        "route": label.route,
    }


def alert_row(item_id: str, origin: str, direction: str, now: datetime) -> dict[str, Any]:
    return {"alert_id": item_id, "origin": origin, "direction": direction, "body": "{}", "created_at": now}


@dataclass(frozen=True)
class Written:
    """What a provision or a receipt stored: its outbox rows claimed, its alerts' seqs by item
    id, and how many ledger entries it queued (they join the log when the sequencer runs)."""

    claimed: list[outbox.OutboxRow]
    alert_seqs: dict[str, int]
    queued: int
    stored: list[str]  # the ids of the items stored (a receipt's repeats are not)


def provision(
    store: Store,
    flash_lane: bool,
    rows: list[dict[str, Any]],
    sent: list[dict[str, Any]],
    claimed: bool,
    entries: list[dict[str, Any]],
    alerts: list[dict[str, Any]],
) -> Written:
    """Items provided, their outbox rows (``claimed``: already claimed), their ledger entries
    (queued on the flash lane, R17: never behind a bulk transaction's hold on the log) and
    their alerts (the flash lane's), all or nothing."""
    if flash_lane and store.one_round_trip:
        with store.engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            returned = ledger_store.store_sent_alerts(
                conn, store.items, rows, store.outbox, sent, outbox.CLAIMED, entries, store.alerts, alerts
            )
        seqs = {row["ref"]: row.pop("alert_seq") for row in returned}
        handed = [outbox.keyed(store, row) for row in returned] if claimed else []
        return Written(handed, seqs, len(entries), [r["item_id"] for r in rows])
    taken: list[outbox.OutboxRow] = []
    alert_seqs: dict[str, int] = {}
    with gate.begin(store.engine) as conn:
        _insert_rows(conn, store.items, rows)
        if claimed:
            taken = outbox.add_claimed(conn, store, sent)
        else:
            outbox.add(conn, sent, store.outbox)
        _log(conn, flash_lane, entries)
        if alerts:
            found = conn.execute(_insert_alerts(store.alerts), alerts).scalars()
            alert_seqs = {a["alert_id"]: int(seq) for a, seq in zip(alerts, found, strict=True)}
    return Written(taken, alert_seqs, len(entries) if flash_lane else 0, [r["item_id"] for r in rows])


def receipt(
    main: Engine,
    store: Store,
    flash_lane: bool,
    rows: list[dict[str, Any]],
    entries: list[dict[str, Any]],
    alerts: list[dict[str, Any]],
) -> Written:
    """Items received: each stored once however often delivered (insert-or-ignore by id), and
    the ledger entries and alerts of those stored now (matched by ``item_id``, ``alert_id``).

    With a flash file of its own, an item moved to the main tables already is a repeat: it
    is looked for there while no trim can take it from the flash file meanwhile."""
    if flash_lane and store.one_round_trip and rows:
        return _receipt_in_one_statement(main, store, rows, entries, alerts)
    stored: list[str] = []
    seqs: dict[str, int] = {}
    with gate.begin(store.engine) as conn:
        if store.separate:  # under the flash file's lock, which the move's delete waits for
            known = moved_already(main, [r["item_id"] for r in rows])
            rows = [r for r in rows if r["item_id"] not in known]
        if rows:
            stored_now = _insert_new_items(conn, store.items, rows)
            stored = [r["item_id"] for r in rows if r["item_id"] in stored_now]  # delivery order
        fresh = set(stored)
        _log(conn, flash_lane, [e for e in entries if e["item_id"] in fresh])
        new_alerts = [a for a in alerts if a["alert_id"] in fresh]
        if new_alerts:
            found = conn.execute(_insert_alerts(store.alerts), new_alerts).scalars()
            seqs = {a["alert_id"]: int(seq) for a, seq in zip(new_alerts, found, strict=True)}
    return Written([], seqs, len(fresh) if flash_lane else 0, stored)


def _receipt_in_one_statement(
    main: Engine, store: Store, rows: list[dict[str, Any]], entries: list[dict[str, Any]], alerts: list[dict[str, Any]]
) -> Written:
    """PostgreSQL: one round trip instead of six (BEGIN, three inserts, COMMIT, and the pool's
    ping before them), in autocommit; in a transaction holding off trims where the flash
    database is a separate one."""
    with store.engine.connect() as conn:
        if store.separate:
            conn.begin()
            flash.hold_trims(conn)
            known = moved_already(main, [r["item_id"] for r in rows])
            rows = [r for r in rows if r["item_id"] not in known]
            entries = [e for e in entries if e["item_id"] not in known]
            alerts = [a for a in alerts if a["alert_id"] not in known]
        else:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        seqs = ledger_store.store_fresh_alerts(conn, store.items, rows, entries, store.alerts, alerts) if rows else {}
        if store.separate:
            conn.commit()
    return Written([], seqs, len(seqs), [r["item_id"] for r in rows if r["item_id"] in seqs])


def moved_already(main: Engine, item_ids: Sequence[str]) -> set[str]:
    """Which of these items the main tables hold: reports moved from the flash store.

    On PostgreSQL as one array parameter in SQL written out: a flash report's receipt waits
    for it, and Core's statement costs 0.1 ms more CPU (compiling the expanding IN)."""
    with reading(main) as conn:
        if main.dialect.name == "postgresql":
            found = conn.exec_driver_sql(_MOVED_ALREADY, (list(item_ids),))
            return {str(item_id) for (item_id,) in found}
        return set(conn.execute(select(t.items.c.item_id).where(t.items.c.item_id.in_(item_ids))).scalars())


_MOVED_ALREADY = "SELECT item_id FROM items WHERE item_id = ANY(%s)"


def _log(conn: Connection, queue: bool, entries: list[dict[str, Any]]) -> None:
    """Ledger entries in this transaction: queued on the flash lane (R17), appended on the bulk one.

    A bulk transaction holds the log's counter from its first entry until it commits; a
    flash report that waited for it would wait for the whole batch."""
    if queue:
        ledger_store.enqueue_rows(conn, entries)
    elif entries:
        ledger_store.append_rows(conn, entries)


def _insert_rows(conn: Connection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Many rows in one statement on PostgreSQL (``insert_many``); Core's executemany on SQLite,
    where a statement costs no round trip and one big statement is no faster."""
    if conn.dialect.name == "postgresql":
        inserts.insert_many(conn, table, rows)
    else:
        conn.execute(_insert(table), rows)


def _insert_new_items(conn: Connection, items: Table, rows: list[dict[str, Any]]) -> set[str]:
    """Insert-or-ignore by item id: the ids of the rows stored (a redelivery, or a race between
    two senders' workers, stores nothing twice)."""
    if conn.dialect.name == "postgresql":
        return set(inserts.insert_many(conn, items, rows, ignore_conflicts_on="item_id", returning="item_id"))
    return set(conn.execute(_insert_or_ignore(items), rows).scalars())


@functools.cache
def _insert(table: Table) -> Any:
    return insert(table)


@functools.cache
def _insert_alerts(alerts: Table) -> Any:
    return insert(alerts).returning(alerts.c.seq, sort_by_parameter_order=True)


@functools.cache
def _insert_or_ignore(items: Table) -> Any:
    return sqlite.insert(items).on_conflict_do_nothing(index_elements=["item_id"]).returning(items.c.item_id)
