"""Signed tree heads kept in the node's database: its own, and those its partners send.

A node's own heads are evidence as much as its partners' are: each is kept, and the
audit checks every stored head against its signer's key chain and, for the node's own,
against the log.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, insert

from gsomia.core import ledger
from gsomia.core.keys import PrivateKeys
from gsomia.store import ledger_store
from gsomia.store import schema as t


def sign_current(conn: Connection, key: PrivateKeys, at: datetime) -> ledger.TreeHead:
    """Sign the log's current head as of ``at`` and keep it."""
    size = ledger_store.size(conn)
    head = ledger.sign_head(key, key.party, size, ledger_store.root(conn, size), at)
    store(conn, head, at)
    return head


def store(conn: Connection, head: ledger.TreeHead, received_at: datetime) -> None:
    """Keep ``head``, received (or made) at ``received_at``."""
    conn.execute(
        insert(t.tree_heads).values(
            party=head.party,
            size=head.size,
            root=head.root,
            at=head.at,
            signature=head.signature,
            received_at=received_at,
        )
    )
