"""Receiving items a partner delivers: each envelope opened, checked by the core at its release
instant (``policy.receive``), stored once however often delivered; a receipt for the sender."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from gsomia.core import envelope, policy, trilateral
from gsomia.core.label import Label, LabelInvalid
from gsomia.node.runtime.clock import Clock
from gsomia.node.runtime.lanes import Lanes
from gsomia.node.runtime.trace import Trace
from gsomia.node.service.agreements import Agreements
from gsomia.node.service.alerts import FreshAlert
from gsomia.node.service.ledger import Ledger, entry
from gsomia.node.service.outbox import Outbox
from gsomia.store import items


class Receive:
    """A partner's delivery of items, on either lane."""

    def __init__(
        self,
        party: str,
        clock: Clock,
        agreements: Agreements,
        outbox: Outbox,
        ledger: Ledger,
        lanes: Lanes,
        trace: Trace,
        approvals: Callable[[str], list[trilateral.Approval]],
    ) -> None:
        self.party = party
        # The approvals kept here for an item (``Casework.approvals``): what an item passed on by
        # a hub is checked against.
        self.approvals = approvals
        self.clock = clock
        self.agreements = agreements
        self.outbox = outbox
        self.ledger = ledger
        self.lanes = lanes
        self.trace = trace

    def receive_alerts(
        self, peer: str, envelopes: Sequence[bytes], lane: str
    ) -> tuple[dict[str, Any], list[FreshAlert]]:
        """Verify each envelope, check the agreement at its release instant, store; idempotent.

        Returns the receipt and the flash reports newly stored, opened, for the alert streams."""
        now = self.clock.now()
        applied = self.agreements.current()
        accepted: list[tuple[Label, bytes, bytes]] = []
        refused: list[dict[str, str]] = []
        for n, env in enumerate(envelopes):
            if lane == "bulk" and n % 16 == 0:
                self.lanes.yield_to_flash()
            try:
                opener = applied.opener_for(peer, env)
                label, payload = opener.open(env)
            except (envelope.EnvelopeError, LabelInvalid) as exc:
                refused.append({"item_id": "", "reason": f"{type(exc).__name__}: {exc}"})
                continue
            decision = policy.receive(opener.agreement, label, self.party, peer, now)
            if decision.permit and label.originator != peer:  # passed on by the hub (R18)
                decision = trilateral.accept_relayed(label, peer, self.party, self.approvals(label.item_id))
            if not decision.permit:
                reason = decision.reasons[0]
                refused.append({"item_id": label.item_id, "reason": f"{reason.rule}: {reason.text}"})
                continue
            accepted.append((label, env, payload))
        if lane == "flash":
            for lbl, _, _ in accepted:
                self.trace.mark(lbl.item_id, "receive.begin")
        fresh_alerts = self._store(peer, accepted, lane, now) if accepted else []
        received = [lbl.item_id for lbl, _, _ in accepted]  # repeats are acknowledged again
        receipt = {"node": self.party, "received": received, "refused": refused, "at": now.isoformat()}
        for a in fresh_alerts:
            self.trace.mark(a.alert_id, "receive.committed")
        return receipt, fresh_alerts

    def _store(
        self, peer: str, accepted: Sequence[tuple[Label, bytes, bytes]], lane: str, now: datetime
    ) -> list[FreshAlert]:
        """The accepted items, their receipts' ledger entries and (flash lane) their alerts."""
        flash_lane = lane == "flash"
        rows = [items.item_row(lbl, env, "in", peer, lane, lbl.created_at, now) for lbl, env, _ in accepted]
        entries = [entry(now, "receipt", peer, lbl.item_id, {"from": peer, "lane": lane}) for lbl, _, _ in accepted]
        alerts = [items.alert_row(lbl.item_id, peer, "in", now) for lbl, _, _ in accepted] if flash_lane else []
        store = self.outbox.flash if flash_lane else self.outbox.main
        written = items.receipt(self.outbox.main.engine, store, flash_lane, rows, entries, alerts)
        self.ledger.queued += written.queued
        return [
            FreshAlert(written.alert_seqs[lbl.item_id], lbl.item_id, peer, "in", peer, lbl, payload)
            for lbl, _, payload in accepted
            if lbl.item_id in written.alert_seqs
        ]
