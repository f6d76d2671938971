"""The link between a node's main process and its flash process (R17).

A node configured with ``flash_listen`` runs flash work (reports, notes, alarms: the flash
lane) in a process of its own, so that no flash report waits for the GIL behind bulk
sealing, and bulk work can run at a lower CPU priority. Both processes share the node's
database, which holds everything that matters; the link only carries hints that save a
poll, one line each:

- ``wake <lane> <PEER>``: rows for PEER were committed on a lane the other process delivers.
- ``alerts``: flash reports were stored here; the other process's alert streams look.
- ``ledger``: the flash process queued ledger entries; the main process sequences them.
- ``clock <seconds>``: demo mode only, the simulated clock's offset from real time.

A lost hint delays, never loses: the delivery workers look in the outbox when idle (flash
every 0.2 s) and alert streams ask the database after a quiet second. The link is also how
each side learns the other is gone: the flash process stops at end of file (its parent
died, even by ``kill -9``), and the main process starts a new flash process.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable

log = logging.getLogger("gsomia.link")

Handler = Callable[[list[str]], None]


class Link:
    """One end of a socket pair, read by a task and written from the event loop's thread."""

    def __init__(self, sock: socket.socket, handlers: dict[str, Handler]) -> None:
        self.sock = sock
        self.handlers = handlers
        self._writer: asyncio.StreamWriter | None = None
        self._reader: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closed = asyncio.Event()

    async def open(self) -> None:
        self._loop = asyncio.get_running_loop()
        reader, self._writer = await asyncio.open_connection(sock=self.sock)
        self._reader = asyncio.create_task(self._read(reader), name="flash-link")

    def send(self, *words: str) -> None:
        """Send one hint; a no-op once the other side is gone. Event loop thread only."""
        if self._writer is None or self._writer.is_closing():
            return
        self._writer.write((" ".join(words) + "\n").encode())

    def send_threadsafe(self, *words: str) -> None:
        """``send`` from a worker thread (a commit in a lane's pool)."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.send, *words)

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while line := await reader.readline():
                words = line.decode("ascii", "replace").split()
                handler = self.handlers.get(words[0]) if words else None
                if handler is None:
                    log.warning("ignoring an unknown hint on the flash link: %r", line[:80])
                    continue
                try:
                    handler(words[1:])
                except Exception as exc:  # a bad hint must not end the link
                    log.warning("flash link hint %r failed: %s", words[0], exc)
        except (ConnectionError, OSError) as exc:
            log.info("flash link closed: %s", exc)
        finally:
            self.closed.set()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        else:
            self.sock.close()
