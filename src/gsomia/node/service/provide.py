"""Providing items: each decided by the policy, sealed for its recipient, committed with its
outbox row and ledger entry (and, on the flash lane, its alert), all or nothing."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gsomia.core import envelope, policy, trilateral
from gsomia.core.agreement import lifecycle
from gsomia.core.agreement.schemes import spelling
from gsomia.core.agreement.terms import Agreement
from gsomia.core.errors import NotFound, Refused
from gsomia.core.label import Label, new_item_id
from gsomia.node.runtime.clock import Clock
from gsomia.node.runtime.lanes import Lanes
from gsomia.node.runtime.trace import Trace
from gsomia.node.service.agreements import Agreements, Applied
from gsomia.node.service.alerts import FreshAlert
from gsomia.node.service.integrity import Keys
from gsomia.node.service.ledger import Ledger, entry
from gsomia.node.service.outbox import LEASE, Outbox
from gsomia.store import items
from gsomia.store import outbox as outbox_rows
from gsomia.store.outbox import OutboxRow

# Labels kept for the egress guard (``Provide.sealed_labels``), about 1 KB each. Past this many (a
# partner down for long, rows another process sent) they are dropped and the guard parses labels.
SEALED_LABELS_KEPT = 50_000


@dataclass(frozen=True)
class ItemSpec:
    to: str
    classification: str
    payload: bytes
    releasable_to: tuple[str, ...] = ()
    purposes: tuple[str, ...] = ()
    compartments: tuple[str, ...] = ()


class Provide:
    """A subject provides items to partners."""

    def __init__(
        self,
        party: str,
        clock: Clock,
        agreements: Agreements,
        keys: Keys,
        outbox: Outbox,
        ledger: Ledger,
        lanes: Lanes,
        trace: Trace,
    ) -> None:
        self.party = party
        self.clock = clock
        self.agreements = agreements
        self.keys = keys
        self.outbox = outbox
        self.ledger = ledger
        self.lanes = lanes
        self.trace = trace
        # The labels of bulk items this process sealed and has not yet sent, by item id: the egress
        # guard takes one instead of parsing the envelope's label again when the bytes are the same.
        self.sealed_labels: dict[str, Label] = {}

    def provide(self, subject: policy.Subject, specs: Sequence[ItemSpec], lane: str = "bulk") -> list[dict[str, Any]]:
        """Decide, seal and commit items with their outbox rows; all or nothing."""
        return self._provide(subject, specs, lane, None)[0]

    def provide_alert(
        self, subject: policy.Subject, spec: ItemSpec, worker: str | None
    ) -> tuple[dict[str, Any], list[OutboxRow], list[FreshAlert]]:
        """A flash report (R17): committed like any item, its outbox row already claimed by ``worker``.

        The claim is part of the commit, so the delivery worker can send the row it is handed
        at once instead of claiming it back in a transaction of its own; the stream shows the
        returned ``FreshAlert`` without reading it back. With no ``worker`` (this process does not
        deliver the flash lane), the row is left for whichever worker claims it. On SQLite it
        is all written to the flash lane's own file (``store.flash``): no bulk transaction
        holds that file's write lock."""
        results, claimed, fresh = self._provide(subject, [spec], "flash", worker)
        return results[0], claimed, fresh

    def _decided(
        self, subject: policy.Subject, specs: Sequence[ItemSpec], lane: str, now: datetime
    ) -> dict[tuple[str, str, str], list[tuple[bytes, Label]]]:
        """Each item routed (R1, R18), labelled and decided (R5, R13, R14); the first refusal
        ends the provision.

        Grouped by the peer it goes to, the agreement it travels under and its final recipient,
        to be sealed together."""
        by_peer: dict[tuple[str, str, str], list[tuple[bytes, Label]]] = {}
        applied = self.agreements.current()
        for n, spec in enumerate(specs):
            if lane == "bulk" and n % 16 == 0:
                self.lanes.yield_to_flash()
            agreement, peer, released = self._route(subject, applied, spec, now)
            label = Label(
                item_id=new_item_id(),
                agreement=agreement.id,
                originator=self.party,
                # The agreement's own spelling (군사Ⅱ급비밀 is 군사II급비밀): never a second one in a label.
                classification=spelling(agreement, self.party, spec.classification) or spec.classification,
                releasable_to=released,
                created_at=now,
                purposes=spec.purposes,
                compartments=spec.compartments,
                route="trilateral" if peer != spec.to else "direct",
            )
            status = lifecycle.status(agreement, now)
            decision = policy.decide(agreement, subject, policy.Action.PROVIDE, label, status, (), now, recipient=peer)
            if not decision.permit:
                self.ledger.audit_alone("provide_denied", subject.id, label.item_id, decision.as_dict())
                raise Refused(decision, f"providing to {spec.to}")
            by_peer.setdefault((peer, agreement.id, spec.to), []).append((spec.payload, label))
        return by_peer

    def _route(
        self, subject: policy.Subject, applied: Applied, spec: ItemSpec, now: datetime
    ) -> tuple[Agreement, str, tuple[str, ...]]:
        """The agreement an item travels under, the peer it goes to (the hub, on the route
        through it) and whom it is released to, as the core chooses (R1, R5, R18). Where no
        arrangement joins this node and the recipient, the bilateral agreement decides alone,
        in force or not (R13, R14)."""
        direct = spec.releasable_to or (spec.to,)
        if spec.to not in applied.via_hub:
            return applied.with_peer(spec.to), spec.to, direct
        decision, chosen = trilateral.choose(applied.by_id, self.party, spec.to, spec.purposes, now)
        if chosen is not None and chosen.kind == "trilateral" and chosen.hub is not None:
            if spec.to not in self.keys.peer_chains:  # sealed for the recipient too: its key is needed
                raise NotFound(f"no partner {spec.to!r} on this node")
            decision, released = trilateral.release_through(chosen.hub, spec.to, spec.releasable_to)
            if decision.permit:
                return chosen.agreement, chosen.hub, released
        if chosen is None or not decision.permit:
            self.ledger.audit_alone("provide_denied", subject.id, None, decision.as_dict())
            raise Refused(decision, f"providing to {spec.to}")
        return applied.with_peer(spec.to), spec.to, direct

    def _provide(
        self, subject: policy.Subject, specs: Sequence[ItemSpec], lane: str, worker: str | None
    ) -> tuple[list[dict[str, Any]], list[OutboxRow], list[FreshAlert]]:
        if not specs:
            return [], [], []
        now = self.clock.now()
        by_peer = self._decided(subject, specs, lane, now)
        results: list[dict[str, Any]] = []
        rows: list[dict[str, Any]] = []
        sent: list[dict[str, Any]] = []
        entries: list[dict[str, Any]] = []
        opened: list[tuple[str, Label, bytes]] = []
        sealers = self.agreements.applied.sealers  # those the items were just decided under
        for (peer, agreement_id, recipient), batch in by_peer.items():
            # Through a hub, sealed for the final recipient too: the hub passes the envelope on
            # as its originator signed it (R18).
            ends = [peer] if recipient == peer else [peer, recipient]
            keys = [*(self.keys.peer_chains[p].current for p in ends), self.keys.public]
            for (payload, label), env in zip(batch, sealers[agreement_id].seal_batch(batch, keys), strict=True):
                rows.append(items.item_row(label, env, "out", peer, lane, now, None))
                # A bulk envelope is stored once, in ``items``: the claim reads it from there. A flash
                # report's outbox row keeps its own copy: its item may have moved to the main file.
                sent.append(self.outbox.row(peer, lane, "item", label.item_id, env if lane == "flash" else b""))
                detail: dict[str, Any] = {"to": peer, "lane": lane}
                if recipient != peer:
                    detail.update(route="trilateral", recipient=recipient)
                entries.append(entry(now, "provide", subject.id, label.item_id, detail))
                results.append({"item_id": label.item_id, "to": peer, "classification": label.classification})
                opened.append((peer, label, payload))
        if worker is not None:  # leases are real time (``Outbox``)
            until = outbox_rows.lease(self.outbox.wall.now(), LEASE)
            sent = [{**row, "claimed_by": worker, "claimed_until": until} for row in sent]
        if lane == "bulk":
            self.lanes.yield_to_flash()  # let a pending flash report take the write lock first
        else:
            for r in results:
                self.trace.mark(r["item_id"], "provide.begin")
        alerts = (
            [items.alert_row(label.item_id, self.party, "out", now) for _, label, _ in opened]
            if lane == "flash"
            else []
        )
        store = self.outbox.flash if lane == "flash" else self.outbox.main
        written = items.provision(store, lane == "flash", rows, sent, worker is not None, entries, alerts)
        self.ledger.queued += written.queued
        fresh = [
            FreshAlert(written.alert_seqs[label.item_id], label.item_id, self.party, "out", peer, label, payload)
            for peer, label, payload in opened
            if lane == "flash"
        ]
        for a in fresh:
            self.trace.mark(a.alert_id, "provide.committed")
        if lane == "bulk":
            if len(self.sealed_labels) + len(opened) > SEALED_LABELS_KEPT:
                self.sealed_labels.clear()  # rows another process sent, or a long backlog: start afresh
            self.sealed_labels.update((label.item_id, label) for _, label, _ in opened)
        if lane == "flash" and worker is None:
            for peer in {peer for peer, _, _ in by_peer}:
                self.outbox.queued_flash(peer)
        return results, written.claimed, fresh

    def label_to_send(self, item_id: str, env: bytes) -> Label:
        """The label of an envelope about to leave, for the egress guard: the one sealed here
        if its bytes are the envelope's, else parsed from the envelope (unverified, as
        ``envelope.peek_label``: the receiver verifies it)."""
        raw = envelope.peek_label_bytes(io.BytesIO(env))
        sealed = self.sealed_labels.pop(item_id, None)
        if sealed is not None and sealed.to_bytes() == raw:
            return sealed
        return Label.from_bytes(raw)
