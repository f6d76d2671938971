"""Reading the node's ledger entries of given kinds as stored: their exact bytes and leaf hash."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, LargeBinary, cast, func, select

from gsomia.store import schema as t


def last_index(conn: Connection) -> int | None:
    """The index of the last entry stored, or None for an empty log."""
    last = conn.execute(select(func.max(t.ledger_entries.c.idx))).scalar()
    return None if last is None else int(last)


def of_kinds(conn: Connection, after: int, upto: int, kinds: Sequence[str]) -> list[tuple[int, bytes, bytes]]:
    """(index, body bytes, leaf hash) of the entries of these kinds in (``after``, ``upto``], in order."""
    e = t.ledger_entries.c
    # SQLite hands a text column back decoded; the bytes hashed are the stored bytes.
    body = cast(e.body, LargeBinary) if conn.dialect.name == "sqlite" else e.body
    rows = conn.execute(
        select(e.idx, body, e.leaf_hash).where(e.idx > after, e.idx <= upto, e.kind.in_(list(kinds))).order_by(e.idx)
    ).all()
    return [
        (int(idx), raw.encode("utf-8") if isinstance(raw, str) else bytes(raw), bytes(leaf)) for idx, raw, leaf in rows
    ]
