"""Learning a partner's new key: fetch its rotation statements when it signs with a key we do not know.

A partner that rotates its key starts signing requests, receipts and tree heads with
the new key at once; it does not push anything. The first message here that names
an unknown key id (or a head that its known keys did not sign) is the signal:
``refresh`` fetches ``GET /peer/keys`` — public keys and signatures only, so it is
served on mutual TLS alone and works even when both sides rotated at once — and the
node verifies each statement against the chain it already trusts before keeping it.
"""

from __future__ import annotations

import asyncio
import logging
import time

import httpx

from gsomia.core.errors import GsomiaError
from gsomia.core.keyring import Rotation
from gsomia.node.service import Node

log = logging.getLogger("gsomia.keysync")
MIN_GAP = 1.0  # seconds between two fetches from the same partner


class KeySync:
    def __init__(self, node: Node, clients: dict[str, httpx.AsyncClient]) -> None:
        self.node = node
        self.clients = clients
        self._locks = {code: asyncio.Lock() for code in node.config.peers}
        self._last: dict[str, float] = {}
        self._background: set[asyncio.Task[bool]] = set()

    async def refresh(self, code: str) -> bool:
        """Fetch and learn ``code``'s rotations; True if its chain grew."""
        lock = self._locks.get(code)
        if lock is None:
            return False
        async with lock:
            if time.monotonic() - self._last.get(code, -MIN_GAP) < MIN_GAP:
                return False
            self._last[code] = time.monotonic()
            try:
                response = await self.clients[code].get("/peer/keys")
                response.raise_for_status()
                offered = [Rotation.from_dict(r) for r in response.json()["rotations"]]
                grew = await self.node.lanes.run("control", self.node.learn_keys, code, offered)
            except (httpx.HTTPError, ValueError, KeyError, TypeError, GsomiaError) as exc:
                log.warning("could not learn %s's key chain: %s", code, exc)
                return False
        if grew:
            log.warning("%s rotated its key: now %s", code, self.node.peer_chains[code].current.kid)
        return bool(grew)

    def soon(self, code: str) -> None:
        """Refresh in the background (from a request handler that must answer now)."""
        task = asyncio.create_task(self.refresh(code))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
