"""Signed records about items that both nodes keep: consent and release (R5), loss or
compromise and its investigation (R11).

A record is canonical JSON signed by the node of the party that made it, so it is
evidence on its own: the originator's consent decision *is* its prior written
approval, and a compromise report cannot be denied by the node that sent it. The
state of a case is derived from its records, never stored beside them.
Pure: keys and instants are parameters.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from gsomia.core import policy
from gsomia.core.agreement import lifecycle
from gsomia.core.agreement.schemes import spelling
from gsomia.core.agreement.terms import Agreement
from gsomia.core.canonical import b64, unb64
from gsomia.core.errors import GsomiaError, NotFound, Refused
from gsomia.core.keyring import KeyHistory
from gsomia.core.keys import PrivateKeys
from gsomia.core.label import Label
from gsomia.core.policy import Consent
from gsomia.core.trilateral import Approval

_SIGNED = b"gsomia/record/v1\x00"
_CONTEXT = b"gsomia/record/v1"

KINDS = (
    "consent_request",
    "consent_decision",
    "release",
    "compromise_report",
    "investigation",
    "reproduction",
    "translation",
    "destruction",
    "reclassification",
    "forward_approval",
)
#: Register records (R8, R9): where an item is, its copies, translations, destruction, marking.
REGISTER = ("reproduction", "translation", "destruction", "reclassification")
#: The records that must reach the partner at once (R11: "the provider is told at once").
FLASH = ("compromise_report", "investigation")


class RecordInvalid(GsomiaError):
    """A record that is malformed, unsigned, or signed by the wrong party."""


@dataclass(frozen=True, slots=True)
class Record:
    body: dict[str, Any]
    signature: str

    @property
    def id(self) -> str:
        return str(self.body["record_id"])

    @property
    def kind(self) -> str:
        return str(self.body["kind"])

    @property
    def by(self) -> str:
        return str(self.body["by"])

    def canonical(self) -> bytes:
        return canonical(self.body)

    def as_dict(self) -> dict[str, Any]:
        return {"body": self.body, "signature": self.signature}


def canonical(body: dict[str, Any]) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def make(key: PrivateKeys, kind: str, by: str, actor: str, item_id: str, at: datetime, **fields: Any) -> Record:
    if kind not in KINDS:
        raise RecordInvalid(f"unknown record kind {kind!r}")
    body = {
        "record_id": str(uuid.uuid4()),
        "kind": kind,
        "by": by,
        "actor": actor,
        "item_id": item_id,
        "at": at.isoformat(),
        **fields,
    }
    return Record(body, b64(key.sign(_SIGNED + canonical(body), _CONTEXT)))


def verify(data: Any, chain: KeyHistory, party: str) -> Record:
    """A record received from ``party``: well-formed and signed by a node key of its chain
    that was not yet retired at the record's instant."""
    if (
        not isinstance(data, dict)
        or not isinstance(data.get("body"), dict)
        or not isinstance(data.get("signature"), str)
    ):
        raise RecordInvalid("a record is {body, signature}")
    record = Record(data["body"], data["signature"])
    body = record.body
    for field in ("record_id", "kind", "by", "actor", "item_id", "at"):
        if not isinstance(body.get(field), str):
            raise RecordInvalid(f"record field {field} is missing")
    if record.kind not in KINDS:
        raise RecordInvalid(f"unknown record kind {record.kind!r}")
    if record.by != party:
        raise RecordInvalid(f"a record delivered by {party} must be {party}'s own, not {record.by}'s")
    try:
        at = datetime.fromisoformat(body["at"])
        signature = unb64(record.signature)
    except ValueError:
        raise RecordInvalid("the record's instant or signature is malformed") from None
    if at.tzinfo is None:
        raise RecordInvalid("the record's instant must carry a UTC offset")
    message = _SIGNED + record.canonical()
    for key in chain.trusted_for(at):
        if key.verify(signature, message, _CONTEXT):
            return record
    raise RecordInvalid(f"the record's signature does not verify with {party}'s node key of {at.isoformat()}")


