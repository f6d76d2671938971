"""How each row kept beside the ledger is bound to the entry that recorded it.

Key rotations, alarms, records, diplomatic notes and users are each written in the same
transaction as a ledger entry, whose hashed bytes say what the row holds. The functions
here compare a stored row with what its entry says and name the first column that
differs (None: the row is what the entry says). The audit (``node.audit.verify_node``)
runs them over every row; the running node runs the note and user ones before it acts
on a row, so a row altered in the database is refused rather than obeyed.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from gsomia.core import records
from gsomia.core.keyring import KeyHistory, KeyRotationInvalid, Rotation
from gsomia.store import schema as t

# Rotations and alarms are entered with the row they write; so are records (R5, R6, R8, R9,
# R11), diplomatic notes (R13, R14) and users, which decide what a node lets anyone do
# (``records.make`` / ``_received``, ``diplomatic_note`` / ``_received``, ``user_added`` /
# ``user_revoked``).
ROTATION_KINDS = ("key_rotation", "key_rotation_received")
ALARM_KINDS = ("alarm", "alarm_received")
RECORD_KINDS = frozenset({*records.KINDS, *(f"{k}_received" for k in records.KINDS)})
NOTE_KINDS = ("diplomatic_note", "diplomatic_note_received")
USER_KINDS = ("user_added", "user_revoked")
# Every column of those tables is checked against the entry's hashed bytes, except these
# bookkeeping columns: nothing decides on them (``seq`` orders rows stored one after another,
# ``received_at`` of a tree head says when it arrived), and no entry could vouch for them.
UNBOUND = frozenset(
    {
        ("tree_heads", "seq"),
        ("tree_heads", "received_at"),
        ("key_rotations", "seq"),
        ("alarms", "seq"),
        ("records", "seq"),
        ("notes", "seq"),
        ("users", "seq"),
    }
)


def rotation_key(row: Any) -> tuple[str, int]:
    """What names a stored rotation, as its entry's detail names it."""
    return (row["party"], row["number"])


def rotation_differs(row: Any, index: int, data: dict[str, Any]) -> str | None:
    """A stored rotation against its entry: the columns, and the signed statement itself."""
    d = data["detail"]
    said = {
        "party": d["party"],
        "number": d["number"],
        "old_kid": d["old_kid"],
        "new_kid": d["new_kid"],
        "at": d["rotated_at"],
        "received_at": data["at"],
    }
    wrong = _differs(row, said)
    if wrong:
        return wrong
    try:
        rotation = Rotation.from_bytes(str(row["statement"]).encode("ascii"))
        rotation.verify()
    except (KeyRotationInvalid, UnicodeEncodeError):
        return "statement"
    if rotation.to_bytes().decode("ascii") != row["statement"]:  # the canonical bytes, as stored: nothing else
        return "statement"
    stated = (rotation.party, rotation.number, rotation.old.kid, rotation.new.kid, rotation.tree_size, rotation.at)
    if stated != (d["party"], d["number"], d["old_kid"], d["new_kid"], d["tree_size"], _instant(d["rotated_at"])):
        return "statement"
    return None


def alarm_differs(row: Any, index: int, data: dict[str, Any]) -> str | None:
    """A stored alarm against its entry: every column but the bookkeeping ones."""
    d = data["detail"]
    return _differs(row, {c.name: d.get(c.name) for c in t.alarms.c if ("alarms", c.name) not in UNBOUND})


def _origin(data: dict[str, Any], own: str) -> Any:
    """The node a row came from: this one for its own entry, the sender for a ``…_received`` one."""
    return data["actor"] if str(data["kind"]).endswith("_received") else own


def record_differs(row: Any, data: dict[str, Any], own: str, chains: dict[str, KeyHistory]) -> str | None:
    """A stored record against the entry that recorded it (its body is the record's body), and its
    signature against its author's key chain: the entry does not hold the signature."""
    d = data["detail"]
    if not isinstance(d, dict):
        return "detail"
    wrong = _differs(
        row,
        {
            "record_id": d["record_id"],
            "kind": d["kind"],
            "item_id": d["item_id"],
            "ref": d.get("request_id") or d.get("report_id"),
            "origin": _origin(data, own),
            "body": records.canonical(d).decode("utf-8"),
            "created_at": d["at"],
        },
    )
    if wrong:
        return wrong
    chain = chains.get(str(d.get("by")))
    if chain is None:
        return "signature"
    try:
        records.verify({"body": d, "signature": row["signature"]}, chain, str(d["by"]))
    except records.RecordInvalid:
        return "signature"
    return None


def note_differs(row: Any, data: dict[str, Any], own: str) -> str | None:
    """A stored diplomatic note against the entry that recorded it: every column."""
    d = data["detail"]
    if not isinstance(d, dict):
        return "detail"
    conditions = d.get("conditions") or []
    if not isinstance(conditions, list):
        return "conditions"
    return _differs(
        row,
        {
            "note_id": d["note_id"],
            "agreement": d["agreement"],
            "at": d["at"],
            "by": d["by"],
            "type": d["type"],
            "conditions": json.dumps(conditions, ensure_ascii=False),
            "ref": d.get("ref"),
            "recorded_by": str(d.get("recorded_by") or _origin(data, own)),
            "origin": _origin(data, own),
        },
    )


def latest_user(
    entries: dict[str, dict[str, tuple[int, dict[str, Any]]]], user: Any
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The detail of a user's ``user_added`` entry, and its ``user_revoked`` entry if one came after."""
    found = entries.get(str(user), {})
    added = found.get("user_added")
    if added is None:
        raise KeyError(user)
    revoked = found.get("user_revoked")
    return added[1]["detail"], revoked[1] if revoked is not None and revoked[0] > added[0] else None


def user_differs(row: Any, added: dict[str, Any], revoked: dict[str, Any] | None) -> str | None:
    """A user's row against its ``user_added`` entry's detail and the ``user_revoked`` entry after it.

    An entry written before need-to-know, party and the token's hash were recorded binds what it
    records: role and clearance (docs/ledger.md says how such a user is bound afresh)."""
    if not isinstance(added, dict):
        return "detail"
    said: dict[str, Any] = {"user_id": added["user"], "role": added["role"], "clearance": added.get("clearance")}
    for name in ("party", "token_hash", "created_at"):
        if name in added:
            said[name] = added[name]
    if "need_to_know" in added:
        said["need_to_know"] = json.dumps(sorted(added["need_to_know"]), ensure_ascii=False)
    wrong = _differs(row, said)
    if wrong:
        return wrong
    if revoked is None:
        return None if row["revoked_at"] is None else "revoked_at"
    if not isinstance(row["revoked_at"], datetime):
        return "revoked_at"
    detail = revoked["detail"]
    if isinstance(detail, dict) and "revoked_at" in detail and _instant(detail["revoked_at"]) != row["revoked_at"]:
        return "revoked_at"
    return None


def _instant(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text))
    except ValueError:
        return None


def _differs(row: Any, said: dict[str, Any]) -> str | None:
    """The first column of ``row`` that is not what the entry says."""
    for name, value in said.items():
        stored = row[name]
        if isinstance(stored, datetime):
            if _instant(value) != stored:
                return name
        elif type(stored) is not type(value) or stored != value:
            return name
    return None
