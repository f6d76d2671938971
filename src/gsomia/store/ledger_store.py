"""The node's ledger in its database: appends inside the caller's transaction, proofs
in one query, and a full verification that names the first bad entry.

The leaf index is gapless: a one-row counter (``ledger_state``) is bumped with
``UPDATE … RETURNING`` at the start of each append, which also serialises
appenders (PostgreSQL row lock; SQLite's single writer) so two transactions never
take the same index.

The hot paths run driver-level SQL built once per dialect (``ledger_sql``): appends and
node fetches through ``Connection.exec_driver_sql``, the verification's scans straight
from driver cursors; many rows go in as one statement (``inserts``). Node lookups are an OR of
``level = ? AND idx = ?`` pairs, which both SQLite and PostgreSQL answer from the
primary key: SQLite answers a row-value ``IN (…)`` list by scanning the whole table,
which would make every proof and append O(n).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Table, func, select

from gsomia.core import ledger, merkle
from gsomia.core.errors import IntegrityFailure
from gsomia.store import ledger_sql
from gsomia.store import schema as t
from gsomia.store.inserts import Insert

# Named here as well: the node's bulk writes have always taken it from the ledger's store.

_CHUNK = 400  # keys per lookup query: ``Statements.fetch`` ORs that many primary-key pairs


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
    sql = ledger_sql.statements(conn)
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        params = tuple(v for key in chunk for v in key)
        for level, idx, h in conn.exec_driver_sql(sql.fetch(len(chunk)), params):
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


class LedgerCorrupt(IntegrityFailure):
    """The stored log is not what it must be (a missing node, a changed entry)."""


def append_rows(conn: Connection, rows: Sequence[dict[str, Any]]) -> list[int]:
    """Append entries (``at``, ``kind``, ``actor``, ``item_id``, ``detail``) in the caller's transaction."""
    if not rows:
        return []
    k = len(rows)
    sql = ledger_sql.statements(conn)
    size_after = conn.exec_driver_sql(sql.bump, (k,)).scalar_one()
    start = int(size_after) - k
    entries: list[tuple[Any, ...]] = []
    leaves: list[bytes] = []
    for i, row in enumerate(rows):
        detail = row.get("detail") or {}
        if isinstance(detail, str):
            detail = json.loads(detail)
        at = _utc(row["at"])
        kind, actor, item_id, index = row["kind"], row["actor"], row.get("item_id"), start + i
        body = ledger.entry_bytes(
            {"index": index, "at": at.isoformat(), "kind": kind, "actor": actor, "item_id": item_id, "detail": detail}
        )
        leaf = merkle.leaf_hash(body)
        leaves.append(leaf)
        entries.append((index, at, kind, actor, item_id, body.decode("utf-8"), leaf))
    nodes = _append_nodes(conn, start, leaves)
    sql.put_entries(conn, entries)
    sql.put_nodes(conn, nodes)
    return list(range(start, start + k))


_ENQUEUE = t.ledger_queue.insert()  # built once: a flash report's transactions run it each


def store_fresh_alerts(
    conn: Connection,
    items: Table,
    item_rows: Sequence[dict[str, Any]],
    queued: Sequence[dict[str, Any]],
    alerts: Table,
    alert_rows: Sequence[dict[str, Any]],
) -> dict[str, int]:
    """PostgreSQL: received flash reports in one statement, one round trip (R17).

    The items are inserted or ignored by item id; for the fresh ones only, their queued
    ledger entries (``enqueue_rows``'s rows, by ``item_id``) and their alerts (by
    ``alert_id``), each in the order given. One statement is atomic on its own, so the
    caller runs it in autocommit: no BEGIN and COMMIT round trips either. Returns the
    fresh alerts' ``seq`` by alert id."""
    dialect = conn.dialect
    q = dialect.identifier_preparer.quote
    names = (tuple(item_rows[0]), _QUEUED, tuple(alert_rows[0]))
    key = ("fresh alerts", dialect.name, items.name, alerts.name, names)
    found = _FRESH.get(key)
    if found is None:
        new_items = Insert(dialect, items, "%s", names[0])
        entries = Insert(dialect, t.ledger_queue, "%s", names[1])
        new_alerts = Insert(dialect, alerts, "%s", names[2])
        fresh = f"SELECT {q('item_id')} FROM fresh"  # noqa: S608 - identifiers from the schema
        sql = (
            f"WITH fresh AS ({new_items.head} {new_items.rows_sql} ORDER BY gsomia_n"
            f" ON CONFLICT ({q('item_id')}) DO NOTHING RETURNING {q('item_id')}),"
            f" queued AS ({entries.head} {entries.rows_sql} WHERE {q('item_id')} IN ({fresh}) ORDER BY gsomia_n)"
            f" {new_alerts.head} {new_alerts.rows_sql} WHERE {q('alert_id')} IN ({fresh}) ORDER BY gsomia_n"
            f" RETURNING {q('alert_id')}, {q('seq')}"
        )
        found = _FRESH[key] = (sql, new_items, entries, new_alerts)
    sql, new_items, entries, new_alerts = found
    entry_rows = [tuple(row[n] for n in _QUEUED) for row in map(_queued, queued)]
    params = (
        *new_items.arrays([tuple(r[n] for n in names[0]) for r in item_rows]),
        *entries.arrays(entry_rows),
        *new_alerts.arrays([tuple(r[n] for n in names[2]) for r in alert_rows]),
    )
    return {str(alert_id): int(seq) for alert_id, seq in conn.exec_driver_sql(sql, params)}