def consents(records: Iterable[Record], originator: str) -> list[Consent]:
    """The originator's written approvals (R5), from its signed consent decisions."""
    requests = {r.id: r for r in records if r.kind == "consent_request"}
    found: list[Consent] = []
    for r in records:
        if r.kind != "consent_decision" or r.by != originator or r.body.get("grant") is not True:
            continue
        request = requests.get(str(r.body.get("request_id")))
        if request is None or request.body["item_id"] != r.body["item_id"]:
            continue
        found.append(
            Consent(
                item_id=r.body["item_id"],
                recipient=str(r.body.get("recipient")),
                purpose=str(r.body.get("purpose")),
                granted_by=r.by,
                granted_at=datetime.fromisoformat(r.body["at"]),
            )
        )
    return found


def verify_relayed(data: Any, chains: Mapping[str, KeyHistory], hub: str, me: str) -> Record:
    """An originator's approval that the hub ``hub`` passes on to ``me`` ahead of the item it
    approves (R18): signed by the originator's node, naming ``me`` and ``hub``. A hub relays
    nothing else: any other record comes from the party that made it."""
    body = data.get("body") if isinstance(data, dict) else None
    by = body.get("by") if isinstance(body, dict) else None
    if not isinstance(by, str) or by not in chains:
        raise RecordInvalid(f"{hub} relays only a record by a party this node knows")
    record = verify(data, chains[by], by)
    if record.kind != "forward_approval" or record.body.get("recipient") != me or record.body.get("hub") != hub:
        raise RecordInvalid(f"{hub} relays only an approval to pass an item on through it to {me}")
    return record


def approvals(records: Iterable[Record]) -> list[Approval]:
    """Approvals to pass items on through a hub (R18), as their makers signed them; whether
    each is the originator's, for this item and recipient, ``trilateral.forward`` judges."""
    return [
        Approval(
            item_id=str(r.body["item_id"]),
            recipient=str(r.body.get("recipient")),
            granted_by=r.by,
            granted_at=datetime.fromisoformat(r.body["at"]),
        )
        for r in records
        if r.kind == "forward_approval"
    ]


def case_state(records: Iterable[Record], case_id: str) -> str:
    """requested | granted | refused | released  or  open | closed."""
    related = [
        r
        for r in records
        if r.id == case_id or r.body.get("request_id") == case_id or r.body.get("report_id") == case_id
    ]
    kinds = {r.kind: r for r in related}
    if "compromise_report" in kinds:
        closed = any(r.kind == "investigation" and r.body.get("closed") is True for r in related)
        return "closed" if closed else "open"
    if "release" in kinds:
        return "released"
    decision = kinds.get("consent_decision")
    if decision is not None:
        return "granted" if decision.body.get("grant") is True else "refused"
    return "requested"


def current_classification(records: Iterable[Record], originator: str, sealed: str) -> str:
    """The originator's latest reclassification (R6), else the sealed label's marking."""
    current = sealed
    for r in records:
        if r.kind == "reclassification" and r.by == originator:
            current = str(r.body["classification"])
    return current


def register(records: Iterable[Record], holder: str) -> dict[str, Any]:
    """Copies and translations of an item, and what has been destroyed (R8, R9).

    Both nodes keep every record about an item, but each party destroys only what it
    holds: ``holder`` is the party whose holding this node keeps, so the partner's
    destruction of its own copy (recorded here too) leaves this one in place."""
    copies: dict[str, dict[str, Any]] = {}
    destroyed_by: set[str] = set()
    for r in records:
        if r.kind in ("reproduction", "translation"):
            copies[str(r.body["copy_id"])] = {
                "copy_id": r.body["copy_id"],
                "kind": r.kind,
                "holder": r.by,
                "location": r.body.get("location"),
                "language": r.body.get("language"),
                "made_at": r.body["at"],
                "destroyed_at": None,
            }
        elif r.kind == "destruction":
            target = r.body.get("copy_id")
            if target and target in copies and copies[str(target)]["holder"] == r.by:
                copies[str(target)]["destroyed_at"] = r.body["at"]
            elif not target:
                destroyed_by.add(r.by)
    return {
        "copies": list(copies.values()),
        "item_destroyed": holder in destroyed_by,
        "destroyed_by": sorted(destroyed_by),
    }


def effective_label(label: Label, history: Iterable[Record]) -> Label:
    """The sealed label with the originator's latest reclassification applied (R6)."""
    current = current_classification(history, label.originator, label.classification)
    if current == label.classification:
        return label
    return replace(label, classification=current)


