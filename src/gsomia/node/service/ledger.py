"""The node's own ledger as the use cases write it: an entry beside every write that matters."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine

from gsomia.node.runtime.clock import Clock
from gsomia.store import flash, gate, ledger_store
from gsomia.store.lane import Store

SEQUENCE_TURN = 1000  # queued entries appended per write transaction


def entry(at: datetime, kind: str, actor: str, item_id: str | None, detail: dict[str, Any]) -> dict[str, Any]:
    """A ledger entry to append or queue."""
    # Through JSON once so the entry holds plain data (decisions, instants as text); text,
    # numbers and flags are plain already (an item's provision or receipt, per item).
    if not all(type(v) in _PLAIN for v in detail.values()):
        detail = json.loads(json.dumps(detail, default=str))
    return {"at": at, "kind": kind, "actor": actor, "item_id": item_id, "detail": detail}


_PLAIN = (str, int, bool, type(None))  # JSON gives these back as they are (keys are text)


class Ledger:
    """Appends and queues entries, and moves the queued ones into the log (``sequence``)."""

    def __init__(self, engine: Engine, flash_store: Store, clock: Clock) -> None:
        self.engine = engine
        self.flash = flash_store
        self.clock = clock
        self.queued = 0  # entries this process has queued: what wakes the sequencer
        # Set in a main process with a flash process: rows were moved out of the flash file, and
        # the flash process, not this low-priority one, deletes them there (``flash.move``).
        self.on_flash_moved: Callable[[], None] | None = None

    def log(self, conn: Connection, lane: str, rows: Sequence[dict[str, Any]]) -> None:
        """Write entries in a transaction of ``lane``: a flash one queues them (R17).

        A bulk transaction holds the log's counter from its first entry until it commits; a
        flash report that waited for it would wait for the whole batch. Queued entries commit
        with the report and join the log when ``sequence`` runs, a moment later."""
        if lane == "flash":
            ledger_store.enqueue_rows(conn, rows)
            self.queued += len(rows)
        else:
            ledger_store.append_rows(conn, rows)

    def audit(self, conn: Connection, kind: str, actor: str, item_id: str | None, detail: dict[str, Any]) -> None:
        """One entry, appended in the caller's transaction, at the clock's now."""
        ledger_store.append_rows(conn, [entry(self.clock.now(), kind, actor, item_id, detail)])

    def audit_alone(self, kind: str, actor: str, item_id: str | None, detail: dict[str, Any]) -> None:
        """One entry in a transaction of its own (a refusal: nothing else is written)."""
        with gate.begin(self.engine) as conn:
            self.audit(conn, kind, actor, item_id, detail)

    def sequence(self) -> int:
        """Move queued entries into the log, in the order queued; how many moved.

        The flash file's rows (``store.flash``) are moved into the main file first, its
        queued entries with them."""
        trimmer = self.on_flash_moved
        if flash.move(self.engine, self.flash, trim_here=trimmer is None) and trimmer is not None:
            trimmer()
        moved = 0
        while True:
            with self.engine.connect() as conn:  # an empty queue: no write transaction, no turn at the gate
                if ledger_store.queued(conn) == 0:
                    return moved
            with gate.begin(self.engine) as conn:
                n = ledger_store.sequence_queued(conn, SEQUENCE_TURN)
            moved += n
            if n < SEQUENCE_TURN:  # the queue is empty now, but for what was queued meanwhile
                return moved

    def trim_flash(self) -> None:
        """Delete from the flash file the rows the main process has moved (``on_flash_moved``)."""
        flash.trim_moved(self.engine, self.flash)
