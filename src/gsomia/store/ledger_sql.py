"""The ledger's driver-level SQL, built once per dialect, and a streaming cursor for its scans.

Appends and node fetches run through ``Connection.exec_driver_sql`` (no statement
compilation per call, errors wrapped as SQLAlchemy wraps them); the verification's
scans read driver cursors directly (``rows``), so a scan of millions of entries
builds no result row per row and, on PostgreSQL, holds one batch in memory.
"""

from __future__ import annotations

import itertools
from collections.abc import Generator
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError

from gsomia.store import schema as t
from gsomia.store.inserts import Insert

# What binds ``ledger_entries`` to its hashed bytes. ``body`` is the bytes the leaf hash covers
# and ``leaf_hash`` is checked against them and against the tree; every other column is a copy
# of the body's field of the same name (``idx`` of ``index``), there for indexes and listings,
# and ``verify_all`` checks each copy against the bytes. A column added to the table is checked
# the same way without a change here: it must be a field of the entry.
HASHED = ("body", "leaf_hash")
FIELD = {"idx": "index"}


class Statements:
    """The ledger's driver-level SQL for one dialect.

    Identifiers come from the schema, quoted by the dialect; every value is bound.
    """

    def __init__(self, dialect: Dialect) -> None:
        mark = "?" if dialect.paramstyle == "qmark" else "%s"
        q = dialect.identifier_preparer.quote
        state, nodes = q(t.ledger_state.name), q(t.ledger_nodes.name)
        size, level, idx = q("size"), q("level"), q("idx")
        self.bump = f"UPDATE {state} SET {size} = {size} + {mark} WHERE {q('id')} = 1 RETURNING {size}"  # noqa: S608
        self.select_nodes = f"SELECT {level}, {idx}, {q('hash')} FROM {nodes}"  # noqa: S608
        self.node_key = f"({level} = {mark} AND {idx} = {mark})"
        self.scan_level = f"SELECT {idx}, {q('hash')} FROM {nodes} WHERE {level} = {mark} ORDER BY {idx}"  # noqa: S608
        entries = q(t.ledger_entries.name)
        # The verification reads every column: the index first, each copy of a field of the
        # hashed bytes, then the bytes and the leaf hash. SQLite hands a TEXT value that is not
        # UTF-8 to Python as an error, not a value: the body is read as a BLOB there, so bytes
        # an insider wrote are reported as an entry that does not decode.
        copies = [c for c in t.ledger_entries.c if c.name not in HASHED]
        copies.sort(key=lambda c: c.name != "idx")
        body = f"CAST({q('body')} AS BLOB)" if dialect.name == "sqlite" else q("body")
        names = ", ".join(q(c.name) for c in copies)
        self.scan_entries = f"SELECT {names}, {body}, {q('leaf_hash')} FROM {entries} ORDER BY {idx}"  # noqa: S608
        self.copies = tuple(
            (position, c.name, FIELD.get(c.name, c.name), c.type.dialect_impl(dialect).result_processor(dialect, None))
            for position, c in enumerate(copies)
            if position
        )
        self.stray_nodes = (
            f"SELECT {level}, {idx} FROM {nodes} WHERE {level} < 0 OR {level} > {mark} ORDER BY {level}, {idx}"  # noqa: S608
        )
        self.put_entries = Insert(dialect, t.ledger_entries, mark)
        self.put_nodes = Insert(dialect, t.ledger_nodes, mark)
        self._fetch: dict[int, str] = {}

    def fetch(self, count: int) -> str:
        """Nodes by key, ``count`` keys: each pair is a primary-key lookup on both backends."""
        found = self._fetch.get(count)
        if found is None:
            found = self._fetch[count] = f"{self.select_nodes} WHERE {' OR '.join([self.node_key] * count)}"
        return found


_STATEMENTS: dict[tuple[str, str, str], Statements] = {}


def statements(conn: Connection) -> Statements:
    dialect = conn.dialect
    key = (dialect.name, dialect.driver, dialect.paramstyle)
    found = _STATEMENTS.get(key)
    if found is None:
        found = _STATEMENTS[key] = Statements(dialect)
    return found


_BATCH = 10_000  # rows per fetch when streaming
_cursor_names = itertools.count()


def rows(conn: Connection, statement: str, params: tuple[Any, ...] = ()) -> Generator[tuple[Any, ...], None, None]:
    """A query's rows in order, from a driver cursor of the connection (a server-side one on
    PostgreSQL, so memory stays flat), without building a result row per row. Driver errors
    are wrapped as SQLAlchemy wraps them."""
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    error = conn.dialect.loaded_dbapi.Error
    postgres = conn.dialect.name == "postgresql"
    try:
        cursor = dbapi.cursor(name=f"gsomia_ledger_{next(_cursor_names)}") if postgres else dbapi.cursor()
        cursor.execute(statement, params)
    except error as exc:
        raise DBAPIError.instance(statement, params, exc, error, dialect=conn.dialect) from exc
    try:
        while True:
            try:
                rows = cursor.fetchmany(_BATCH)
            except error as exc:
                raise DBAPIError.instance(statement, params, exc, error, dialect=conn.dialect) from exc
            if not rows:
                return
            yield from rows
    finally:
        cursor.close()
