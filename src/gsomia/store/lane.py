"""Where a lane writes: an engine and the five tables a transaction of either lane touches.

The bulk lane writes the main database's tables; the flash lane its own file's copies of
them where it has one (``store.flash``, R17), else the main tables too. Either is a
``Store``: the use cases write through one type and never ask which file they hold.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine, Table

from gsomia.store import schema as t


@dataclass(frozen=True)
class Store:
    """An engine and its ``items``, ``outbox``, ``alerts``, ``receipts`` and ledger queue tables."""

    engine: Engine
    items: Table
    outbox: Table
    alerts: Table
    receipts: Table
    queue: Table
    separate: bool  # the flash lane's file of its own, whose rows ``flash.move`` brings into the main tables

    @property
    def name(self) -> str:
        """How an outbox row names the file that holds it (``outbox.RowKey``)."""
        return "flash" if self.separate else "main"

    @property
    def path(self) -> str | None:
        """The flash file, or the flash database's URL (no password); None when shared."""
        return where(self.engine) if self.separate else None

    @property
    def one_round_trip(self) -> bool:
        """Whether a flash report's rows go in one statement in autocommit (PostgreSQL's
        writable CTEs): one round trip where SQLite's local transaction costs none."""
        return self.engine.dialect.name == "postgresql"


def where(engine: Engine) -> str:
    """A store's name in messages: its file, or its database's URL without the password."""
    if engine.dialect.name == "sqlite":
        return str(engine.url.database)
    return engine.url.render_as_string(hide_password=True)


def main_store(engine: Engine) -> Store:
    """The main database's tables: where the bulk lane writes."""
    return Store(engine, t.items, t.outbox, t.alerts, t.receipts, t.ledger_queue, separate=False)