def store_sent_alerts(
    conn: Connection,
    items: Table,
    item_rows: Sequence[dict[str, Any]],
    outbox: Table,
    outbox_rows: Sequence[dict[str, Any]],
    returned: Sequence[str],
    queued: Sequence[dict[str, Any]],
    alerts: Table,
    alert_rows: Sequence[dict[str, Any]],
) -> list[dict[str, Any]]:
    """PostgreSQL: flash reports provided, in one statement, one round trip (R17).

    The sender's half of ``store_fresh_alerts``: the items, their outbox rows (claimed or
    not, as given), their queued ledger entries and their alerts, each in the order given.
    The ids are new, so nothing is ignored. Run in autocommit: no BEGIN and COMMIT round
    trips. Returns, per outbox row in order, its ``returned`` columns and ``alert_seq``,
    the seq of the alert for the item it refers to (its ``ref``)."""
    dialect = conn.dialect
    q = dialect.identifier_preparer.quote
    names = (tuple(item_rows[0]), tuple(outbox_rows[0]), _QUEUED, tuple(alert_rows[0]))
    key = ("sent alerts", dialect.name, items.name, outbox.name, alerts.name, names, tuple(returned))
    found = _FRESH.get(key)
    if found is None:
        parts = (
            Insert(dialect, items, "%s", names[0]),
            Insert(dialect, outbox, "%s", names[1]),
            Insert(dialect, t.ledger_queue, "%s", names[2]),
            Insert(dialect, alerts, "%s", names[3]),
        )
        new_items, sent, entries, new_alerts = (f"{p.head} {p.rows_sql} ORDER BY gsomia_n" for p in parts)
        columns = ", ".join(f"sent.{q(n)}" for n in returned)
        sql = (
            f"WITH new_items AS ({new_items}),"  # noqa: S608 - identifiers from the schema; parameters in this order
            f" sent AS ({sent} RETURNING {', '.join(q(n) for n in returned)}), queued AS ({entries}),"
            f" alerted AS ({new_alerts} RETURNING {q('alert_id')}, {q('seq')})"
            f" SELECT {columns}, alerted.{q('seq')} AS alert_seq"
            f" FROM sent JOIN alerted ON alerted.{q('alert_id')} = sent.{q('ref')} ORDER BY sent.{q('seq')}"
        )
        found = _FRESH[key] = (sql, parts)
    sql, parts = found
    entry_rows = [_queued(r) for r in queued]
    params = tuple(
        array
        for part, rows, columns in zip(parts, (item_rows, outbox_rows, entry_rows, alert_rows), names, strict=True)
        for array in part.arrays([tuple(r[n] for n in columns) for r in rows])
    )
    return [dict(row) for row in conn.exec_driver_sql(sql, params).mappings()]


_QUEUED = ("at", "kind", "actor", "item_id", "detail")  # a queued entry's columns (``_queued``)
_FRESH: dict[tuple[Any, ...], tuple[Any, ...]] = {}


def enqueue_rows(conn: Connection, rows: Sequence[dict[str, Any]]) -> None:
    """Commit entries with the caller's transaction without taking the log's counter.

    They join the log, in the order queued, when ``sequence_queued`` next runs; until then
    they are durable but have no index, no proof and no place under a signed head."""
    if rows:
        conn.execute(_ENQUEUE, [_queued(r) for r in rows])