def case_of(record: Record) -> str:
    """The case a record belongs to: the consent request or compromise report it answers, or its own."""
    return str(record.body.get("request_id") or record.body.get("report_id") or record.id)


# --- who makes which record, and what it must say (R5, R6, R9, R11) ------------------------

#: The rule under which a kind of record is made, for a refusal to cite.
_RULE = {"reclassification": "R6", "destruction": "R9", "forward_approval": "R18"}


def maker(subject: policy.Subject, kind: str) -> policy.Decision:
    """Whether ``subject``'s role makes records of ``kind``: copies and translations anyone
    cleared makes (decided per item by ``policy.decide``), every other record the security authority."""
    if subject.role is policy.Role.SECURITY_AUTHORITY or kind in ("reproduction", "translation"):
        return policy.Decision(True, (policy.Reason("R8", f"a {kind} is recorded"),))
    rule = _RULE.get(kind, "R5" if kind.startswith(("consent", "release")) else "R11")
    return policy.Decision(False, (policy.Reason(rule, "this record is made by the security authority"),))


@dataclass(frozen=True)
class Ask:
    """A record asked for: who asks, its kind and fields, about which item, under what, when."""

    subject: policy.Subject
    kind: str
    fields: dict[str, Any]
    label: Label  # the item's label as sealed
    agreement: Agreement
    history: list[Record]  # the item's records so far
    holder: str  # the party whose holding this node keeps
    now: datetime

    def refuse(self, rule: str, text: str) -> Refused:
        return Refused(policy.Decision(False, (policy.Reason(rule, text),)), f"making a {self.kind}")

    def text(self, name: str) -> str:
        value = self.fields.get(name)
        if not isinstance(value, str) or not value.strip():
            raise GsomiaError(f"{self.kind} needs {name}")
        return value

    def answered(self, field: str, kind: str, what: str) -> Record:
        """The record of ``kind`` this one answers, named by ``field``."""
        found = next((r for r in self.history if r.id == self.text(field)), None)
        if found is None or found.kind != kind:
            raise NotFound(f"no {what} {self.fields.get(field)} for item {self.label.item_id}")
        return found


def check(ask: Ask) -> dict[str, Any]:
    """The fields a record of ``ask.kind`` adds to what was asked, once every rule on it holds.

    Raises ``Refused`` citing the rule that does not, ``NotFound`` for a case that is not
    this item's, ``GsomiaError`` for a field missing. A release also passes the egress
    guard, which the shell asks (``node.egress.check_release``) with these fields."""
    if ask.kind == "consent_request":
        return _consent_request(ask)
    if ask.kind == "consent_decision":
        return _consent_decision(ask)
    if ask.kind == "release":
        return _release(ask)
    if ask.kind == "compromise_report":
        return {
            "nature": ask.text("nature"),
            "description": ask.text("description"),
            "originator": ask.label.originator,
        }
    if ask.kind == "investigation":
        return _investigation(ask)
    if ask.kind in REGISTER:
        return _register_record(ask)
    if ask.kind == "forward_approval":
        return _forward_approval(ask)
    raise GsomiaError(f"unknown record kind {ask.kind!r} (one of: {', '.join(KINDS)})")


def _forward_approval(ask: Ask) -> dict[str, Any]:
    """The originator's approval that the hub pass its item on to one party (R18)."""
    label, hub = ask.label, ask.agreement.hub
    if ask.subject.party != label.originator:
        raise ask.refuse("R18", f"only the originator {label.originator} approves passing its item on")
    if hub is None or label.route != "trilateral":
        raise ask.refuse("R18", f"{label.item_id} does not travel through a hub (route {label.route})")
    recipient = ask.text("recipient")
    if recipient in (hub, label.originator) or recipient not in label.releasable_to:
        raise ask.refuse("R18", f"{hub} passes {label.item_id} on only to a party it is releasable to, not {recipient}")
    return {"recipient": recipient, "hub": hub}


