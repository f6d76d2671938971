"""Many rows into one table in one statement: the driver's ``executemany`` on SQLite, one
``INSERT … SELECT FROM unnest(arrays)`` with binary arrays on PostgreSQL (psycopg).

Shared by the ledger's appends and the node's bulk writes (items, outbox rows, alerts).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Column, Connection, LargeBinary, Table
from sqlalchemy.engine import Dialect


class Insert:
    """Many rows into one table: the driver's ``executemany`` (SQLite), or with psycopg one
    ``INSERT … SELECT FROM unnest(arrays)``, the arrays sent in binary (``%b``): psycopg's
    ``executemany`` sends a statement per row, and text arrays are quoted in Python.
    Each column's own bind processor is applied, as a Core insert would."""

    def __init__(
        self,
        dialect: Dialect,
        table: Table,
        mark: str,
        names: Sequence[str] | None = None,
        ignore_conflicts_on: str | None = None,
        returning: str | None = None,
    ) -> None:
        q = dialect.identifier_preparer.quote
        columns: list[Column[Any]] = list(table.c) if names is None else [table.c[n] for n in names]
        binders = []
        for position, column in enumerate(columns):
            if isinstance(column.type, LargeBinary):
                continue  # its processor only wraps bytes in the driver's Binary; both drivers take bytes as they are
            process = column.type.dialect_impl(dialect).bind_processor(dialect)
            if process is not None:
                binders.append((position, process))
        self.binders = tuple(binders)
        self.columnar = dialect.name == "postgresql" and dialect.driver == "psycopg"
        self.returning = returning is not None
        if self.returning and not self.columnar:
            raise ValueError("RETURNING from many rows needs the columnar (PostgreSQL) form")
        names_sql = ", ".join(q(c.name) for c in columns)
        tail = f" ON CONFLICT ({q(ignore_conflicts_on)}) DO NOTHING" if ignore_conflicts_on else ""
        if returning is not None:
            tail += f" RETURNING {q(returning)}"
        if self.columnar:
            # Arrays of the column types without a length: an overlong value then fails on
            # insert, as it would row by row (a cast to VARCHAR(n) would cut it silently).
            # WITH ORDINALITY ... ORDER BY: rows are inserted (and numbered by an identity
            # column) in the order given.
            arrays = ", ".join(f"%b::{_base_type(c, dialect)}[]" for c in columns)
            self.head = f"INSERT INTO {q(table.name)} ({names_sql}) SELECT {names_sql}"
            self.rows_sql = f"FROM unnest({arrays}) WITH ORDINALITY AS u({names_sql}, gsomia_n)"
            self.sql = f"{self.head} {self.rows_sql} ORDER BY gsomia_n{tail}"
        else:
            marks = ", ".join(mark for _ in columns)
            self.sql = f"INSERT INTO {q(table.name)} ({names_sql}) VALUES ({marks}){tail}"  # noqa: S608

    def bound(self, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """The rows with each column's bind processor applied."""
        if not self.binders:
            return rows
        bound = []
        for row in rows:
            values = list(row)
            for position, process in self.binders:
                values[position] = process(values[position])
            bound.append(tuple(values))
        return bound

    def arrays(self, rows: list[tuple[Any, ...]]) -> tuple[list[Any], ...]:
        """The columnar form's parameters: one array a column."""
        return tuple(list(column) for column in zip(*self.bound(rows), strict=True))

    def __call__(self, conn: Connection, rows: list[tuple[Any, ...]]) -> list[Any]:
        """Insert; with ``returning``, the returned column of the rows inserted."""
        if not rows:
            return []
        if self.columnar:
            result = conn.exec_driver_sql(self.sql, self.arrays(rows))
            return list(result.scalars()) if self.returning else []
        conn.exec_driver_sql(self.sql, self.bound(rows))
        return []


_INSERTS: dict[tuple[str, str, str, str, tuple[str, ...], str | None, str | None], Insert] = {}


def insert_many(
    conn: Connection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    ignore_conflicts_on: str | None = None,
    returning: str | None = None,
) -> list[Any]:
    """Many rows (dicts with the same keys) into ``table`` in one statement on PostgreSQL
    (``unnest`` of binary arrays, as the ledger does), one ``executemany`` on SQLite.

    Core's ``insert(table)`` with many rows sends, on psycopg, one prepared statement per
    row or (with RETURNING) one statement of thousands of parameters that psycopg
    re-parses in Python on every call, costing more than the insert itself. Columns no row gives a value
    for, and that have no default, are left out (NULL). ``returning`` (PostgreSQL only)
    gives that column of the rows inserted, e.g. with ``ignore_conflicts_on`` the fresh ones.
    """
    if not rows:
        return []
    names = tuple(
        name
        for name in rows[0]
        if table.c[name].default is not None
        or table.c[name].server_default is not None
        or any(r[name] is not None for r in rows)
    )
    dialect = conn.dialect
    key = (dialect.name, dialect.driver, dialect.paramstyle, table.name, names, ignore_conflicts_on, returning)
    statement = _INSERTS.get(key)
    if statement is None:
        mark = "?" if dialect.paramstyle == "qmark" else "%s"
        statement = _INSERTS[key] = Insert(dialect, table, mark, names, ignore_conflicts_on, returning)
    return statement(conn, [tuple(r[n] for n in names) for r in rows])


def _base_type(column: Column[Any], dialect: Dialect) -> str:
    name = column.type.compile(dialect=dialect)
    return name.split("(", 1)[0].strip()
