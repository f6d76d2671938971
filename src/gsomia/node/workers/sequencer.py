"""The ledger's sequencer: gives the entries flash transactions queued their place in the log.

A flash transaction queues its ledger entries (``Node._log``) instead of waiting for the
log's counter, which a bulk transaction holds until it commits (R17). This task appends
them a moment later, from a bulk thread, where that wait delays no flash report. It runs
at start (entries queued before a crash), whenever this process queues more, every few
seconds for what other processes of the node queued, and once more on stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from gsomia.node.service import Node

log = logging.getLogger("gsomia.sequencer")


class Sequencer:
    """Appends the ledger queue; or, with ``delegate``, tells another process to.

    A node's flash process delegates to its main process (``node/link.py``): appending is
    bulk work (hashing, tree nodes, a wait for the log's counter), and in the flash process
    it would take CPU that flash reports need (R17).
    """

    def __init__(
        self,
        node: Node,
        interval: float | None = None,
        sweep: float = 5.0,
        delegate: Callable[[], None] | None = None,
    ) -> None:
        self.node = node
        self.delegate = delegate
        # How soon entries queued here join the log; nothing waits for it (R17). A turn costs
        # about ten statements whatever it moves, and on SQLite also moves the flash file's rows
        # (``store.flash``): turns a quarter of a second apart move many entries each, and leave
        # the CPU to the items being delivered.
        self.interval = 0.25 if interval is None else interval
        self.sweep = sweep  # how soon entries queued by other processes do
        self.stopping = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="ledger-sequencer")

    async def stop(self) -> None:
        self.stopping = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.delegate is not None:
            return
        with contextlib.suppress(Exception):  # what is left stays queued: the next start moves it
            await self.node.lanes.run("bulk", self.node.sequence_ledger)

    async def _run(self) -> None:
        seen = -1
        swept = 0.0
        while not self.stopping:
            if self.delegate is not None:
                if self.node.queued != seen:
                    seen = self.node.queued
                    self.delegate()
            elif self.node.queued != seen or time.monotonic() - swept > self.sweep:
                seen = self.node.queued
                swept = time.monotonic()
                try:
                    await self.node.lanes.run("bulk", self.node.sequence_ledger)
                except Exception as exc:  # the database is busy or down: the entries wait in the queue
                    log.warning("sequencing the ledger failed: %s", exc)
            await asyncio.sleep(self.interval)
