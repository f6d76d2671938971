"""SQLite WAL checkpoints from a task of their own, not inside a commit (R17).

A node's server processes open SQLite with automatic checkpoints off
(``store.db.open_database(own_checkpoints=True)``): an automatic one runs inside the
commit that fills the WAL, while that commit still holds the one write lock, and every
flash write waits for it. This task copies the WAL into the database file every second
in PASSIVE mode, which takes no write lock, from a bulk thread, for the main file and
the flash file (``store.flash``). Only the main process runs it; PostgreSQL needs none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy import Engine

from gsomia.node.runtime.lanes import Lanes
from gsomia.store.db import checkpoint
from gsomia.store.flash import flash_store

log = logging.getLogger("gsomia.checkpoint")


class Checkpointer:
    def __init__(self, engine: Engine, lanes: Lanes, interval: float = 1.0) -> None:
        self.engine = engine
        self.lanes = lanes
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self.engine.dialect.name == "sqlite":
            self._task = asyncio.create_task(self._run(), name="wal-checkpoint")

    async def stop(self) -> None:
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        with contextlib.suppress(Exception):  # what is left is checkpointed by the next opener
            await self.lanes.run("bulk", self._checkpoint)

    def _checkpoint(self) -> None:
        checkpoint(self.engine)
        store = flash_store(self.engine)
        if store.separate:
            checkpoint(store.engine)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.lanes.run("bulk", self._checkpoint)
            except Exception as exc:  # busy or failing disk: the WAL grows until the next one works
                log.warning("WAL checkpoint failed: %s", exc)
