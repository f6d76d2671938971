"""Reading items: the listing a subject may see, and an item's content if the decision permits (R7, R8)."""

from __future__ import annotations

import base64
from typing import Any

from sqlalchemy import select

from gsomia.core import envelope, policy, records
from gsomia.core.agreement import lifecycle
from gsomia.core.errors import NotFound, Refused
from gsomia.core.label import Label, LabelInvalid, display, is_item_id, marking_for
from gsomia.node.runtime.clock import Clock
from gsomia.node.service.agreements import Agreements
from gsomia.node.service.casework import Casework
from gsomia.node.service.ledger import Ledger
from gsomia.node.service.partner import PartnerLedger
from gsomia.store import schema as t
from gsomia.store.lane import Store

# Items a listing reads at a time while it looks for ones the subject may know of.
LIST_SCAN = 500


class Reading:
    """What a subject may list and read, each read and refusal on the ledger."""

    def __init__(
        self,
        main: Store,
        flash: Store,
        party: str,
        clock: Clock,
        agreements: Agreements,
        casework: Casework,
        partner: PartnerLedger,
        ledger: Ledger,
    ) -> None:
        self.main = main
        self.flash = flash
        self.party = party
        self.clock = clock
        self.agreements = agreements
        self.casework = casework
        self.partner = partner
        self.ledger = ledger

    def list_items(self, subject: policy.Subject, after: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """A page of the items after ``after`` this subject may know of, and the next cursor.

        The cursor is the ``seq`` of the last item shown (``after`` itself when none is): it
        never lands on an item the subject may not know of, so a page that ends before ``limit``
        items ends the listing, and nothing counts the rows passed over (principle 5)."""
        inventory = policy.keeps_inventory(subject)
        out: list[dict[str, Any]] = []
        cursor = scanned = after
        now = self.clock.now()
        statuses: dict[str, lifecycle.Status] = {}
        while len(out) < limit:
            chunk = limit if inventory else max(limit, LIST_SCAN)
            rows, reclassified = self._page(scanned, chunk)
            for r in rows:
                if len(out) == limit:
                    break
                label = records.effective_label(
                    Label.from_bytes(r["label"].encode("utf-8")), reclassified.get(r["item_id"], [])
                )
                # Decided under the agreement the label copy names, as a read is; the sealed label
                # must say the same when the item is opened (``open_stored``).
                agreement = self.agreements.current().by_id.get(label.agreement)
                if agreement is None:  # nothing to decide under: shown to no one
                    continue
                if not inventory:
                    status = statuses.get(agreement.id)
                    if status is None:
                        status = statuses[agreement.id] = lifecycle.status(agreement, now)
                    if not policy.decide(agreement, subject, policy.Action.READ, label, status, (), now).permit:
                        continue
                cursor = r["seq"]
                out.append(
                    {
                        "seq": r["seq"],
                        "item_id": r["item_id"],
                        "direction": r["direction"],
                        "peer": r["peer"],
                        "agreement": agreement.id,
                        "route": r["route"],
                        "lane": r["lane"],
                        "originator": label.originator,
                        "marking": marking_for(label, agreement, self.party),
                        "display": display(label, agreement, self.party),
                        "created_at": label.created_at.isoformat(),
                    }
                )
            if len(rows) < chunk:
                break
            scanned = rows[-1]["seq"]
        return out, cursor

    def _page(self, after: int, chunk: int) -> tuple[list[Any], dict[str, list[records.Record]]]:
        """Up to ``chunk`` items after ``after``, and their reclassifications."""
        i = t.items.c
        with self.main.engine.connect() as conn:
            rows = (
                conn.execute(
                    select(i.seq, i.item_id, i.label, i.agreement, i.direction, i.peer, i.lane, i.route)
                    .where(i.seq > after)
                    .order_by(i.seq)
                    .limit(chunk)
                )
                .mappings()
                .all()
            )
            return list(rows), self.casework.reclassifications(conn, [r["item_id"] for r in rows])

    def read_item(self, subject: policy.Subject, item_id: str, purpose: str | None = None) -> dict[str, Any]:
        """An item's content, if the access decision permits (R7); the decision goes on the ledger.

        A subject who may not know of the item (principle 5: not in the inventory, and no read
        without a purpose permitted) is answered exactly as for an id that does not exist."""
        unknown = NotFound(f"no item {item_id}")
        if not is_item_id(item_id):  # cannot name an item: nothing to look up, nothing learnt
            raise unknown
        row, history = self.stored_item(item_id)
        if row is None:
            # Entered like the refusal of an item the subject may not know of, so neither the
            # ledger's growth nor an auditor's listing tells a probe of one from the other.
            missing = policy.Decision(False, (policy.Reason("R7", "no item with this id on this node"),))
            self.ledger.audit_alone("read_denied", subject.id, item_id, missing.as_dict())
            raise unknown
        label = records.effective_label(Label.from_bytes(row["label"].encode("utf-8")), history)
        agreement = self.agreements.current().by_id.get(label.agreement)
        if agreement is None:
            raise unknown
        now = self.clock.now()
        status = lifecycle.status(agreement, now)
        decision = policy.decide(agreement, subject, policy.Action.READ, label, status, (), now, purpose=purpose)
        if not decision.permit and not policy.may_know(agreement, subject, label, status, now):
            self.ledger.audit_alone("read_denied", subject.id, item_id, decision.as_dict())
            raise unknown
        if records.register(history, self.party)["item_destroyed"]:
            raise NotFound(f"item {item_id} was destroyed (R9)")
        self.ledger.audit_alone("read" if decision.permit else "read_denied", subject.id, item_id, decision.as_dict())
        if not decision.permit:
            raise Refused(decision, f"reading {item_id}")
        opened, payload = self.open_stored(row)
        current = records.effective_label(opened, history)
        return {
            "item_id": item_id,
            "label": opened.as_dict(),
            "classification": current.classification,
            "marking": marking_for(current, agreement, self.party),
            "display": display(current, agreement, self.party),
            "payload_b64": base64.b64encode(payload).decode(),
            "decision": decision.shown().as_dict(),
        }

    def may_read(self, subject: policy.Subject, label: Label) -> bool:
        """Whether ``subject`` may read an item of this label now (R7): pure, no database."""
        agreement = self.agreements.by_id(label.agreement)
        now = self.clock.now()
        status = lifecycle.status(agreement, now)
        return policy.decide(agreement, subject, policy.Action.READ, label, status, (), now).permit

    def stored_item(self, item_id: str) -> tuple[Any, list[records.Record]]:
        """An item's row and its records, wherever it is: a flash report may not have moved yet.

        The main file is read again when the flash file lacks it too: the report may have moved
        between the two reads (it is copied to the main file before it leaves the flash file)."""
        stores = [self.main, self.flash, self.main] if self.flash.separate else [self.main]
        for store in stores:
            with store.engine.connect() as conn:
                row = conn.execute(select(store.items).where(store.items.c.item_id == item_id)).mappings().first()
                if row is not None:
                    return row, self.casework.records_of(conn, item_id) if store is self.main else []
        return None, []

    def open_stored(self, row: Any) -> tuple[Label, bytes]:
        """Open a stored envelope; its sealed label must be the stored copy the decision used.

        Decisions read the label copy in ``items.label`` (no decryption before a permit); a
        copy edited in the database to open more than it should is caught here."""
        opener = self.agreements.current().openers.get(row["agreement"])
        try:
            if opener is None:
                raise LabelInvalid(f"label: no agreement {row['agreement']!r} on this node")
            opened, payload = opener.open(row["envelope"])
        except (envelope.EnvelopeError, LabelInvalid) as exc:  # it opened when it was stored
            detail = f"item {row['item_id']}: the stored item no longer opens ({exc}; database edited)"
            self.partner.raise_alarm("tampered_item", self.party, detail)
            raise envelope.Tampered(detail) from None
        if opened.to_bytes().decode("utf-8") != row["label"]:
            detail = f"item {opened.item_id}: the stored label differs from the sealed label (database edited)"
            self.partner.raise_alarm("tampered_item", self.party, detail)
            raise envelope.Tampered(detail)
        return opened, payload
