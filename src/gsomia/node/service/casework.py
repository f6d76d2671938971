"""Records about items (R5, R6, R8, R9, R11): consent and release, compromise and
investigation, copies, destruction and reclassification; the register and the cases.

Each record is checked by the core (``records.check``), signed by this node, kept with its
ledger entry and sent to the partner in one transaction.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert, select
from sqlalchemy.exc import IntegrityError

from gsomia.core import egress, policy, records, trilateral
from gsomia.core.agreement import lifecycle, route
from gsomia.core.agreement.terms import Agreement
from gsomia.core.errors import NotFound, Refused
from gsomia.core.label import Label, display, marking_for
from gsomia.node.runtime.clock import Clock
from gsomia.node.runtime.config import NodeConfig
from gsomia.node.service.agreements import Agreements, Applied
from gsomia.node.service.integrity import Integrity
from gsomia.node.service.ledger import Ledger, entry
from gsomia.node.service.outbox import Outbox
from gsomia.store import gate
from gsomia.store import schema as t


class Casework:
    """Makes, receives and lists the signed records about items."""

    def __init__(
        self,
        engine: Engine,
        config: NodeConfig,
        clock: Clock,
        agreements: Agreements,
        integrity: Integrity,
        outbox: Outbox,
        ledger: Ledger,
    ) -> None:
        self.engine = engine
        self.config = config
        self.party = config.party
        self.clock = clock
        self.agreements = agreements
        self.integrity = integrity
        self.outbox = outbox
        self.ledger = ledger

    def records_of(self, conn: Connection, item_id: str) -> list[records.Record]:
        """An item's records that verify, in the order kept."""
        rows = conn.execute(
            select(t.records.c.body, t.records.c.signature)
            .where(t.records.c.item_id == item_id)
            .order_by(t.records.c.seq)
        )
        return [r for r in (self.integrity.signed_record(b, sig) for b, sig in rows) if r is not None]

    def reclassifications(self, conn: Connection, item_ids: list[str]) -> dict[str, list[records.Record]]:
        """The reclassifications that verify, by item (R6)."""
        found: dict[str, list[records.Record]] = {}
        if not item_ids:
            return found
        rows = conn.execute(
            select(t.records.c.item_id, t.records.c.body, t.records.c.signature)
            .where(t.records.c.kind == "reclassification", t.records.c.item_id.in_(item_ids))
            .order_by(t.records.c.seq)
        )
        for item_id, body, sig in rows:
            record = self.integrity.signed_record(body, sig)
            if record is not None:
                found.setdefault(item_id, []).append(record)
        return found

    def _item(self, item_id: str) -> tuple[Any, list[records.Record]]:
        with self.engine.connect() as conn:
            row = conn.execute(select(t.items).where(t.items.c.item_id == item_id)).mappings().first()
            if row is None:
                raise NotFound(f"no item {item_id}")
            return row, self.records_of(conn, item_id)

    def register(self, subject: policy.Subject, item_id: str) -> dict[str, Any]:
        """Where an item is (R8): holder, current marking, copies, translations, destruction."""
        decision = policy.read_register(subject)
        if not decision.permit:
            raise Refused(decision, "reading the register")
        row, history = self._item(item_id)
        sealed = Label.from_bytes(row["label"].encode("utf-8"))
        current = records.effective_label(sealed, history)
        agreement = self.agreements.by_id(sealed.agreement)
        reg = records.register(history, self.party)
        marking = marking_for(current, agreement, self.party)
        return {
            "item_id": item_id,
            "holder": self.party,
            "originator": sealed.originator,
            "direction": row["direction"],
            "sealed_classification": sealed.classification,
            "classification": current.classification,
            "marking": marking,
            "display": display(current, agreement, self.party),
            "copies": [{**c, "marking": marking} for c in reg["copies"]],
            "item_destroyed": reg["item_destroyed"],
            "destroyed_by": reg["destroyed_by"],
            "records": [r.body for r in history if r.kind in records.REGISTER],
        }

    def _store_record(self, conn: Connection, record: records.Record, origin: str) -> None:
        body = record.body
        conn.execute(
            insert(t.records).values(
                record_id=record.id,
                kind=record.kind,
                item_id=body["item_id"],
                ref=body.get("request_id") or body.get("report_id"),
                origin=origin,
                body=record.canonical().decode("utf-8"),
                signature=record.signature,
                created_at=datetime.fromisoformat(body["at"]),
            )
        )

    def make_record(self, subject: policy.Subject, kind: str, item_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        """A record about an item; checked by the core, signed, kept and sent to the partner."""
        decision = records.maker(subject, kind)
        if not decision.permit:
            raise Refused(decision, f"making a {kind}")
        now = self.clock.now()
        row, history = self._item(item_id)
        label = Label.from_bytes(row["label"].encode("utf-8"))
        peer = row["peer"]
        agreement = self.agreements.by_id(label.agreement)
        status, current = lifecycle.status(agreement, now), records.effective_label(label, history)
        if not policy.may_know(agreement, subject, current, status, now):
            # Answered as an unknown id (principle 5); why, the ledger says.
            unknown = policy.decide(agreement, subject, policy.Action.READ, current, status, (), now)
            self.ledger.audit_alone(f"{kind}_denied", subject.id, item_id, unknown.as_dict())
            raise NotFound(f"no item {item_id}")
        extra = records.check(records.Ask(subject, kind, fields, label, agreement, history, self.party, now))
        if kind == "release":  # the egress guard's own word on a release, apart from the policy's
            consents = records.consents(history, label.originator)
            guard = egress.release(label, extra["recipient"], extra["purpose"], self.party, consents)
            if not guard.permit:
                raise Refused(guard, f"making a {kind}")
        record = records.make(self.config.key, kind, self.party, subject.id, item_id, now, **{**fields, **extra})
        lane = "flash" if kind in records.FLASH else "bulk"
        with gate.begin(self.engine) as conn:
            self._store_record(conn, record, self.party)
            self.ledger.log(conn, "bulk", [entry(now, kind, subject.id, item_id, record.body)])
            self.outbox.enqueue(conn, peer, lane, "record", record.id, json.dumps(record.as_dict()).encode())
        if lane == "flash":
            self.outbox.queued_flash(peer)
        state = records.case_state([*history, record], records.case_of(record))
        return {"record": record.body, "state": state, "peer": peer}

    def receive_record(self, peer: str, data: Any) -> bool:
        chains = self.agreements.keys.peer_chains
        body = data.get("body") if isinstance(data, dict) else None
        relayed = isinstance(body, dict) and body.get("by") not in (peer, None)
        if relayed:  # an originator's approval, passed on by the hub ahead of the item (R18)
            record = records.verify_relayed(data, chains, peer, self.party)
        else:
            record = records.verify(data, chains[peer], peer)
        now = self.clock.now()
        try:
            with gate.begin(self.engine) as conn:
                # A record is about an item shared with the partner that made it. One about an
                # item not here yet is kept: the item may come on the slower lane after it.
                shared = conn.execute(
                    select(t.items.c.peer).where(t.items.c.item_id == record.body["item_id"])
                ).scalar_one_or_none()
                if shared is not None and shared != peer:
                    raise records.RecordInvalid(f"{peer} has no part in item {record.body['item_id']}")
                self._store_record(conn, record, peer)
                received = entry(now, f"{record.kind}_received", peer, record.body["item_id"], record.body)
                self.ledger.log(conn, "bulk", [received])
                if record.kind == "forward_approval" and shared is not None and not relayed:
                    self._pass_on(conn, record, now)
        except IntegrityError:
            return False
        return True

    def _pass_on(self, conn: Connection, approval: records.Record, now: datetime) -> None:
        """As the hub, pass an item on as its originator approved, if the core permits (R18):
        queued for the recipient with its ledger entry, in the caller's transaction."""
        item_id, recipient = approval.body["item_id"], str(approval.body.get("recipient"))
        raw = conn.execute(select(t.items.c.label).where(t.items.c.item_id == item_id)).scalar_one()
        label = Label.from_bytes(raw.encode("utf-8"))
        approvals = records.approvals(self.records_of(conn, item_id))
        try:
            arrangement, carrier = self._hop(self.agreements.current(), label, recipient)
        except route.RouteError as exc:
            decision = policy.Decision(False, (policy.Reason(exc.rule, str(exc)),))
        else:
            decision = trilateral.forward(arrangement, carrier, label, self.party, recipient, approvals, now)
        detail = {"recipient": recipient, "approval": approval.id, "decision": decision.as_dict()}
        if decision.permit and recipient in self.config.peers:
            # The approval first, then the item: the recipient's ledger holds the originator's
            # signed word for the hop as well as the item (the same lane keeps them in order).
            body = json.dumps(approval.as_dict()).encode()
            self.outbox.enqueue(conn, recipient, "bulk", "record", approval.id, body)
            self.outbox.enqueue(conn, recipient, "bulk", "item", item_id, b"")
            self.ledger.log(conn, "bulk", [entry(now, "forward", self.party, item_id, detail)])
        else:
            self.ledger.log(conn, "bulk", [entry(now, "forward_denied", self.party, item_id, detail)])

    def _hop(self, applied: Applied, label: Label, recipient: str) -> tuple[Agreement, Agreement]:
        """The arrangement ``label`` travels under and the agreement carrying this node's hop to
        ``recipient``; ``route.RouteError`` where either is missing."""
        arrangement = applied.by_id.get(label.agreement)
        if arrangement is None:
            raise route.RouteError(f"labelled for {label.agreement}, which is not an agreement of {self.party}", "R3")
        return arrangement, route.carrier(arrangement, (self.party, recipient), applied.by_id)

    def check_forward(self, applied: Applied, label: Label, peer: str) -> str | None:
        """The hub's egress guard on another party's item it passes on to ``peer`` (R18): the
        label, the approvals kept here and the agreement carrying the hop, apart from the
        decision that queued it. None to let it go, else why not."""
        try:
            arrangement, carrier = self._hop(applied, label, peer)
        except route.RouteError as exc:
            return f"{exc.rule}: {exc}"
        now = self.clock.now()
        problem = trilateral.check_arrangement(arrangement, label, self.party, now)
        if problem is not None:
            return problem
        return trilateral.check_forward(carrier, label, self.party, peer, self.approvals(label.item_id), now)

    def approvals(self, item_id: str) -> list[trilateral.Approval]:
        """The approvals kept here to pass ``item_id`` on through this node (R18)."""
        with self.engine.connect() as conn:
            return records.approvals(self.records_of(conn, item_id))

    def cases(self, subject: policy.Subject, item_id: str | None = None) -> list[dict[str, Any]]:
        """Every case (consent request, compromise report) with its records and derived state."""
        decision = policy.list_cases(subject)
        if not decision.permit:
            raise Refused(decision, "listing cases")
        with self.engine.connect() as conn:
            q = select(t.records.c.body, t.records.c.signature).order_by(t.records.c.seq)
            if item_id:
                q = q.where(t.records.c.item_id == item_id)
            found = [self.integrity.signed_record(b, sig) for b, sig in conn.execute(q)]
        kept = [r for r in found if r is not None]
        return [
            {
                "case": r.id,
                "kind": r.kind,
                "item_id": r.body["item_id"],
                "state": records.case_state(kept, r.id),
                "records": [x.body for x in kept if records.case_of(x) == r.id],
            }
            for r in kept
            if r.kind in ("consent_request", "compromise_report")
        ]
