"""Delivery's side of the outbox: claim rows, mark them delivered or failed, give them back."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection

from gsomia.node.runtime.clock import SystemClock
from gsomia.node.service.ledger import Ledger, entry
from gsomia.store import gate
from gsomia.store import outbox as rows
from gsomia.store.lane import Store
from gsomia.store.outbox import OutboxRow, RowKey

LANES = ("flash", "bulk")
LEASE = 30.0  # seconds a delivery worker holds the outbox rows it claimed


class Outbox:
    """The outbox rows of both files, for the use cases that owe a partner and the workers that pay.

    Leases, back-off and the rows' creation instants are real time even where the node's
    clock is simulated (the demo moves it, backwards too): a lease must lapse, and the flash
    lane's rows of the two files must keep the order they were committed in."""

    def __init__(self, main: Store, flash: Store, party: str, ledger: Ledger, wall: SystemClock) -> None:
        self.main = main
        self.flash = flash
        self.party = party
        self.ledger = ledger
        self.wall = wall
        # Per peer, how many times this process committed flash-lane outbox rows nobody holds:
        # a delivery worker that sees the count move claims before it sends what it was handed.
        self.flash_queued: dict[str, int] = {}
        # Called from the committing thread with the peer's code, when another process delivers the flash lane.
        self.on_flash_queued: Callable[[str], None] | None = None

    def files(self) -> tuple[Store, ...]:
        """The node's files: the main one, and the flash lane's where it has one of its own."""
        return (self.main, self.flash) if self.flash.separate else (self.main,)

    def row(self, peer: str, lane: str, kind: str, ref: str, body: bytes) -> dict[str, Any]:
        return rows.new_row(peer, lane, kind, ref, body, self.wall.now())

    def enqueue(self, conn: Connection, peer: str, lane: str, kind: str, ref: str, body: bytes) -> None:
        """A row owed to ``peer``, in the caller's transaction (main file)."""
        rows.add(conn, [self.row(peer, lane, kind, ref, body)])

    def queued_flash(self, peer: str) -> None:
        """Called after a commit that put unclaimed rows for ``peer`` on the flash lane."""
        self.flash_queued[peer] = self.flash_queued.get(peer, 0) + 1
        if self.on_flash_queued is not None:  # the node's flash process delivers them: tell it
            self.on_flash_queued(peer)

    def claim(
        self, peer: str, lane: str, worker: str, limit: int, lease: float = LEASE, skip: Sequence[RowKey] = ()
    ) -> list[OutboxRow]:
        """Claim undelivered rows in order. On PostgreSQL, rows locked by another worker are skipped.

        Rows this worker holds already (a flash report committed claimed, ``provide_alert``)
        come back with the rest, in their place, except those in ``skip``: the worker has them
        in hand (with the partner, or their receipt being recorded) and claims what comes next.
        The flash lane's rows are in the flash file where there is one (reports, receipts'
        entries), and in the main file (notes, alarms, records, and reports committed before
        the flash file): both are claimed, in the order they were committed."""
        stores = self.files() if lane == "flash" else (self.main,)
        claimed: list[dict[str, Any]] = []
        now = self.wall.now()
        for store in stores:
            skipped = [seq for where, seq in skip if where == store.name]
            claimed += rows.claim(store, peer, lane, worker, limit, now, rows.lease(now, lease), skipped)
        if len(stores) > 1:
            claimed.sort(key=lambda r: (r["created_at"], r["key"]))
        for r in claimed:
            del r["created_at"]
        return claimed  # type: ignore[return-value]  # the claimed columns and the key

    def _by_store(self, keys: Sequence[RowKey]) -> list[tuple[Store, list[int]]]:
        """Outbox row keys by the file that holds them (the flash file's first)."""
        flash_seqs = [seq for where, seq in keys if where == "flash"]
        main_seqs = [seq for where, seq in keys if where != "flash"]
        split = [(self.flash, flash_seqs)] if flash_seqs else []
        return split + ([(self.main, main_seqs)] if main_seqs else [])

    def delivered(
        self,
        keys: Sequence[RowKey],
        receipt: dict[str, Any],
        signature: str,
        refused: dict[str, str],
        lane: str = "bulk",
    ) -> None:
        """Mark rows delivered and keep the receipt (and, if signed, its ledger entry) beside them.

        Rows of both files (a flash claim): the receipt goes with the flash file's rows, and
        their transaction commits first, so a crash between the two sends the main file's rows
        again (the partner acknowledges a repeat) rather than losing the receipt."""
        now = self.wall.now()
        for n, (store, seqs) in enumerate(self._by_store(keys) or [(self.main, [])]):
            with gate.begin(store.engine) as conn:
                rows.mark_delivered(conn, store, seqs, now, refused)
                if n:
                    continue
                peer = str(receipt.get("node", "?"))
                if refused and not signature:  # held back here, or refused unread: no signed receipt says so
                    self.ledger.log(
                        conn,
                        lane,
                        [
                            entry(now, "delivery_refused", self.party, ref or None, {"peer": peer, "reason": reason})
                            for ref, reason in refused.items()
                        ],
                    )
                rows.keep_receipt(conn, store, receipt, signature, now)
                if signature:  # the partner's signed word that it holds these: on this ledger too, one entry a batch
                    detail = {"receipt": receipt, "signature": signature}
                    self.ledger.log(conn, lane, [entry(now, "receipt_signed", peer, None, detail)])

    def failed(self, keys: Sequence[RowKey], error: str, delay: float, release: Sequence[RowKey] = ()) -> None:
        """A send failed: count the attempt, and give back ``release`` (the rest of the claim) unsent."""
        retry_at = rows.lease(self.wall.now(), delay)
        failing = set(keys)
        for store, seqs in self._by_store([*keys, *release]):
            sent = [seq for seq in seqs if (store.name, seq) in failing]
            given_back = [seq for seq in seqs if (store.name, seq) not in failing]
            rows.fail(store, sent, given_back, error, retry_at)

    def release(self, worker: str) -> None:
        """Give back what ``worker`` holds unsent (it is stopping): the next worker need not wait out the lease."""
        for store in self.files():
            rows.release(store, worker)

    def pending(self, peer: str | None = None) -> int:
        """Outbox rows not yet delivered, in both files where there are two."""
        return sum(rows.pending(store, peer) for store in self.files())
