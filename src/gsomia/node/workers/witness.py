"""The witness: each node checks that its partner's log only ever grows.

Tree heads travel with every delivery and every receipt; they are signals. On each
signal, and on a timer, the witness fetches the partner's current signed head and a
consistency proof from the last head it verified (RFC 9162 section 2.1.4). A head
that does not extend the verified one means the partner rewrote its history: the
witness raises a fork alarm, which is recorded on its own ledger and sent to the
partner on the flash lane, so both security authorities see it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import httpx

from gsomia.core import ledger, merkle
from gsomia.node import peer as peer_proto
from gsomia.node.service import Node

log = logging.getLogger("gsomia.witness")
MIN_GAP = 1.0  # seconds between two checks of the same partner


class Witness:
    def __init__(
        self, node: Node, clients: dict[str, httpx.AsyncClient], interval: float = 30.0, keys: Any = None
    ) -> None:
        self.node = node
        self.clients = clients
        self.keys = keys  # a KeySync: a head its known keys did not sign may be a rotation
        self.interval = interval
        self.wake = {code: asyncio.Event() for code in node.config.peers}
        self.stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self._alarmed: set[tuple[str, int, bytes]] = set()  # one fork alarm per contradicted head

    def observe(self, party: str, head: Any) -> None:
        """A head seen in a request or receipt: check the partner soon."""
        event = self.wake.get(party)
        if event is not None and isinstance(head, dict):
            event.set()

    async def start(self) -> None:
        for code in self.node.config.peers:
            self._tasks.append(asyncio.create_task(self._run(code), name=f"witness-{code}"))

    async def stop(self) -> None:
        self.stopping = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _run(self, code: str) -> None:
        event = self.wake[code]
        while not self.stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), self.interval)
            event.clear()
            try:
                await self.check(code)
            except (httpx.HTTPError, ValueError, KeyError) as exc:  # partner down or answering nonsense: later
                log.info("could not check %s's log: %s", code, exc)
            # Heads arrive with every receipt; checking more than once a second adds load, not assurance.
            await asyncio.sleep(MIN_GAP)

    async def _get(self, code: str, path: str, **params: Any) -> Any:
        sent = peer_proto.target(path, params)  # signed with its query, and sent as signed
        headers = peer_proto.sign_request(self.node.config.key, "GET", sent, b"")
        response = await self.clients[code].get(sent, headers=headers)
        response.raise_for_status()
        return response.json()

    async def check(self, code: str) -> str:
        """Check the partner's log once; returns what was concluded."""
        node = self.node
        head = ledger.TreeHead.from_dict(await self._get(code, "/peer/ledger/head"))

        def signed() -> bool:
            return ledger.verify_head(node.peer_chains[code].key_for_head(head.size), head)

        ok = head.party == code and signed()
        if head.party == code and not ok and self.keys is not None:
            await self.keys.refresh(code)  # the partner may have rotated its key (or another task learned it)
            ok = signed()
        if not ok:
            await asyncio.to_thread(
                node.raise_alarm, "bad_head", code, f"{code} sent a tree head its key did not sign (size {head.size})"
            )
            return "bad_head"
        last = await asyncio.to_thread(node.last_partner_head, code)
        if last is None:
            await asyncio.to_thread(node.keep_partner_head, head)
            return "first"
        if head.size == last.size:
            if head.root == last.root:
                return "same"
            return await self._fork(code, last, head, [])
        old, new = (last, head) if head.size > last.size else (head, last)
        proof = [
            bytes.fromhex(p)
            for p in (await self._get(code, "/peer/ledger/consistency", old=old.size, new=new.size))["proof"]
        ]
        if not merkle.verify_consistency(old.size, new.size, old.root, new.root, proof):
            return await self._fork(code, old, new, proof)
        if head.size < last.size:
            await asyncio.to_thread(
                node.raise_alarm, "rollback", code, f"{code}'s log went back from {last.size} to {head.size} entries"
            )
            return "rollback"
        await asyncio.to_thread(node.keep_partner_head, head)
        return "extends"

    async def _fork(self, code: str, old: ledger.TreeHead, new: ledger.TreeHead, proof: list[bytes]) -> str:
        if (code, old.size, old.root) in self._alarmed:
            return "fork"
        self._alarmed.add((code, old.size, old.root))
        detail = (
            f"{code}'s signed log of {new.size} entries (root {new.root.hex()[:16]}…, {new.at.isoformat()}) does not extend "
            f"its signed log of {old.size} entries (root {old.root.hex()[:16]}…, {old.at.isoformat()}): its history was rewritten"
        )
        log.error("FORK: %s", detail)
        await asyncio.to_thread(self.node.raise_alarm, "fork", code, detail)
        return "fork"
