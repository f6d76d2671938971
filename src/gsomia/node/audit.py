"""Auditors' tools over a node's ledger: verify it whole, prove an item, check a proof.

A proof file is self-contained: the signed tree head, each entry's exact bytes and
its audit path. ``check_proof`` needs only the node's public key file, nothing of
the node itself (RFC 9162's promise: anyone can check, with public keys only).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, LargeBinary, Table, cast, insert, select

from gsomia.core import ledger, merkle, records
from gsomia.core.errors import GsomiaError
from gsomia.core.keyring import KeyHistory, KeyRotationInvalid, Rotation
from gsomia.core.keys import PrivateKeys, PublicKeys
from gsomia.store import flash, ledger_store
from gsomia.store import schema as t

PROOF_FORMAT = "gsomia-inclusion-proof/2"
# A proof's list of every entry naming its item, signed with the key of its head: the prefix
# keeps the statement apart from a tree head, which the same key signs in the same context.
_COVERS = b"gsomia/ledger/v1/item-entries\x00"
_CONTEXT = b"gsomia/ledger/v1"


class AuditFailure(GsomiaError):
    """The ledger, a tree head or a proof does not check out."""


def current_head(conn: Connection, key: PrivateKeys, at: datetime | None = None) -> ledger.TreeHead:
    """Sign the log's current head and keep it (a node's own heads are evidence too)."""
    size = ledger_store.size(conn)
    head = ledger.sign_head(key, key.party, size, ledger_store.root(conn, size), at or datetime.now(UTC))
    store_head(conn, head)
    return head


def store_head(conn: Connection, head: ledger.TreeHead) -> None:
    conn.execute(
        insert(t.tree_heads).values(
            party=head.party,
            size=head.size,
            root=head.root,
            at=head.at,
            signature=head.signature,
            received_at=datetime.now(UTC),
        )
    )


# The tables kept beside the log whose rows the node's listings and checks read. Each row is
# written in the same transaction as the ledger entry that records it, so every column is
# checked against that entry's hashed bytes, except the bookkeeping columns named in
# ``UNBOUND``: nothing decides on them (``seq`` orders rows stored one after another,
# ``received_at`` of a tree head says when it arrived), and no entry could vouch for them.
_ROTATION_KINDS = ("key_rotation", "key_rotation_received")
_ALARM_KINDS = ("alarm", "alarm_received")
UNBOUND = frozenset(
    {
        ("tree_heads", "seq"),
        ("tree_heads", "received_at"),
        ("key_rotations", "seq"),
        ("alarms", "seq"),
    }
)
# Records (R5, R6, R8, R9, R11), diplomatic notes (R13, R14) and users decide what a node lets
# anyone do: each is entered with the row it writes (``records.make`` / ``_received``,
# ``diplomatic_note`` / ``_received``, ``user_added`` / ``user_revoked``).
RECORD_KINDS = frozenset({*records.KINDS, *(f"{k}_received" for k in records.KINDS)})
NOTE_KINDS = ("diplomatic_note", "diplomatic_note_received")
USER_KINDS = ("user_added", "user_revoked")
UNBOUND = UNBOUND | {("records", "seq"), ("notes", "seq"), ("users", "seq")}
# Tables a row can go missing from unnoticed: each tree head is a signed statement on its own,
# which no entry records; losing one loses evidence the partner's witness holds as well.
UNCOUNTED = frozenset({"tree_heads"})
# Everything ``verify_node`` checks, by table: the test that tampers with each column of each
# of them reads this, and the schema, so a column added later is tampered with too.
CHECKED_TABLES = (
    "ledger_entries",
    "ledger_nodes",
    "ledger_state",
    "tree_heads",
    "key_rotations",
    "alarms",
    "records",
    "notes",
    "users",
)


def verify_node(engine: Engine, own: PublicKeys, peers: dict[str, PublicKeys]) -> dict[str, Any]:
    """Every entry, every stored node, every row beside the log, every stored tree head; the first failure raises.

    ``own`` and ``peers`` are the keys trusted out of band (node.toml); each party's
    recorded rotations extend them to its whole key chain, and each head is checked
    with the key of its size (``KeyHistory.key_for_head``)."""
    from gsomia.node import keychain

    recorded: dict[str, dict[Any, tuple[int, dict[str, Any]]]] = {
        "key_rotations": {},
        "alarms": {},
        "records": {},
        "notes": {},
        "users": {},
    }
    # Per user, the latest entry of each kind: a row holds what the last of them says.
    user_entries: dict[str, dict[str, tuple[int, dict[str, Any]]]] = {}

    def keep(table: str, key: Callable[[dict[str, Any]], Any], latest: bool = False) -> ledger_store.Watch:
        def seen(index: int, data: dict[str, Any]) -> None:
            try:
                found = key(data["detail"])
                if not isinstance(found, str | tuple):
                    raise TypeError
            except (KeyError, TypeError):
                raise AuditFailure(
                    f"entry {index} ({data['kind']}) does not say which row of {table} it records"
                ) from None
            if latest:
                recorded[table][found] = (index, data)
            else:
                recorded[table].setdefault(found, (index, data))

        return seen

    def user_seen(index: int, data: dict[str, Any]) -> None:
        detail = data.get("detail")
        user = detail.get("user") if isinstance(detail, dict) else None
        if not isinstance(user, str):
            raise AuditFailure(f"entry {index} ({data['kind']}) does not say which row of users it records")
        user_entries.setdefault(user, {})[str(data["kind"])] = (index, data)
        recorded["users"][user] = user_entries[user].get("user_added", (index, data))

    watch = dict.fromkeys(_ROTATION_KINDS, keep("key_rotations", lambda d: (d["party"], d["number"])))
    watch.update(dict.fromkeys(_ALARM_KINDS, keep("alarms", lambda d: d["alarm_id"])))
    watch.update(dict.fromkeys(RECORD_KINDS, keep("records", lambda d: d["record_id"])))
    watch.update(dict.fromkeys(NOTE_KINDS, keep("notes", lambda d: d["note_id"])))
    watch.update(dict.fromkeys(USER_KINDS, user_seen))
    with engine.connect() as conn:
        try:
            result = ledger_store.verify_all(conn, watch=watch)
        except ledger_store.LedgerCorrupt as exc:
            raise AuditFailure(f"ledger of {own.party}: {exc}") from None
        _check_beside(conn, t.key_rotations, recorded["key_rotations"], _rotation_row, _rotation_says)
        _check_beside(conn, t.alarms, recorded["alarms"], lambda r: r["alarm_id"], _alarm_says)
        try:
            chains = {own.party: keychain.own_history(conn, own.party, own)}
            if chains[own.party].current.kid != own.kid:
                raise AuditFailure(f"{own.party}'s key {own.kid} is not the current key of its recorded chain")
            for code, key in peers.items():
                chains[code] = keychain.history(conn, key)
        except KeyRotationInvalid as exc:
            raise AuditFailure(f"key chain: {exc}") from None
        _check_beside(
            conn,
            t.records,
            recorded["records"],
            lambda r: r["record_id"],
            lambda row, _i, data: record_differs(row, data, own.party, chains),
        )
        _check_beside(
            conn,
            t.notes,
            recorded["notes"],
            lambda r: r["note_id"],
            lambda row, _i, data: note_differs(row, data, own.party),
        )
        _check_beside(
            conn,
            t.users,
            recorded["users"],
            lambda r: r["user_id"],
            lambda row, _i, _d: user_differs(row, *_latest_user(user_entries, row["user_id"])),
        )
        checked = _check_heads(conn, own.party, chains, result.size)
        _check_queue(conn, t.ledger_queue, "")
        queued = ledger_store.queued(conn)
    store = flash.existing(engine)
    if store is not None and store.separate:
        with store.engine.connect() as fc:
            _check_queue(fc, store.queue, " in the flash file")
    queued += flash.queued(engine, store) if store else 0
    return {
        "party": own.party,
        "size": result.size,
        "root": result.root.hex(),
        "tree_heads_checked": checked,
        "queued": queued,  # committed with flash reports, not yet in the log (the node's sequencer moves them)
    }


def _span(size: int) -> str:
    return f"entries 0…{size - 1}" if size else "no entry"


def _check_heads(conn: Connection, party: str, chains: dict[str, KeyHistory], size: int) -> int:
    """Every stored head: signed by its party's key of its size; the node's own still the log's root."""
    checked = 0
    for row in _stored_rows(conn, t.tree_heads):
        signer, size_, root, at, signature = (row[k] for k in ("party", "size", "root", "at", "signature"))
        if not (
            isinstance(signer, str)
            and type(size_) is int
            and isinstance(root, bytes)
            and isinstance(at, datetime)
            and isinstance(signature, bytes)
        ):
            raise AuditFailure(f"stored tree head #{row['seq']} holds a value that is not of its column's type")
        head = ledger.TreeHead(signer, size_, root, at, signature)
        name = f"stored tree head #{row['seq']} of {head.party} (size {head.size}, {_span(head.size)})"
        chain = chains.get(head.party)
        if chain is None:
            raise AuditFailure(f"{name} names a party whose keys this node does not hold")
        if not ledger.verify_head(chain.key_for_head(head.size), head):
            raise AuditFailure(f"{name} has a bad signature")
        if head.party == party:
            if head.size > size:
                raise AuditFailure(f"{name} claims {head.size} entries; the log holds {size}")
            if ledger_store.root(conn, head.size) != head.root:
                raise AuditFailure(f"{name} does not match the log: an entry before {head.size} was rewritten")
        checked += 1
    return checked