def _queued(r: dict[str, Any]) -> dict[str, Any]:
    """A ledger entry (``at``, ``kind``, ``actor``, ``item_id``, ``detail``) as the queue stores it."""
    return {
        "at": _utc(r["at"]),
        "kind": r["kind"],
        "actor": r["actor"],
        "item_id": r.get("item_id"),
        "detail": json.dumps(r.get("detail") or {}, sort_keys=True, ensure_ascii=False),
    }


def sequence_queued(conn: Connection, limit: int = 1000) -> int:
    """Append up to ``limit`` queued entries to the log, oldest first, and drop them from the queue.

    The counter is taken first, so sequencers of several processes run one after the other
    and each queued entry is appended exactly once. An empty queue takes no lock: the
    sequencer looks often, and on SQLite each lock would be a write transaction."""
    q = t.ledger_queue
    if conn.execute(select(q.c.seq).limit(1)).first() is None:
        return 0
    sql = ledger_sql.statements(conn)
    conn.exec_driver_sql(sql.bump, (0,))  # the log's lock, held to commit
    rows = conn.execute(select(q).order_by(q.c.seq).limit(limit)).mappings().all()  # read again under it
    if not rows:
        return 0
    append_rows(
        conn,
        [
            {"at": r["at"], "kind": r["kind"], "actor": r["actor"], "item_id": r["item_id"], "detail": r["detail"]}
            for r in rows
        ],
    )
    conn.execute(q.delete().where(q.c.seq.in_([r["seq"] for r in rows])))
    return len(rows)


def queued(conn: Connection) -> int:
    """Entries committed but not yet in the log."""
    return int(conn.execute(select(func.count()).select_from(t.ledger_queue)).scalar_one())


def _frontier(n: int) -> list[tuple[int, int]]:
    """The complete subtrees that tile leaves 0 … n-1, one per 1-bit of n (what the root of n is made of).

    ``append_many`` from leaf ``n`` reads no other stored node: the left siblings it
    combines that end at or before leaf n are exactly these blocks. So the keys are
    known without planning (which would hash the whole batch a second time).
    """
    return [(level, (n >> level) - 1) for level in range(n.bit_length()) if n >> level & 1]


def _append_nodes(conn: Connection, start: int, leaves: list[bytes]) -> list[tuple[int, int, bytes]]:
    stored = fetch_nodes(conn, _frontier(start))

    def get(level: int, index: int) -> bytes:
        try:
            return stored[(level, index)]
        except KeyError:
            raise LedgerCorrupt(f"stored node ({level}, {index}) is missing") from None

    return ledger.append_many(start, leaves, get)


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


# Every column of ``ledger_entries`` but the hashed bytes and their leaf hash is a copy of a
# field of those bytes (``ledger_sql.HASHED``): a field an entry lacks is ``_ABSENT``.
_ABSENT = object()

Watch = Callable[[int, dict[str, Any]], None]


def verify_all(
    conn: Connection,
    progress: Callable[[int], None] | None = None,
    watch: dict[str, Watch] | None = None,
) -> Verified:
    """Recompute every leaf from its stored entry and every stored node from its children.

    Checks the log's counter, each entry's bytes against its leaf hash and each of its other
    columns against the bytes, the gapless order of the indexes, every stored node, and that
    no stored node lies outside the tree. Streams level by level, so memory stays flat for any
    size. ``watch`` maps an entry kind to a function given each verified entry of that kind
    (its index and decoded body): the tables kept beside the log are checked against them.
    Raises ``LedgerCorrupt`` naming the first entry (or the entries under a node) that does
    not match.
    """
    n = _checked_size(conn)
    sql = ledger_sql.statements(conn)
    count = _verify_entries(conn, sql, n, progress, watch or {})
    level, width = 0, n
    while width > 1:
        _verify_parents(conn, sql, level, n)
        level += 1
        width //= 2
    stray = conn.exec_driver_sql(sql.stray_nodes, (level,)).first()
    if stray is not None:
        raise LedgerCorrupt(f"tree node {_node(stray[0], stray[1])} is no node of the log of {n} entries")
    stored = conn.execute(select(func.count()).select_from(t.ledger_nodes)).scalar_one()
    expected = sum(n >> lv for lv in range(n.bit_length()))
    if stored != expected:  # a row no level's scan reads: an index or level not an integer (SQLite keeps any value)
        raise LedgerCorrupt(f"the tree holds {stored} stored nodes; the log of {n} entries (0…{n - 1}) has {expected}")
    head = root(conn, n) if n else merkle.EMPTY_ROOT
    if progress:
        progress(count)
    return Verified(n, head)


