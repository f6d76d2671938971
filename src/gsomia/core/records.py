"""Signed records about items that both nodes keep: consent and release (R5), loss or
compromise and its investigation (R11).

A record is canonical JSON signed by the node of the party that made it, so it is
evidence on its own: the originator's consent decision *is* its prior written
approval, and a compromise report cannot be denied by the node that sent it. The
state of a case is derived from its records, never stored beside them.
Pure: keys and instants are parameters.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gsomia.core.errors import GsomiaError
from gsomia.core.keyring import KeyHistory
from gsomia.core.keys import PrivateKeys
from gsomia.core.policy import Consent

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
    return Record(body, base64.b64encode(key.sign(_SIGNED + canonical(body), _CONTEXT)).decode())


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
        signature = base64.b64decode(record.signature, validate=True)
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
