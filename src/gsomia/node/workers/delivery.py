"""Delivery workers: one per peer and lane, draining the outbox in order.

At-least-once: a row is marked delivered only after the peer's signed receipt comes
back; the peer stores by item id, so a repeat is acknowledged and not stored twice.
The flash lane (R17) has its own worker and wakes at once: it never waits behind
bulk traffic. A partner that is down is retried with exponential back-off and
jitter until it is back; its rows stay in order meanwhile. Before anything leaves,
the egress guard checks it again, apart from the policy code.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import random
import uuid
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import httpx

from gsomia.core import egress
from gsomia.core.canonical import canonical
from gsomia.node import peer
from gsomia.node.service import LANES, LEASE, Applied, Node, RowKey
from gsomia.node.workers import heads

log = logging.getLogger("gsomia.delivery")
FLASH_INLINE = 2  # flash rows guarded and encoded on the event loop itself
# Rows per claim. Bulk: large, since a claim and a receipt are a transaction each, and fewer of
# them move more items a second; no flash report waits for one (the flash lane queues its ledger
# entries, and on SQLite writes a file of its own). Flash: small, so that a claim is short.
BATCH = {"flash": 32, "bulk": 512}
# Envelope bytes in one delivery of items (base64 adds a third): large items go in smaller
# runs, so no body grows with the claim (512 items of 12 MB would be 6 GB), and at least one goes.
BATCH_BYTES = 32 << 20
POOLS = {"flash": "flash", "bulk": "delivery"}  # the lanes' threads for a worker's blocking calls
PATHS = {"note": "/peer/notes", "alarm": "/peer/alarms", "record": "/peer/records"}


class Encoded(NamedTuple):
    """A run of items guarded and encoded, ready to go."""

    allowed: list[dict[str, Any]]  # the rows the egress guard let through
    blocked: dict[str, str]  # the item ids it held back, and why
    body: bytes  # the allowed items' delivery (``items_body``)
    agreements: Applied  # as they stood when they were guarded: a note since, and they are guarded again


def backoff(attempts: int) -> float:
    return min(30.0, 0.25 * 2.0 ** min(attempts, 8)) * random.uniform(0.5, 1.5)  # noqa: S311 - jitter, not crypto


class Delivery:
    """The delivery workers of one process, for the lanes it delivers (all of them, unless the
    node runs a flash process: then the main process delivers bulk and the flash process flash).
    """

    def __init__(self, node: Node, lanes_here: Iterable[str] = LANES) -> None:
        self.node = node
        self.lanes = tuple(lane for lane in LANES if lane in set(lanes_here))
        # Rows committed here on a lane another process delivers: it is told (``node/link.py``).
        self.forward: Callable[[str, str], None] | None = None
        self.worker_id = f"{node.party}-{uuid.uuid4().hex[:8]}"
        self.wake: dict[tuple[str, str], asyncio.Event] = {}
        self.clients: dict[str, httpx.AsyncClient] = {}  # per peer, to its main peer API
        self._flash_clients: dict[str, peer.FlashClient] = {}  # to its flash process, where it has one
        self.stopping = False
        self._tasks: list[asyncio.Task[None]] = []
        self.witness: Any = None  # set by serve: heads in receipts wake it
        self.keys: Any = None  # set by serve: a KeySync, to learn the partner's rotated key
        # Flash rows committed already claimed by this worker (``Node.provide_alert``), waiting to go.
        self.handed: dict[str, list[dict[str, Any]]] = {}
        # Per peer: did the flash lane's last pass drain the outbox? Only then, and with nothing
        # queued since (a note, an alarm), may handed rows skip the claim: otherwise older rows
        # may wait, and the claim returns everything in order.
        self.drained: dict[str, bool] = {}
        # Flash receipts being recorded (``Node.delivered``) while the next report goes out: that
        # write may wait behind a bulk transaction, and the next report must not wait with it.
        self._settling: dict[str, list[asyncio.Task[None]]] = {}
        self._asked: dict[tuple[str, str], bool] = {}  # (peer, lane): rows were queued, claim them
        # The bulk lane, pipelined (``_run_bulk``), per peer: the next claim, made while a batch is
        # with the partner; the rows in hand (with the partner, or their receipt being recorded),
        # which that claim skips; the last receipt being recorded; the next batch's body, encoded
        # with the claim.
        self._ahead: dict[str, asyncio.Future[list[dict[str, Any]]]] = {}
        self._in_hand: dict[str, set[RowKey]] = {}
        self._recording: dict[str, asyncio.Future[None]] = {}
        self._encoded: dict[str, tuple[list[RowKey], Encoded]] = {}
        self._queued_seen: dict[str, int] = {}  # ``Node.flash_queued`` as of the last pass

    def notify(self, peer_party: str, lane: str) -> None:
        """Rows for ``peer_party`` on ``lane`` are in the outbox: the worker claims them."""
        if lane not in self.lanes:
            if self.forward is not None:
                self.forward(peer_party, lane)
            return
        event = self.wake.get((peer_party, lane))
        if event is not None:
            self._asked[(peer_party, lane)] = True
            event.set()

    def hand_over(self, peer_party: str, rows: list[dict[str, Any]]) -> None:
        """Flash rows this worker already holds: send them with no claim transaction (R17)."""
        self.handed.setdefault(peer_party, []).extend(rows)
        event = self.wake.get((peer_party, "flash"))
        if event is not None:
            event.set()

    async def start(self) -> None:
        cfg = self.node.config
        for code, p in cfg.peers.items():
            self.clients[code] = peer.make_client(str(cfg.tls_cert), str(cfg.tls_key), str(p.tls_cert), p.url)
            if p.flash_url and "flash" in self.lanes:
                self._flash_clients[code] = peer.FlashClient(
                    str(cfg.tls_cert), str(cfg.tls_key), str(p.tls_cert), p.flash_url
                )
            for lane in self.lanes:
                self.wake[(code, lane)] = asyncio.Event()
                run = self._run_bulk(code) if lane == "bulk" else self._run_flash(code)
                self._tasks.append(asyncio.create_task(run, name=f"deliver-{code}-{lane}"))

    async def stop(self) -> None:
        self.stopping = True
        for event in self.wake.values():
            event.set()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for code in list(self._settling):
            await self._settle(code)
        pending: list[asyncio.Future[Any]] = [*self._ahead.values(), *self._recording.values()]
        for work in pending:  # what is claimed is given back below
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await work
        if self._tasks:
            try:  # rows claimed and not sent: the next start sends them at once
                await self.node.lanes.run("control", self.node.release, self.worker_id)
            except Exception as exc:  # the database is gone: the leases lapse instead
                log.warning("could not give back claimed rows: %s", exc)
        for client in self.clients.values():
            await client.aclose()
        for flash_client in self._flash_clients.values():
            await flash_client.aclose()

    async def _run_flash(self, code: str) -> None:
        """The flash lane (R17): woken at once, and a report committed already claimed by this
        worker (``hand_over``) goes with no claim transaction once the lane is drained."""
        event = self.wake[(code, "flash")]
        must_claim = True
        while not self.stopping:
            handed = self.handed.pop(code, [])
            asked = self._asked.pop((code, "flash"), False)  # taken whichever way this pass goes
            queued = self.node.flash_queued.get(code, 0)  # rows queued here with no notice (an alarm): asked, too
            asked = asked or queued != self._queued_seen.get(code, 0)
            self._queued_seen[code] = queued
            if handed and self.drained.get(code) and not asked:
                rows, claimed = handed, False
            elif handed or must_claim or asked:
                # Rows handed over are claimed by this worker already: the claim returns them in order.
                await self._settle(code)  # else the claim would hand back rows whose receipt is being recorded
                try:
                    rows = await self.node.lanes.run(
                        "flash", self.node.claim, code, "flash", self.worker_id, BATCH["flash"]
                    )
                except Exception as exc:  # the database is down or busy: wait and try again
                    log.warning("claim failed for %s/flash: %s", code, exc)
                    await asyncio.sleep(1.0)
                    must_claim = True
                    continue
                claimed = True
            else:  # what was handed over is sent and nothing else was asked for: no claim, wait
                rows, claimed = [], False
            if not rows:
                if claimed:
                    self.drained[code] = True
                event.clear()
                if self.handed.get(code) or self._asked.get((code, "flash")):
                    continue
                try:  # other processes of this node may have queued rows: a look every 0.2 s
                    await asyncio.wait_for(event.wait(), 0.2)
                    must_claim = False
                except TimeoutError:  # a quiet spell: look in the outbox (other processes' rows, retries)
                    must_claim = True
                continue
            for row in rows:
                self.node.trace.mark(row["ref"], "handed")
            sent = await self._deliver(code, "flash", rows)
            self.drained[code] = sent and (not claimed or len(rows) < BATCH["flash"])
            must_claim = claimed or not sent  # after a claim more may wait; after a hand-over, wait to be told

    async def _run_bulk(self, code: str) -> None:
        """The bulk lane, pipelined so that the partner is not kept waiting for this node.

        One batch at a time is with the partner, so order holds. While it is, the next batch
        is claimed and encoded (``_post`` starts that), and while the next batch goes out, the
        last receipt is recorded. A send that fails gives back the batch claimed ahead with
        the rest, and the worker backs off as a whole."""
        event = self.wake[(code, "bulk")]
        while not self.stopping:
            ahead = self._ahead.pop(code, None)
            if ahead is None:
                self._asked.pop((code, "bulk"), None)  # the claim sees every row committed so far
            try:
                rows = await (ahead if ahead is not None else self._claim_ahead(code, []))
            except Exception as exc:  # the database is down or busy: wait and try again
                log.warning("claim failed for %s/bulk: %s", code, exc)
                await asyncio.sleep(1.0)
                continue
            if rows:
                await self._deliver(code, "bulk", rows)
                continue
            event.clear()
            if self._asked.pop((code, "bulk"), False):  # rows were committed while the claim ran
                continue
            with contextlib.suppress(TimeoutError):  # a quiet spell: look in the outbox again
                await asyncio.wait_for(event.wait(), 0.5)

    async def _claim_ahead(self, code: str, sending: list[RowKey]) -> list[dict[str, Any]]:
        """Claim the bulk rows after those in hand (``sending`` and rows whose receipt is being
        recorded), and encode their first run of items: ready to go when the receipt comes."""
        skip = [*self._in_hand.get(code, ()), *sending]
        rows = await self.node.lanes.run(
            "delivery", self.node.claim, code, "bulk", self.worker_id, BATCH["bulk"], LEASE, skip
        )
        first = item_run(rows)
        if first:
            encoded = await self.node.lanes.run("delivery", _guard_and_encode, self.node, code, "bulk", first)
            self._encoded[code] = ([r["key"] for r in first], encoded)
        return rows

    async def _recorded(self, code: str) -> None:
        """Wait for the bulk receipt being recorded for ``code``, if any (as ``_settle``)."""
        recording = self._recording.pop(code, None)
        await _recordings(code, [recording] if recording is not None else [])

    async def _deliver(self, code: str, lane: str, rows: list[dict[str, Any]]) -> bool:
        """Send ``rows`` in order; False once a send failed (the rest go back to the outbox)."""
        # Keep order: send runs of consecutive items together (``item_run``), notes one by one,
        # in seq order. When a send fails, the rows after it in this claim are released with
        # it: left claimed, they would be skipped by the next claim and overtaken by later rows.
        n = 0
        while n < len(rows):
            run = item_run(rows[n:])
            if run:
                n += len(run)
                if not await self._send_items(code, lane, run, [r["key"] for r in rows[n:]]):
                    return False
                continue
            row = rows[n]
            n += 1
            if not await self._post(code, PATHS[row["kind"]], row["body"], [row], lane, [r["key"] for r in rows[n:]]):
                return False
        return True

    async def _send_items(self, code: str, lane: str, rows: list[dict[str, Any]], after: list[RowKey]) -> bool:
        node = self.node
        keys, encoded = self._encoded.pop(code, ([], None)) if lane == "bulk" else ([], None)
        # Encoded ahead, the items were guarded against the agreement as it stood then: with a
        # note applied since, they are guarded again.
        if encoded is None or keys != [r["key"] for r in rows] or encoded.agreements is not node.applied_agreements():
            fresh = node.agreements_if_fresh() if lane == "flash" and len(rows) <= FLASH_INLINE else None
            if fresh is not None:
                # A report or two: guarded and encoded here. A hop to a thread and back is two
                # wake-ups, each a wait for a core while bulk work runs (R17).
                encoded = _guard_and_encode(node, code, lane, rows, fresh)
            else:  # off the event loop, in the lane's thread (it may look for new notes)
                encoded = await node.lanes.run(POOLS[lane], _guard_and_encode, node, code, lane, rows)
        blocked = encoded.blocked
        if blocked:
            log.warning("egress guard held back %d item(s) for %s", len(blocked), code)
            await node.lanes.run(
                POOLS[lane],
                node.delivered,
                [r["key"] for r in rows if r["ref"] in blocked],
                {"node": node.party, "egress_refused": blocked},
                "",
                blocked,
            )
        if not encoded.allowed:
            return True
        return await self._post(code, "/peer/items", encoded.body, encoded.allowed, lane, after)

    async def _post(
        self, code: str, path: str, body: bytes, rows: list[dict[str, Any]], lane: str, after: list[RowKey]
    ) -> bool:
        node = self.node
        seqs = [r["key"] for r in rows]
        headers = peer.sign_request(node.config.key, "POST", path, body)
        headers["X-Gsomia-Lane"] = lane  # lets the receiver schedule the parsing; the body says it too
        try:
            head = await heads.for_peer(node)
            headers[peer.HEAD_HEADER] = peer.encode_head(head)
        except Exception as exc:  # the head is a courtesy; delivery must not wait on it
            log.warning("could not sign a tree head: %s", exc)
        try:
            if lane == "flash":
                for row in rows:
                    node.trace.mark(row["ref"], "posting")
            client: httpx.AsyncClient | peer.FlashClient = self.clients[code]
            if lane == "flash":
                client = self._flash_clients.get(code, client)
            if lane == "bulk" and not after and code not in self._ahead:  # the last send of this claim
                self._ahead[code] = asyncio.ensure_future(self._claim_ahead(code, seqs))
            response = await client.post(path, content=body, headers=headers)
            if 400 <= response.status_code < 500 and response.status_code not in (401, 408, 429):
                # The peer read the request and refused it for good: record why, do not retry forever.
                reason = f"refused by {code}: HTTP {response.status_code}: {response.text[:300]}"
                log.warning("%s", reason)
                refused = {r["ref"]: reason for r in rows}
                await node.lanes.run(
                    POOLS[lane], node.delivered, seqs, {"node": code, "refused_http": response.status_code}, "", refused
                )
                if any(r["kind"] == "note" for r in rows):  # the two nodes now disagree on the agreement's status
                    await node.lanes.run("control", node.raise_alarm, "note_refused", code, reason)
                return True
            if response.status_code != 200:
                raise RuntimeError(f"HTTP {response.status_code}: {response.text[:200]}")
            answer = response.json()
            receipt_bytes = canonical(answer["receipt"])  # as the partner signed it (``peer.sign_receipt``)
            kid = answer.get("kid") or node.peer_chains[code].current.kid
            if kid != node.peer_chains[code].current.kid and self.keys is not None:
                await self.keys.refresh(code)  # signed by a key we do not know yet: a rotation?
            if kid != node.peer_chains[code].current.kid:
                raise RuntimeError(f"the receipt is signed by key {kid}, not {code}'s current key")
            if not peer.verify_receipt(node.peer_chains[code].current, receipt_bytes, answer["signature"]):
                raise RuntimeError("the receipt signature does not verify")
        except Exception as exc:  # network down, peer restarting, bad answer: retry later
            delay = backoff(max(r["attempts"] for r in rows))
            log.info("delivery to %s failed (%s); retrying in %.2f s", code, exc, delay)
            ahead = self._ahead.pop(code, None) if lane == "bulk" else None
            if ahead is not None:  # claimed while this batch was out: given back with the rest, in order
                with contextlib.suppress(Exception):
                    after = [*after, *(r["key"] for r in await ahead)]
                self._encoded.pop(code, None)
            await node.lanes.run(POOLS[lane], node.failed, seqs, str(exc), delay, after)
            if not self.stopping:
                await asyncio.sleep(delay)
            return False
        receipt = answer["receipt"]
        if self.witness is not None:
            self.witness.observe(code, receipt.get("tree_head"))
        refused = {r.get("item_id", ""): r.get("reason", "") for r in receipt.get("refused", [])}
        recording = node.lanes.run(POOLS[lane], node.delivered, seqs, receipt, answer["signature"], refused, lane)
        if lane == "flash":
            self._settling.setdefault(code, []).append(asyncio.ensure_future(recording))
        else:  # recorded while the next batch goes out; its rows stay in hand until then
            await self._recorded(code)
            in_hand = self._in_hand.setdefault(code, set())
            in_hand.update(seqs)
            task = asyncio.ensure_future(recording)
            task.add_done_callback(lambda _: in_hand.difference_update(seqs))
            self._recording[code] = task
        return True

    async def _settle(self, code: str) -> None:
        """Wait for the flash receipts still being recorded for ``code``.

        One that fails to record leaves its rows claimed by this worker: its next claim sends
        them again, and the partner, which stores by item id, acknowledges them again."""
        await _recordings(code, self._settling.pop(code, []))


def item_run(rows: list[dict[str, Any]], budget: int | None = None) -> list[dict[str, Any]]:
    """The items at the head of ``rows`` that go in one delivery: up to the first row that is
    not an item, and within ``budget`` (``BATCH_BYTES``) envelope bytes, but at least one item."""
    budget = BATCH_BYTES if budget is None else budget
    run: list[dict[str, Any]] = []
    size = 0
    for row in rows:
        if row["kind"] != "item" or (run and size + len(row["body"]) > budget):
            break
        run.append(row)
        size += len(row["body"])
    return run


async def _recordings(code: str, tasks: Iterable[asyncio.Future[None]]) -> None:
    """Wait for receipts from ``code`` being recorded; one that failed is logged, not raised."""
    for task in tasks:
        try:
            await task
        except Exception as exc:
            log.warning("recording a receipt from %s failed: %s", code, exc)


def _guard_and_encode(
    node: Node, code: str, lane: str, rows: list[dict[str, Any]], agreements: Applied | None = None
) -> Encoded:
    """Check every outgoing item again (egress guard), then encode the ones that may go.

    Each against the agreement its label names, as in ``agreements``, or else as the node's
    stand now (which may read new notes)."""
    agreements = agreements or node.current_agreements()
    allowed: list[dict[str, Any]] = []
    blocked: dict[str, str] = {}
    for row in rows:
        label = node.label_to_send(row["ref"], row["body"])
        if label.originator == node.party:
            problem = egress.check_named(agreements.by_id, label, code, node.party)
        else:  # another party's item, passed on through this node as a hub (R18)
            problem = node.check_forward(agreements, label, code)
        if problem is None:
            allowed.append(row)
        else:
            blocked[row["ref"]] = f"egress guard: {problem}"
    return Encoded(allowed, blocked, items_body(lane, [r["body"] for r in allowed]), agreements)


def items_body(lane: str, envelopes: list[bytes]) -> bytes:
    """``{"lane": lane, "envelopes": [base64, ...]}`` as JSON: base64 and the lane's name need
    no escaping, so the bytes are joined as they are instead of passed through ``json.dumps``."""
    if lane not in LANES:
        raise ValueError(f"unknown lane {lane!r}")
    return b'{"lane":"%s","envelopes":[%s]}' % (
        lane.encode(),
        b",".join(b'"' + base64.b64encode(env) + b'"' for env in envelopes),
    )