def _checked_size(conn: Connection) -> int:
    """The log's counter, which must be one row, ``id`` 1, holding a count."""
    rows = conn.execute(select(t.ledger_state)).mappings().all()
    if len(rows) == 1 and rows[0]["id"] == 1 and type(rows[0]["size"]) is int and rows[0]["size"] >= 0:
        return int(rows[0]["size"])
    last = conn.execute(select(func.max(t.ledger_entries.c.idx))).scalar_one()
    stored = "no entry" if last is None else f"entry {last}"
    shown = ", ".join(f"id {r['id']}: {r['size']}" for r in rows) or "no row"
    raise LedgerCorrupt(f"the log's counter (ledger_state) was altered ({shown}); the last stored is {stored}")


def _node(level: Any, index: Any) -> str:
    """A stored node and the entries under it."""
    if type(level) is not int or type(index) is not int:
        return f"({level!r}, {index!r})"
    first = index << level if level >= 0 and index >= 0 else index
    span = f"entry {first}" if level == 0 else f"entries {first}…{first + (1 << max(level, 0)) - 1}"
    return f"({level}, {index}) over {span}"


def _decoded(raw: bytes | None) -> dict[str, Any] | None:
    """An entry's stored bytes as the JSON object they must be, or None."""
    if raw is None:
        return None
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    return data if isinstance(data, dict) else None


def _blob(value: Any) -> bytes | None:
    """A binary column's value as bytes; None if it holds something else (SQLite keeps text there too)."""
    if type(value) is bytes:
        return value
    return bytes(value) if isinstance(value, bytearray | memoryview) else None


def _nodes(conn: Connection, sql: ledger_sql.Statements, level: int) -> Generator[tuple[int, bytes], None, None]:
    """One level's stored nodes in order, as (index, hash). A row whose index is not an integer is
    no node (the count of stored nodes catches it), a hash that is not bytes matches nothing."""
    with closing(ledger_sql.rows(conn, sql.scan_level, (level,))) as rows:
        for idx, h in rows:
            if type(idx) is int:
                yield idx, h if type(h) is bytes else _blob(h) or b""


def _result(process: Callable[[Any], Any], value: Any) -> Any:
    """A column's value as the column's type reads it; as stored if it is none of that type (then it equals no field)."""
    try:
        return process(value)
    except (ValueError, TypeError):
        return value


def _same_instant(stored: Any, field: Any, process: Callable[[Any], Any]) -> bool:
    """A column of a type read through ``process`` (an instant) holds the instant the field says.

    The bytes hold ISO 8601 text with the offset (``…T12:00:00.123456+00:00``). SQLite keeps the
    column as text in UTC (``… 12:00:00.123456``): when both are written that way they are
    compared as text, the common case of a scan of millions; otherwise as instants."""
    if not isinstance(field, str):
        return False
    if (
        isinstance(stored, str)
        and len(field) == 32
        and field.endswith("+00:00")
        and stored == f"{field[:10]} {field[11:26]}"
    ):
        return True
    value = _result(process, stored)
    if not isinstance(value, datetime):
        return False
    try:
        return datetime.fromisoformat(field) == value
    except ValueError:
        return False


def _check_copies(row: Sequence[Any], data: dict[str, Any], copies: tuple[Any, ...]) -> None:
    """Each column of an entry's row that copies a field of its hashed bytes holds that field."""
    for position, name, field, process in copies:
        value = row[position]
        said = data.get(field, _ABSENT)
        if value == said and type(value) is type(said):  # text, numbers and null: as they are
            continue
        if process is None or not _same_instant(value, said, process):
            if process is not None and value is not None:
                value = _result(process, value)
            said = "nothing" if said is _ABSENT else repr(said)
            raise LedgerCorrupt(
                f"entry {row[0]} ({data.get('kind')}): its {name} column ({value!r}) is not what its hashed"
                f" bytes say ({said})"
            )


