"""Auditors' tools over a node's ledger: verify it whole, prove an item, check a proof.

A proof file is self-contained: the signed tree head, each entry's exact bytes and
its audit path. ``check_proof`` needs only the node's public key file, nothing of
the node itself (RFC 9162's promise: anyone can check, with public keys only).
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, insert, select

from gsomia import ledger, merkle
from gsomia.errors import GsomiaError
from gsomia.keyring import KeyHistory, KeyRotationInvalid, Rotation
from gsomia.keys import PrivateKeys, PublicKeys
from gsomia.store import flash, ledger_store
from gsomia.store import schema as t

PROOF_FORMAT = "gsomia-inclusion-proof/1"


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


def verify_node(engine: Engine, own: PublicKeys, peers: dict[str, PublicKeys]) -> dict[str, Any]:
    """Every entry, every stored node, every stored tree head; the first failure raises.

    ``own`` and ``peers`` are the keys trusted out of band (node.toml); each party's
    recorded rotations extend them to its whole key chain, and each head is checked
    with the key of its size (``KeyHistory.key_for_head``)."""
    from gsomia.node import keychain

    with engine.connect() as conn:
        try:
            chains = {own.party: keychain.own_history(conn, own.party, own)}
            if chains[own.party].current.kid != own.kid:
                raise AuditFailure(f"{own.party}'s key {own.kid} is not the current key of its recorded chain")
            for code, key in peers.items():
                chains[code] = keychain.history(conn, key)
        except KeyRotationInvalid as exc:
            raise AuditFailure(f"key chain: {exc}") from None
        try:
            result = ledger_store.verify_all(conn)
        except ledger_store.LedgerCorrupt as exc:
            raise AuditFailure(f"ledger of {own.party}: {exc}") from None
        heads = conn.execute(select(t.tree_heads).order_by(t.tree_heads.c.seq)).mappings().all()
        checked = 0
        for row in heads:
            head = ledger.TreeHead(
                row["party"], int(row["size"]), bytes(row["root"]), row["at"], bytes(row["signature"])
            )
            chain = chains.get(head.party)
            if chain is None:
                continue
            if not ledger.verify_head(chain.key_for_head(head.size), head):
                raise AuditFailure(
                    f"stored tree head #{row['seq']} of {head.party} (size {head.size}) has a bad signature"
                )
            if head.party == own.party:
                if head.size > result.size:
                    raise AuditFailure(
                        f"own tree head #{row['seq']} claims {head.size} entries; the log holds {result.size}"
                    )
                if ledger_store.root(conn, head.size) != head.root:
                    raise AuditFailure(
                        f"own tree head #{row['seq']} (size {head.size}) does not match the log: an entry before {head.size} was rewritten"
                    )
            checked += 1
        queued = ledger_store.queued(conn)
    store = flash.existing(engine)
    queued += flash.queued(engine, store) if store else 0
    return {
        "party": own.party,
        "size": result.size,
        "root": result.root.hex(),
        "tree_heads_checked": checked,
        "queued": queued,  # committed with flash reports, not yet in the log (the node's sequencer moves them)
    }


def prove(engine: Engine, key: PrivateKeys, item_id: str) -> dict[str, Any]:
    store = flash.existing(engine)
    if store is not None:  # a flash report's entries may wait in its own file
        flash.move(engine, store)
    with engine.begin() as conn:
        while ledger_store.sequence_queued(conn):  # entries of flash reports still queued: give them their place
            pass
        rows = conn.execute(
            select(t.ledger_entries.c.idx, t.ledger_entries.c.body)
            .where(t.ledger_entries.c.item_id == item_id)
            .order_by(t.ledger_entries.c.idx)
        ).all()
        if not rows:
            raise AuditFailure(f"no ledger entry mentions item {item_id}")
        head = current_head(conn, key)
        entries = [
            {
                "index": int(idx),
                "entry": body,
                "proof": [p.hex() for p in ledger_store.inclusion(conn, int(idx), head.size)],
            }
            for idx, body in rows
        ]
        from gsomia.node import keychain

        chain = [r.as_dict() for r in keychain.rotations(conn, key.party)]
    # The key chain lets an auditor who trusts any of the party's keys, old or new, check the head.
    return {"format": PROOF_FORMAT, "item_id": item_id, "tree_head": head.as_dict(), "keys": chain, "entries": entries}


def check_proof(proof: Any, trusted: PublicKeys) -> dict[str, Any]:
    """Verify a proof file with the node's public key only."""
    if not isinstance(proof, dict) or proof.get("format") != PROOF_FORMAT:
        raise AuditFailure(f"not a {PROOF_FORMAT} file")
    try:
        head = ledger.TreeHead.from_dict(proof["tree_head"])
        entries = proof["entries"]
        if not isinstance(entries, list) or not entries:
            raise ValueError
    except (KeyError, ValueError, TypeError):
        raise AuditFailure("the proof's tree head or entries are malformed") from None
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
    kinds = []
    for n, e in enumerate(entries):
        try:
            index = int(e["index"])
            body = str(e["entry"]).encode("utf-8")
            path = [bytes.fromhex(p) for p in e["proof"]]
        except (KeyError, ValueError, TypeError):
            raise AuditFailure(f"entry {n} of the proof is malformed") from None
        if not ledger.verify_inclusion(merkle.leaf_hash(body), index, head.size, path, head.root):
            raise AuditFailure(
                f"entry {index} is not in {head.party}'s log of {head.size} entries signed at {head.at.isoformat()}"
            )
        data = json.loads(body)
        if data.get("index") != index or (proof.get("item_id") and data.get("item_id") != proof["item_id"]):
            raise AuditFailure(f"entry {index} does not say what the proof claims")
        kinds.append(f"{index}:{data.get('kind')}")
    return {
        "party": head.party,
        "size": head.size,
        "root": head.root.hex(),
        "signed_at": head.at.isoformat(),
        "entries": kinds,
        "signature": base64.b64encode(head.signature).decode()[:16] + "…",
    }