def _rotation_row(row: Any) -> tuple[str, int]:
    return (row["party"], row["number"])


def _rotation_says(row: Any, index: int, data: dict[str, Any]) -> str | None:
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


def _alarm_says(row: Any, index: int, data: dict[str, Any]) -> str | None:
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


def _latest_user(
    entries: dict[str, dict[str, tuple[int, dict[str, Any]]]], user: Any
) -> tuple[dict[str, Any], dict[str, Any] | None]:
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


def _check_beside(
    conn: Connection,
    table: Table,
    recorded: dict[Any, tuple[int, dict[str, Any]]],
    key: Callable[[Any], Any],
    says: Callable[[Any, int, dict[str, Any]], str | None],
) -> None:
    """Each row of ``table`` against the entry that recorded it; every such entry has its row.

    Of several faults the one of the lowest entry index is named; a row no entry records
    (an inserted row, or one whose key was altered past every entry) comes last."""
    faults: list[tuple[int, str]] = []
    orphans: list[str] = []
    matched: set[Any] = set()
    for row in _stored_rows(conn, table):
        found = recorded.get(key(row))
        if found is None:
            orphans.append(f"row #{row['seq']} of {table.name} is recorded by no ledger entry")
            continue
        index, data = found
        matched.add(key(row))
        try:
            wrong = says(row, index, data)
        except (KeyError, TypeError):
            wrong = "detail"
        if wrong:
            faults.append((index, f"entry {index} ({data['kind']}): its row in {table.name} was altered ({wrong})"))
    for found_key, (index, data) in recorded.items():
        if found_key not in matched:
            faults.append((index, f"entry {index} ({data['kind']}): its row in {table.name} is missing or altered"))
    if faults:
        raise AuditFailure(min(faults)[1])
    if orphans:
        raise AuditFailure(orphans[0])


