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

from sqlalchemy import Connection, Engine, LargeBinary, Table, cast, select

from gsomia.core import ledger, merkle
from gsomia.core.canonical import unb64
from gsomia.core.errors import GsomiaError
from gsomia.core.keyring import KeyHistory, KeyRotationInvalid, Rotation
from gsomia.core.keys import PrivateKeys, PublicKeys
from gsomia.node.runtime import keychain
from gsomia.store import bindings, flash, heads, ledger_store
from gsomia.store import schema as t

# The kinds of entry that record a row, and how a row is compared with its entry, live in
# ``store.bindings`` (the running node checks notes and users with them too); named here
# as well for the callers that have always read them from the audit.

PROOF_FORMAT = "gsomia-inclusion-proof/2"
# A proof's list of every entry naming its item, signed with the key of its head: the prefix
# keeps the statement apart from a tree head, which the same key signs in the same context.
_COVERS = b"gsomia/ledger/v1/item-entries\x00"
_CONTEXT = b"gsomia/ledger/v1"


class AuditFailure(GsomiaError):
    """The ledger, a tree head or a proof does not check out."""


def current_head(conn: Connection, key: PrivateKeys, at: datetime | None = None) -> ledger.TreeHead:
    """Sign the log's current head and keep it (``store.heads.sign_current``); without ``at``,
    as of now: an auditor's ``prove`` is a command run now, and has no other clock."""
    return heads.sign_current(conn, key, at or datetime.now(UTC))


def store_head(conn: Connection, head: ledger.TreeHead) -> None:
    """Keep ``head``, received now (``store.heads.store`` takes the instant from a caller's clock)."""
    heads.store(conn, head, datetime.now(UTC))


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


class _Recorded:
    """What the log's entries say of the rows beside it, gathered while ``verify_all`` reads them:
    per table, the entry (index and decoded body) that recorded each row, by the row's key."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[Any, tuple[int, dict[str, Any]]]] = {
            "key_rotations": {},
            "alarms": {},
            "records": {},
            "notes": {},
            "users": {},
        }
        # Per user, the latest entry of each kind: a row holds what the last of them says.
        self.user_entries: dict[str, dict[str, tuple[int, dict[str, Any]]]] = {}

    def watch(self) -> dict[str, ledger_store.Watch]:
        """``verify_all``'s watch: each kind of entry that records a row, to what keeps it."""
        watch = dict.fromkeys(bindings.ROTATION_KINDS, self._keep("key_rotations", lambda d: (d["party"], d["number"])))
        watch.update(dict.fromkeys(bindings.ALARM_KINDS, self._keep("alarms", lambda d: d["alarm_id"])))
        watch.update(dict.fromkeys(bindings.RECORD_KINDS, self._keep("records", lambda d: d["record_id"])))
        watch.update(dict.fromkeys(bindings.NOTE_KINDS, self._keep("notes", lambda d: d["note_id"])))
        watch.update(dict.fromkeys(bindings.USER_KINDS, self._user_seen))
        return watch

    def _keep(self, table: str, key: Callable[[dict[str, Any]], Any]) -> ledger_store.Watch:
        """Keep the first entry naming each row of ``table`` (by ``key`` of its detail)."""

        def seen(index: int, data: dict[str, Any]) -> None:
            try:
                found = key(data["detail"])
                if not isinstance(found, str | tuple):
                    raise TypeError
            except (KeyError, TypeError):
                raise AuditFailure(
                    f"entry {index} ({data['kind']}) does not say which row of {table} it records"
                ) from None
            self.rows[table].setdefault(found, (index, data))

        return seen

    def _user_seen(self, index: int, data: dict[str, Any]) -> None:
        detail = data.get("detail")
        user = detail.get("user") if isinstance(detail, dict) else None
        if not isinstance(user, str):
            raise AuditFailure(f"entry {index} ({data['kind']}) does not say which row of users it records")
        self.user_entries.setdefault(user, {})[str(data["kind"])] = (index, data)
        self.rows["users"][user] = self.user_entries[user].get("user_added", (index, data))


def verify_node(engine: Engine, own: PublicKeys, peers: dict[str, PublicKeys]) -> dict[str, Any]:
    """Every entry, every stored node, every row beside the log, every stored tree head; the first failure raises.

    ``own`` and ``peers`` are the keys trusted out of band (node.toml); each party's
    recorded rotations extend them to its whole key chain, and each head is checked
    with the key of its size (``KeyHistory.key_for_head``)."""
    recorded = _Recorded()
    with engine.connect() as conn:
        try:
            result = ledger_store.verify_all(conn, watch=recorded.watch())
        except ledger_store.LedgerCorrupt as exc:
            raise AuditFailure(f"ledger of {own.party}: {exc}") from None
        chains = _check_rows(conn, recorded, own, peers)
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


def _chains(conn: Connection, own: PublicKeys, peers: dict[str, PublicKeys]) -> dict[str, KeyHistory]:
    """Each party's recorded key chain, from the keys trusted out of band; ``own`` must be the current."""
    try:
        chains = {own.party: keychain.own_history(conn, own.party, own)}
        if chains[own.party].current.kid != own.kid:
            raise AuditFailure(f"{own.party}'s key {own.kid} is not the current key of its recorded chain")
        for code, key in peers.items():
            chains[code] = keychain.history(conn, key)
    except KeyRotationInvalid as exc:
        raise AuditFailure(f"key chain: {exc}") from None
    return chains


def _check_rows(
    conn: Connection, recorded: _Recorded, own: PublicKeys, peers: dict[str, PublicKeys]
) -> dict[str, KeyHistory]:
    """Every row beside the log against the entry that recorded it; returns the key chains
    (read from rotations just checked, so records are checked against a sound chain)."""
    rows, party = recorded.rows, own.party
    _check_beside(conn, t.key_rotations, rows["key_rotations"], bindings.rotation_key, bindings.rotation_differs)
    _check_beside(conn, t.alarms, rows["alarms"], lambda r: r["alarm_id"], bindings.alarm_differs)
    chains = _chains(conn, own, peers)
    _check_beside(
        conn,
        t.records,
        rows["records"],
        lambda r: r["record_id"],
        lambda row, _i, data: bindings.record_differs(row, data, party, chains),
    )
    _check_beside(
        conn,
        t.notes,
        rows["notes"],
        lambda r: r["note_id"],
        lambda row, _i, data: bindings.note_differs(row, data, party),
    )
    users = recorded.user_entries
    _check_beside(
        conn,
        t.users,
        rows["users"],
        lambda r: r["user_id"],
        lambda row, _i, _d: bindings.user_differs(row, *bindings.latest_user(users, row["user_id"])),
    )
    return chains


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
        covers_signature = unb64(str(proof["covers_signature"]))
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
