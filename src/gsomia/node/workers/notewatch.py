"""Keeps the notes this process applies fresh in the background, off every request's path.

A note another process of the node records or receives (the CLI, the flash process, the
main process) reaches this one through the database. ``Node.agreement`` looks for new ones
when its last look is older than ``NOTES_REFRESH`` (0.25 s), so that a status is never
older than that. Done there, the look would be a database read inside a flash report
(R17). This task looks twice as often, from a control thread, so that a request finds the
look done; a request still looks itself if the task falls behind, so the bound holds
either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from gsomia.node.service import NOTES_REFRESH, Node

log = logging.getLogger("gsomia.notewatch")


class NoteWatch:
    def __init__(self, node: Node, interval: float = NOTES_REFRESH / 2) -> None:
        self.node = node
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="note-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.node.lanes.run("control", self.node.refresh_notes, self.interval)
            except Exception as exc:  # the database is busy or down: requests look for themselves
                log.warning("looking for new notes failed: %s", exc)