def _verify_entries(
    conn: Connection,
    sql: ledger_sql.Statements,
    n: int,
    progress: Callable[[int], None] | None,
    watch: dict[str, Watch],
) -> int:
    """Every entry against its leaf hash and its columns; the leaf level of the tree against the entries.

    The leaf level is read beside the entries, but what is wrong with it is reported only
    once every entry has passed and the count is right: the entries' faults come first.
    """
    deferred: LedgerCorrupt | None = None
    stray: int | None = None  # a leaf-level node below the next entry's index: no entry's
    expected = 0
    leaf_hash, decoded, copies = merkle.leaf_hash, _decoded, sql.copies
    with closing(ledger_sql.rows(conn, sql.scan_entries)) as entries, closing(_nodes(conn, sql, 0)) as level0:
        node = next(level0, None)
        for row in entries:
            idx, body, stored_leaf = row[0], row[-2], row[-1]
            raw = body.encode("utf-8") if isinstance(body, str) else _blob(body)
            data = decoded(raw)
            if data is None:
                raise LedgerCorrupt(
                    f"entry {idx}: its stored bytes are not a ledger entry (not a JSON object in UTF-8)"
                )
            claimed = data.get("index")
            if type(claimed) is not int:
                raise LedgerCorrupt(f"entry {idx}: its hashed bytes name no index")
            if claimed != idx:
                raise LedgerCorrupt(f"entry {claimed} is stored as entry {idx}: an index was altered or rows reordered")
            if idx != expected:
                raise LedgerCorrupt(f"entry {expected} is missing (found {idx} next)")
            if idx >= n:
                raise LedgerCorrupt(f"entry {idx} is beyond the log's counter of {n} entries")
            assert raw is not None
            stored = _blob(stored_leaf) or b""
            if leaf_hash(raw) != stored:
                raise LedgerCorrupt(
                    f"entry {idx} ({data.get('kind')}) was altered: its content no longer matches its leaf hash"
                )
            _check_copies(row, data, copies)
            if watch:
                seen = watch.get(data.get("kind"))  # type: ignore[arg-type]
                if seen is not None:
                    seen(idx, data)
            if deferred is None:
                while node is not None and node[0] < idx:
                    stray = node[0] if stray is None else stray
                    node = next(level0, None)
                if node is None or node[0] != idx:
                    deferred = LedgerCorrupt(f"entry {idx}: its stored tree node is missing")
                elif node[1] != stored:
                    deferred = LedgerCorrupt(f"entry {idx}: its stored tree node does not match its leaf hash")
                else:
                    node = next(level0, None)
            expected += 1
            if progress and expected % 50_000 == 0:
                progress(expected)
        if expected != n:
            last = f"entry {expected - 1}" if expected else "no entry"
            raise LedgerCorrupt(
                f"entry {expected} is missing: the log's counter says {n} entries, the last stored is {last}"
            )
        if deferred is None and stray is None and node is not None:
            stray = node[0]
    if deferred is not None:
        raise deferred
    if stray is not None:
        raise LedgerCorrupt(f"tree node {_node(0, stray)} is no entry's: the log holds {n} entries")
    return expected


def _verify_parents(conn: Connection, sql: ledger_sql.Statements, level: int, n: int) -> None:
    """Each stored node of ``level + 1`` from its two children at ``level`` (already checked)."""
    node_hash = merkle.node_hash
    pending: tuple[int, bytes] | None = None
    stray: int | None = None
    with (
        closing(_nodes(conn, sql, level)) as children,
        closing(_nodes(conn, sql, level + 1)) as parents,
    ):
        row = next(parents, None)
        for idx, h in children:
            if idx % 2 == 0:
                pending = (idx, h)
                continue
            if pending is None or pending[0] != idx - 1:
                raise LedgerCorrupt(f"tree node {_node(level, idx - 1)} is missing")
            while row is not None and row[0] < idx // 2:
                stray = row[0] if stray is None else stray
                row = next(parents, None)
            if row is None or row[0] != idx // 2:
                raise LedgerCorrupt(f"tree node {_node(level + 1, idx // 2)} is missing")
            if row[1] != node_hash(pending[1], h):
                raise LedgerCorrupt(f"tree node {_node(level + 1, idx // 2)} does not match its children")
            row = next(parents, None)
            pending = None
        if stray is None and row is not None:
            stray = row[0]
    if stray is not None:
        raise LedgerCorrupt(f"tree node {_node(level + 1, stray)} is no node of the log of {n} entries")
