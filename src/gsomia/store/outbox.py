"""The outbox: what a node owes its partners, written in the transaction that makes it owed.

A row is claimed by one delivery worker for a lease, sent, then marked delivered with the
partner's receipt kept beside it (or given back, or counted as a failed attempt). Each
lane's rows are in the file its transactions write (``store.lane.Store``); the SQL here
is the only place that knows which dialect it speaks.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, TypedDict

from sqlalchemy import Connection, Table, all_, and_, any_, bindparam, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql

from gsomia.store import gate
from gsomia.store import schema as t
from gsomia.store.db import reading
from gsomia.store.lane import Store

# An outbox row's name across the node's files: ("main", seq) or, for a row of the flash file
# (``store.flash``), ("flash", seq). Each file counts its own seqs.
RowKey = tuple[str, int]


class OutboxRow(TypedDict):
    """What a claim hands the delivery worker of each row."""

    seq: int
    kind: str  # item, note, record, alarm
    ref: str  # the item, note, record or alarm id
    body: bytes  # what is sent: an envelope, or a JSON message
    attempts: int
    key: RowKey


# The columns a claim returns of each row (``OutboxRow`` without its key).
CLAIMED = ("seq", "kind", "ref", "body", "attempts")


def new_row(peer: str, lane: str, kind: str, ref: str, body: bytes, created: datetime) -> dict[str, Any]:
    """A row to insert; ``created`` orders the flash lane's rows of the two files."""
    return {"peer": peer, "lane": lane, "kind": kind, "ref": ref, "body": body, "created_at": created, "attempts": 0}


def add(conn: Connection, rows: Sequence[dict[str, Any]], table: Table = t.outbox) -> None:
    """Insert rows (``new_row``) in the caller's transaction, in order: delivery follows the seq."""
    if rows:
        conn.execute(_insert(table), list(rows))


def add_claimed(conn: Connection, store: Store, rows: Sequence[dict[str, Any]]) -> list[OutboxRow]:
    """Insert rows already claimed (``claimed_by``, ``claimed_until`` set) and hand them back as a claim."""
    returned = conn.execute(_insert_claimed(store.outbox), list(rows))
    return [keyed(store, dict(r)) for r in returned.mappings()]


def keyed(store: Store, row: dict[str, Any]) -> OutboxRow:
    """A claimed row with its name across the node's files."""
    row["key"] = (store.name, row["seq"])
    return row  # type: ignore[return-value]  # the columns of ``CLAIMED`` and the key


def claim(
    store: Store, peer: str, lane: str, worker: str, limit: int, now: datetime, until: datetime, skip: list[int]
) -> list[dict[str, Any]]:
    """Claim up to ``limit`` free rows of ``store`` in order, with their ``created_at``.

    On PostgreSQL, rows locked by another worker are skipped. A row this worker holds
    already comes back, unless its seq is in ``skip`` (the worker has it in hand)."""
    given: dict[str, Any] = {"p_peer": peer, "p_lane": lane, "p_worker": worker, "p_now": now}
    if skip:
        given["p_skip"] = skip
    peek, take = _claim_statements(store.outbox, _is_pg(store), bool(skip))
    with reading(store.engine) as conn:  # nothing to claim (an idle worker's poll): no write transaction
        if conn.execute(peek, given).first() is None:
            return []
    with gate.begin(store.engine) as conn:
        rows = conn.execute(take, {**given, "p_limit": limit, "p_until": until}).mappings().all()
        claimed: list[dict[str, Any]] = [dict(keyed(store, dict(r))) for r in rows]
        claimed.sort(key=lambda r: int(r["seq"]))
        _fill_envelopes(conn, store, claimed)
    return claimed


def mark_delivered(conn: Connection, store: Store, seqs: Sequence[int], now: datetime, refused: dict[str, str]) -> None:
    """Rows delivered; those the partner refused keep its reason."""
    ob = store.outbox
    conn.execute(_mark_delivered(ob, _is_pg(store)), {"seqs": list(seqs), "now": now})
    for ref, reason in refused.items():
        conn.execute(update(ob).where(and_(ob.c.seq.in_(seqs), ob.c.ref == ref)).values(last_error=reason))


def keep_receipt(conn: Connection, store: Store, receipt: dict[str, Any], signature: str, now: datetime) -> None:
    conn.execute(
        _insert(store.receipts),
        {
            "peer": receipt.get("node", "?"),
            "body": json.dumps(receipt, ensure_ascii=False),
            "signature": signature,
            "received_at": now,
        },
    )


def fail(store: Store, sent: Sequence[int], given_back: Sequence[int], error: str, retry_at: datetime) -> None:
    """Count an attempt on ``sent`` rows (not before ``retry_at`` again); give back ``given_back`` unsent."""
    ob = store.outbox
    with gate.begin(store.engine) as conn:
        if given_back:
            conn.execute(update(ob).where(ob.c.seq.in_(given_back)).values(claimed_until=None))
        conn.execute(
            update(ob)
            .where(ob.c.seq.in_(sent))
            .values(attempts=ob.c.attempts + 1, next_attempt_at=retry_at, claimed_until=None, last_error=error[:500])
        )


