"""The node's ledger in its database: appends inside the caller's transaction, proofs
in one query, and a full verification that names the first bad entry.

The leaf index is gapless: a one-row counter (``ledger_state``) is bumped with
``UPDATE … RETURNING`` at the start of each append, which also serialises
appenders (PostgreSQL row lock; SQLite's single writer) so two transactions never
take the same index.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, insert, select, tuple_, update

from gsomia import ledger, merkle
from gsomia.store import schema as t

_CHUNK = 400  # keys per IN (...) list


def _utc(at: Any) -> datetime:
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC)  # type: ignore[no-any-return]


def entry_body(index: int, at: datetime, kind: str, actor: str, item_id: str | None, detail: Any) -> bytes:
    return ledger.entry_bytes(
        {"index": index, "at": _utc(at).isoformat(), "kind": kind, "actor": actor, "item_id": item_id, "detail": detail}
    )


def fetch_nodes(conn: Connection, keys: Iterable[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    wanted = list(keys)
    found: dict[tuple[int, int], bytes] = {}
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        rows = conn.execute(
            select(t.ledger_nodes.c.level, t.ledger_nodes.c.idx, t.ledger_nodes.c.hash).where(
                tuple_(t.ledger_nodes.c.level, t.ledger_nodes.c.idx).in_(chunk)
            )
        )
        for level, idx, h in rows:
            found[(int(level), int(idx))] = bytes(h)
    return found


def _run(conn: Connection, compute: Callable[[ledger.Get], Any]) -> Any:
    """Plan the stored nodes ``compute`` reads, fetch them in one go, run it."""
    nodes = fetch_nodes(conn, ledger.plan(compute))

    def get(level: int, index: int) -> bytes:
        try:
            return nodes[(level, index)]
        except KeyError:
            raise LedgerCorrupt(f"stored node ({level}, {index}) is missing") from None

    return compute(get)


class LedgerCorrupt(Exception):
    """The stored log is not what it must be (a missing node, a changed entry)."""


def append_rows(conn: Connection, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Append entries (``at``, ``kind``, ``actor``, ``item_id``, ``detail``) in the caller's transaction."""
    if not rows:
        return []
    k = len(rows)
    size_after = conn.execute(
        update(t.ledger_state)
        .where(t.ledger_state.c.id == 1)
        .values(size=t.ledger_state.c.size + k)
        .returning(t.ledger_state.c.size)
    ).scalar_one()
    start = int(size_after) - k
    entries: list[dict[str, Any]] = []
    leaves: list[bytes] = []
    for i, row in enumerate(rows):
        detail = row.get("detail") or {}
        if isinstance(detail, str):
            detail = json.loads(detail)
        at = _utc(row["at"])
        body = entry_body(start + i, at, row["kind"], row["actor"], row.get("item_id"), detail)
        leaf = merkle.leaf_hash(body)
        leaves.append(leaf)
        entries.append(
            {
                "idx": start + i,
                "at": at,
                "kind": row["kind"],
                "actor": row["actor"],
                "item_id": row.get("item_id"),
                "body": body.decode("utf-8"),
                "leaf_hash": leaf,
            }
        )
    nodes = _run(conn, lambda get: ledger.append_many(start, leaves, get))
    conn.execute(insert(t.ledger_entries), entries)
    conn.execute(insert(t.ledger_nodes), [{"level": lv, "idx": ix, "hash": h} for lv, ix, h in nodes])
    return [start + i for i in range(k)]


def size(conn: Connection) -> int:
    return int(conn.execute(select(t.ledger_state.c.size).where(t.ledger_state.c.id == 1)).scalar_one())


def root(conn: Connection, at_size: int) -> bytes:
    return _run(conn, lambda get: ledger.root(at_size, get))  # type: ignore[no-any-return]


def inclusion(conn: Connection, index: int, at_size: int) -> list[bytes]:
    return _run(conn, lambda get: ledger.inclusion_proof(index, at_size, get))  # type: ignore[no-any-return]


def consistency(conn: Connection, old: int, new: int) -> list[bytes]:
    return _run(conn, lambda get: ledger.consistency_proof(old, new, get))  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Verified:
    size: int
    root: bytes