def _consent_request(ask: Ask) -> dict[str, Any]:
    label = ask.label
    if ask.subject.party == label.originator:
        raise ask.refuse("R5", "the originator needs no consent for its own information")
    recipient = ask.text("recipient")
    if recipient in ask.agreement.parties:
        raise ask.refuse("R5", f"{recipient} is a party to {ask.agreement.id}, not a third party")
    return {"recipient": recipient, "purpose": ask.text("purpose"), "originator": label.originator}


def _consent_decision(ask: Ask) -> dict[str, Any]:
    request = ask.answered("request_id", "consent_request", "consent request")
    if ask.subject.party != ask.label.originator:
        raise ask.refuse("R5", f"only the originator {ask.label.originator} approves a release of its information")
    if case_state(ask.history, request.id) != "requested":
        raise ask.refuse("R5", "this request has been decided already")
    if not isinstance(ask.fields.get("grant"), bool):
        raise GsomiaError("consent_decision needs grant: true or false")
    return {
        "recipient": request.body["recipient"],
        "purpose": request.body["purpose"],
        "reason": ask.fields.get("reason"),
    }


def _release(ask: Ask) -> dict[str, Any]:
    request = ask.answered("request_id", "consent_request", "consent request")
    recipient, purpose = request.body["recipient"], request.body["purpose"]
    decision = policy.decide(
        ask.agreement,
        ask.subject,
        policy.Action.RELEASE_TO_THIRD_PARTY,
        ask.label,
        lifecycle.status(ask.agreement, ask.now),
        consents(ask.history, ask.label.originator),
        ask.now,
        recipient=recipient,
        purpose=purpose,
    )
    if not decision.permit:
        raise Refused(decision, f"releasing {ask.label.item_id} to {recipient}")
    return {"recipient": recipient, "purpose": purpose}


def _investigation(ask: Ask) -> dict[str, Any]:
    report = ask.answered("report_id", "compromise_report", "compromise report")
    if ask.subject.party != report.by:
        raise ask.refuse("R11", f"the investigation is {report.by}'s, which reported the compromise")
    if case_state(ask.history, report.id) == "closed":
        raise ask.refuse("R11", "the investigation is closed")
    return {
        "results": ask.text("results"),
        "remedial_steps": ask.text("remedial_steps"),
        "closed": ask.fields.get("closed") is True,
    }


_REGISTER_ACTION = {
    "reproduction": policy.Action.REPRODUCE,
    "translation": policy.Action.TRANSLATE,
    "destruction": policy.Action.DESTROY,
    "reclassification": policy.Action.RECLASSIFY,
}


def _register_record(ask: Ask) -> dict[str, Any]:
    """Reproduction, translation, destruction (R9) and reclassification (R6), each decided by policy."""
    kind, label, agreement = ask.kind, ask.label, ask.agreement
    current = effective_label(label, ask.history)
    new_classification = ask.fields.get("classification") if kind == "reclassification" else None
    if kind == "reclassification" and not isinstance(new_classification, str):
        raise GsomiaError("reclassification needs classification (the originator's new marking)")
    if isinstance(new_classification, str):  # recorded as the agreement spells it: 군사Ⅱ급비밀 is 군사II급비밀
        new_classification = spelling(agreement, label.originator, new_classification) or new_classification
    decision = policy.decide(
        agreement,
        ask.subject,
        _REGISTER_ACTION[kind],
        current,
        lifecycle.status(agreement, ask.now),
        (),
        ask.now,
        new_classification=new_classification,
    )
    if not decision.permit:
        raise Refused(decision, f"{kind} of {label.item_id}")
    reg = register(ask.history, ask.holder)
    if reg["item_destroyed"]:
        raise Refused(policy.Decision(False, (policy.Reason("R9", "the item has been destroyed"),)), kind)
    if kind in ("reproduction", "translation"):
        extra: dict[str, Any] = {"copy_id": str(uuid.uuid4()), "location": ask.fields.get("location") or ask.holder}
        if kind == "translation":
            extra["language"] = ask.fields.get("language") or "und"
        return extra
    if kind == "destruction":
        target = ask.fields.get("copy_id")
        live = {c["copy_id"] for c in reg["copies"] if c["destroyed_at"] is None and c["holder"] == ask.holder}
        if target is not None and target not in live:
            raise NotFound(f"no live copy {target} of item {label.item_id} held by {ask.holder}")
        return {"copy_id": target}
    return {"classification": new_classification, "previous": current.classification}