class _Unreadable:
    """A stored value that is not of its column's type (SQLite keeps any value in any column):
    equal to nothing, so whatever it should have been, it is reported as changed."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    def __repr__(self) -> str:
        return f"unreadable {self.raw!r}"


def _stored_rows(conn: Connection, table: Table) -> list[dict[str, Any]]:
    """Every row of ``table`` in ``seq`` order, each value read as its column's type reads it, or
    kept as ``_Unreadable`` where it is not one: the audit reads a tampered row without failing."""
    dialect = conn.dialect
    q = dialect.identifier_preparer.quote
    columns = list(table.c)
    processors = [c.type.dialect_impl(dialect).result_processor(dialect, None) for c in columns]
    sql = f"SELECT {', '.join(q(c.name) for c in columns)} FROM {q(table.name)} ORDER BY {q('seq')}"  # noqa: S608
    rows = []
    for raw in conn.exec_driver_sql(sql):
        row: dict[str, Any] = {}
        for column, process, value in zip(columns, processors, raw, strict=True):
            if process is not None and value is not None:
                try:
                    value = process(value)
                except (ValueError, TypeError):
                    value = _Unreadable(value)
            if isinstance(column.type, LargeBinary) and isinstance(value, memoryview | bytearray):
                value = bytes(value)
            row[column.name] = value
        rows.append(row)
    return rows


def _check_queue(conn: Connection, q: Table, where: str) -> None:
    """Entries of flash reports waiting for their index: each must be one the sequencer can enter."""
    detail = cast(q.c.detail, LargeBinary) if conn.dialect.name == "sqlite" else q.c.detail
    for seq, kind, raw in conn.execute(select(q.c.seq, q.c.kind, detail).order_by(q.c.seq)):
        try:
            json.loads(raw)
        except (ValueError, TypeError, RecursionError):
            raise AuditFailure(
                f"queued entry #{seq}{where} ({kind}): its detail is not JSON, so it cannot join the log"
            ) from None


def _entries_naming(conn: Connection, item_id: str) -> list[tuple[int, str]]:
    """Every entry whose hashed bytes name ``item_id``, each checked against its leaf hash.

    Found by what the bytes say, not by the ``item_id`` column (an index, which ``verify``
    checks): the body is searched for the field as the canonical encoding writes it, and
    each candidate decoded. The index is consulted too, and an entry it names whose bytes
    do not is a database altered, refused rather than left out."""
    c = t.ledger_entries.c
    needle = ledger.entry_bytes({"item_id": item_id}).decode("utf-8")[1:-1]  # "item_id":"…", as every body has it
    body = cast(c.body, LargeBinary) if conn.dialect.name == "sqlite" else c.body
    found: list[tuple[int, str]] = []
    for idx, raw, stored_leaf in conn.execute(
        select(c.idx, body, c.leaf_hash).where(c.body.contains(needle, autoescape=True)).order_by(c.idx)
    ):
        data = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)
        try:
            entry = json.loads(data)
        except (ValueError, RecursionError):
            raise AuditFailure(f"entry {idx} is not a ledger entry: run gsomia audit verify") from None
        if not isinstance(entry, dict) or entry.get("item_id") != item_id:
            continue  # the id is named deeper in the entry (a detail), not as what the entry is about
        if merkle.leaf_hash(data) != bytes(stored_leaf) or entry.get("index") != idx:
            raise AuditFailure(f"entry {idx} was altered: run gsomia audit verify")
        found.append((int(idx), data.decode("utf-8")))
    named = {idx for idx, _ in found}
    for (idx,) in conn.execute(select(c.idx).where(c.item_id == item_id).order_by(c.idx)):
        if int(idx) not in named:
            raise AuditFailure(
                f"entry {idx}: its item_id column names {item_id} but its hashed bytes do not: run gsomia audit verify"
            )
    return found


def _covers_message(item_id: str, size: int, indices: list[int]) -> bytes:
    return _COVERS + ledger.entry_bytes({"item_id": item_id, "size": size, "entries": indices})


def prove(engine: Engine, key: PrivateKeys, item_id: str) -> dict[str, Any]:
    """Every entry whose bytes name ``item_id``, with its audit path, under a freshly signed head,
    and the node's signed word that these are all of them up to that head's size."""
    store = flash.existing(engine)
    if store is not None:  # a flash report's entries may wait in its own file
        flash.move(engine, store)
    with engine.begin() as conn:
        while ledger_store.sequence_queued(conn):  # entries of flash reports still queued: give them their place
            pass
        rows = _entries_naming(conn, item_id)
        if not rows:
            raise AuditFailure(f"no ledger entry mentions item {item_id}")
        head = current_head(conn, key)
        try:
            entries = [
                {
                    "index": idx,
                    "entry": body,
                    "proof": [p.hex() for p in ledger_store.inclusion(conn, idx, head.size)],
                }
                for idx, body in rows
            ]
        except ledger_store.LedgerCorrupt as exc:
            raise AuditFailure(f"ledger of {key.party}: {exc}: run gsomia audit verify") from None
        from gsomia.node import keychain

        chain = [r.as_dict() for r in keychain.rotations(conn, key.party)]
    indices = [idx for idx, _ in rows]
    covers = {"size": head.size, "entries": indices}
    signature = key.sign(_covers_message(item_id, head.size, indices), _CONTEXT)
    # The key chain lets an auditor who trusts any of the party's keys, old or new, check the head.
    return {
        "format": PROOF_FORMAT,
        "item_id": item_id,
        "tree_head": head.as_dict(),
        "keys": chain,
        "covers": covers,
        "covers_signature": base64.b64encode(signature).decode(),
        "entries": entries,
    }


def check_proof(proof: Any, trusted: PublicKeys) -> dict[str, Any]:
    """Verify a proof file with the node's public key only.

    Each entry must be in the signed tree, name the item, and the entries must be exactly
    those the node signed as every entry naming the item up to the head's size: a proof
    with an entry left out is refused."""
    if not isinstance(proof, dict) or proof.get("format") != PROOF_FORMAT:
        raise AuditFailure(f"not a {PROOF_FORMAT} file")
    try:
        head = ledger.TreeHead.from_dict(proof["tree_head"])
        entries = proof["entries"]
        item_id = proof["item_id"]
        covers = proof["covers"]
        listed = covers["entries"]
        covers_signature = base64.b64decode(str(proof["covers_signature"]), validate=True)
        if (
            not isinstance(entries, list)
            or not entries
            or not isinstance(item_id, str)
            or not isinstance(listed, list)
            or not all(type(i) is int for i in listed)
            or listed != sorted(set(listed))
            or covers["size"] != head.size
        ):
            raise ValueError
    except (KeyError, ValueError, TypeError):
        raise AuditFailure("the proof's tree head, entries or covered list are malformed") from None
    if head.party != trusted.party:
        raise AuditFailure(f"the tree head is {head.party}'s but the trusted key is {trusted.party}'s")
    try:
        offered = proof.get("keys", [])
        if not isinstance(offered, list):
            raise KeyRotationInvalid("keys must be a list of rotation statements")
        chain = KeyHistory.build(trusted, [Rotation.from_dict(r) for r in offered])
    except KeyRotationInvalid as exc:
        raise AuditFailure(f"the proof's key chain: {exc}") from None
    signer = chain.key_for_head(head.size)
    if not ledger.verify_head(signer, head):
        raise AuditFailure(f"the tree head's signature does not verify with {trusted.party}'s key {signer.kid}")
    if not signer.verify(covers_signature, _covers_message(item_id, head.size, listed), _CONTEXT):
        raise AuditFailure(f"the list of entries naming {item_id} is not signed by {trusted.party}'s key {signer.kid}")
    kinds = []
    given: list[int] = []
    for n, e in enumerate(entries):
        try:
            index = int(e["index"])
            body = str(e["entry"]).encode("utf-8")
            path = [bytes.fromhex(p) for p in e["proof"]]
        except (KeyError, ValueError, TypeError):
            raise AuditFailure(f"entry {n} of the proof is malformed") from None
        if not merkle.verify_inclusion(merkle.leaf_hash(body), index, head.size, path, head.root):
            raise AuditFailure(
                f"entry {index} is not in {head.party}'s log of {head.size} entries signed at {head.at.isoformat()}"
            )
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if not isinstance(data, dict) or data.get("index") != index or data.get("item_id") != item_id:
            raise AuditFailure(f"entry {index} does not say what the proof claims")
        given.append(index)
        kinds.append(f"{index}:{data.get('kind')}")
    if given != listed:
        left_out = sorted(set(listed) - set(given))
        if left_out:
            raise AuditFailure(
                f"the proof leaves out entry {left_out[0]}, which {head.party} signed as naming {item_id}"
            )
        raise AuditFailure(f"the proof's entries are not the {len(listed)} {head.party} signed as naming {item_id}")
    return {
        "party": head.party,
        "size": head.size,
        "root": head.root.hex(),
        "signed_at": head.at.isoformat(),
        "entries": kinds,
        "signature": base64.b64encode(head.signature).decode()[:16] + "…",
    }