def release(store: Store, worker: str) -> None:
    """Give back what ``worker`` holds unsent."""
    ob = store.outbox
    with gate.begin(store.engine) as conn:
        conn.execute(
            update(ob).where(ob.c.claimed_by == worker, ob.c.delivered_at.is_(None)).values(claimed_until=None)
        )


def pending(store: Store, peer: str | None) -> int:
    """Rows of ``store`` not yet delivered (to ``peer``, if named)."""
    q = select(func.count()).select_from(store.outbox).where(store.outbox.c.delivered_at.is_(None))
    if peer:
        q = q.where(store.outbox.c.peer == peer)
    with store.engine.connect() as conn:
        return int(conn.execute(q).scalar_one())


def lease(now: datetime, seconds: float) -> datetime:
    return now + timedelta(seconds=seconds)


def _fill_envelopes(conn: Connection, store: Store, rows: list[dict[str, Any]]) -> None:
    """A bulk item's outbox row holds no copy of its envelope (written once, in ``items``): read it.

    Rows written before that (an old database: a non-empty body) and flash reports' rows
    keep their own copy, which is sent as it is."""
    refs = [r["ref"] for r in rows if r["kind"] == "item" and not r["body"]]
    if not refs:
        return
    found = dict(conn.execute(_envelopes_of(t.items, _is_pg(store)), {"refs": refs}).all())
    for r in rows:
        if r["kind"] == "item" and not r["body"]:
            r["body"] = found[r["ref"]]


def _is_pg(store: Store) -> bool:
    return store.engine.dialect.name == "postgresql"


# Statements of a flash report's path, built once per table (the flash file has tables of its
# own): a constant statement only binds its parameters, where a new one has its cache key
# derived again on every call, three times the CPU on a flash report's way.


@functools.cache
def _insert(table: Table) -> Any:
    return insert(table)


@functools.cache
def _insert_claimed(outbox: Table) -> Any:
    return insert(outbox).returning(*(outbox.c[name] for name in CLAIMED), sort_by_parameter_order=True)


def among(column: Any, name: str, pg: bool, negate: bool = False) -> Any:
    """``column`` in (or, negated, not in) the list bound to ``name``.

    On PostgreSQL one array parameter (``= ANY``, ``<> ALL``): an expanded ``IN`` list is
    a statement of its own for each length, which SQLAlchemy renders, psycopg parses and
    the server plans anew on every call, a tenth of a sending node's CPU at 256 rows a batch."""
    if pg:
        values = bindparam(name, type_=postgresql.ARRAY(column.type))
        return column != all_(values) if negate else column == any_(values)
    values = bindparam(name, expanding=True)
    return column.not_in(values) if negate else column.in_(values)


@functools.cache
def _mark_delivered(outbox: Table, pg: bool) -> Any:
    return (
        update(outbox).where(among(outbox.c.seq, "seqs", pg)).values(delivered_at=bindparam("now"), claimed_until=None)
    )


@functools.cache
def _envelopes_of(items: Table, pg: bool) -> Any:
    return select(items.c.item_id, items.c.envelope).where(among(items.c.item_id, "refs", pg))


@functools.cache
def _claim_statements(outbox: Table, skip_locked: bool, skipping: bool = False) -> tuple[Any, Any]:
    """An idle worker's look at the outbox (every 0.2 s on the flash lane), and the claim.

    A row is free when unclaimed, its lease lapsed, or claimed by this worker already (and
    not in ``p_skip``, with ``skipping``: rows it has in hand). There is no per-row "not
    before": skipping a row that is backing off would let a later one overtake it. The
    worker backs off as a whole, so order holds."""
    ob = outbox
    free = or_(
        ob.c.claimed_until.is_(None), ob.c.claimed_until < bindparam("p_now"), ob.c.claimed_by == bindparam("p_worker")
    )
    if skipping:
        free = and_(free, among(ob.c.seq, "p_skip", skip_locked, negate=True))
    pending = (
        select(ob.c.seq)
        .where(ob.c.peer == bindparam("p_peer"), ob.c.lane == bindparam("p_lane"), ob.c.delivered_at.is_(None), free)
        .order_by(ob.c.seq)
    )
    batch = pending.limit(bindparam("p_limit"))
    if skip_locked:  # PostgreSQL: rows another worker is claiming are skipped, not waited for
        batch = batch.with_for_update(skip_locked=True)
    # PostgreSQL: ``= ANY(ARRAY(…))`` finds the claimed rows by their key, where ``IN (…)`` is
    # planned as a hash join over the whole outbox, every row ever sent.
    chosen = (
        ob.c.seq == any_(func.array(batch.scalar_subquery())) if skip_locked else ob.c.seq.in_(batch.scalar_subquery())
    )
    take = (
        update(ob)
        .where(chosen, free)
        .values(claimed_by=bindparam("p_worker"), claimed_until=bindparam("p_until"))
        .returning(*(ob.c[name] for name in CLAIMED), ob.c.created_at)
    )
    return pending.limit(1), take