def verify_all(conn: Connection, progress: Callable[[int], None] | None = None) -> Verified:
    """Recompute every leaf from its stored entry and every stored node from its children.

    Streams level by level, so memory stays flat for any size. Raises ``LedgerCorrupt``
    naming the first entry (or node) that does not match.
    """
    n = size(conn)
    count = 0
    expected = 0
    stream = conn.execution_options(stream_results=True, yield_per=10_000)
    for idx, body, stored_leaf in stream.execute(
        select(t.ledger_entries.c.idx, t.ledger_entries.c.body, t.ledger_entries.c.leaf_hash).order_by(
            t.ledger_entries.c.idx
        )
    ):
        if idx != expected:
            raise LedgerCorrupt(f"entry {expected} is missing (found {idx} next)")
        leaf = merkle.leaf_hash(body.encode("utf-8"))
        data = json.loads(body)
        if data.get("index") != idx:
            raise LedgerCorrupt(f"entry {idx} claims index {data.get('index')}")
        if leaf != bytes(stored_leaf):
            raise LedgerCorrupt(
                f"entry {idx} ({data.get('kind')}) was altered: its content no longer matches its leaf hash"
            )
        expected += 1
        count += 1
        if progress and count % 50_000 == 0:
            progress(count)
    if expected != n:
        raise LedgerCorrupt(f"the log should hold {n} entries but holds {expected}")
    _verify_level(stream, 0, n, leaf_source=True)
    level, width = 0, n
    while width > 1:
        _verify_parents(stream, level)
        level += 1
        width //= 2
    head = root(conn, n) if n else merkle.EMPTY_ROOT
    if progress:
        progress(count)
    return Verified(n, head)


def _verify_level(conn: Connection, level: int, n: int, leaf_source: bool) -> None:
    """Level-0 nodes must equal the entries' leaf hashes."""
    leaves = select(t.ledger_entries.c.idx, t.ledger_entries.c.leaf_hash).order_by(t.ledger_entries.c.idx)
    nodes = (
        select(t.ledger_nodes.c.idx, t.ledger_nodes.c.hash)
        .where(t.ledger_nodes.c.level == 0)
        .order_by(t.ledger_nodes.c.idx)
    )
    for (li, lh), (ni, nh) in _zip_exact(conn.execute(leaves), conn.execute(nodes), "leaf"):
        if li != ni or bytes(lh) != bytes(nh):
            raise LedgerCorrupt(f"entry {li}: its stored tree node does not match its leaf hash")


def _verify_parents(conn: Connection, level: int) -> None:
    children = conn.execute(
        select(t.ledger_nodes.c.idx, t.ledger_nodes.c.hash)
        .where(t.ledger_nodes.c.level == level)
        .order_by(t.ledger_nodes.c.idx)
    )
    parents = conn.execute(
        select(t.ledger_nodes.c.idx, t.ledger_nodes.c.hash)
        .where(t.ledger_nodes.c.level == level + 1)
        .order_by(t.ledger_nodes.c.idx)
    )
    pending: tuple[int, bytes] | None = None
    parent_iter = iter(parents)
    for idx, h in children:
        if idx % 2 == 0:
            pending = (int(idx), bytes(h))
            continue
        if pending is None or pending[0] != idx - 1:
            raise LedgerCorrupt(f"tree node ({level}, {idx - 1}) is missing")
        row = next(parent_iter, None)
        if row is None or int(row[0]) != idx // 2:
            raise LedgerCorrupt(f"tree node ({level + 1}, {idx // 2}) is missing")
        if bytes(row[1]) != merkle.node_hash(pending[1], bytes(h)):
            first = (idx - 1) << level
            raise LedgerCorrupt(
                f"tree node ({level + 1}, {idx // 2}) over entries {first}…{first + (2 << level) - 1} does not match its children"
            )
        pending = None
    if next(parent_iter, None) is not None:
        raise LedgerCorrupt(f"level {level + 1} has more nodes than its children allow")


def _zip_exact(a: Iterable[Any], b: Iterable[Any], what: str) -> Iterable[tuple[Any, Any]]:
    ia, ib = iter(a), iter(b)
    while True:
        x, y = next(ia, None), next(ib, None)
        if x is None and y is None:
            return
        if x is None or y is None:
            raise LedgerCorrupt(f"the {what} level has {'extra' if y is not None else 'missing'} stored nodes")
        yield x, y
