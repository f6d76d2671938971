"""Rows that decide (users, notes, records) are used only as their ledger entry, or their
author's signature, vouches for them (principle 6). What was checked is remembered, so a
check costs a dict lookup after the first time."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from gsomia.core import merkle, records
from gsomia.core.keyring import KeyHistory, KeyRotationInvalid
from gsomia.core.keys import PrivateKeys, PublicKeys
from gsomia.node.runtime import keychain
from gsomia.node.runtime.config import NodeConfig
from gsomia.node.service.partner import PartnerLedger
from gsomia.store import bindings, entries
from gsomia.store import schema as t
from gsomia.store.db import reading

BOUND_KEPT = 100_000  # records and user rows remembered as checked, past which they are checked again
# Seconds a user row checked against the ledger is taken as checked without a look for newer user
# entries (one indexed query for the entries since): how long a revocation another process enters
# could be undone by an insider setting ``revoked_at`` back to null. This process's own revocations
# count at once.
BOUND_RESCAN = 1.0
_USER_COLUMNS = tuple(c.name for c in t.users.c if c.name != "seq")


@dataclass
class Keys:
    """This node's keys and key chain, and each partner's chain, as this process knows them."""

    own: list[PrivateKeys]  # the current private keys and the retired ones (``keychain.resolve``)
    own_chain: KeyHistory
    public: PublicKeys
    peer_chains: dict[str, KeyHistory]


@dataclass
class _Bound:
    """What this process has checked against the ledger or a signature."""

    scanned: int = -1  # the highest ledger index read for user and note entries
    scanned_at: float = float("-inf")  # when (monotonic) the ledger was last read for them
    users: dict[str, dict[str, tuple[int, dict[str, Any]]]] = field(default_factory=dict)
    notes: dict[str, dict[str, Any]] = field(default_factory=dict)
    user_rows: dict[tuple[Any, ...], bool] = field(default_factory=dict)
    signed: dict[tuple[str, str], records.Record | None] = field(default_factory=dict)
    alarmed: set[tuple[str, str]] = field(default_factory=set)


class Integrity:
    """Checks stored users, notes and records against the ledger or their signature; an alarm for any other."""

    def __init__(self, engine: Engine, config: NodeConfig, keys: Keys, partner: PartnerLedger) -> None:
        self.engine = engine
        self.config = config
        self.party = config.party
        self.keys = keys
        self.partner = partner
        self._bound = _Bound()

    def forget_users(self) -> None:
        """The next authentication reads the user entries afresh (this process revoked one)."""
        self._bound.scanned_at = float("-inf")

    def signed_record(self, body: str, signature: str) -> records.Record | None:
        """A stored record, if its author's node key signed it (``records.verify``); else None,
        and an alarm: a row written behind the node's back never decides anything.

        Records are few per item; each one verified is remembered by its exact bytes."""
        bound = self._bound
        key = (body, signature)
        if key in bound.signed:
            return bound.signed[key]
        record: records.Record | None = None
        data: Any = None
        try:
            data = json.loads(body)
        except (ValueError, RecursionError):
            data = None
        by = str(data.get("by")) if isinstance(data, dict) else ""
        if by == self.party or by in self.keys.peer_chains:
            record = self._verified(data, signature, by, fresh=False) or self._verified(data, signature, by, fresh=True)
        if record is None:
            what = data.get("record_id") if isinstance(data, dict) else None
            self.alarm_once("tampered_record", f"record {what!r}: its signature does not verify (database edited)")
        if len(bound.signed) >= BOUND_KEPT:
            bound.signed.clear()
        bound.signed[key] = record
        return record

    def _verified(self, data: dict[str, Any], signature: str, by: str, fresh: bool) -> records.Record | None:
        """``records.verify`` with ``by``'s key chain as this process knows it, or (``fresh``) as
        the database records it now: another process of the node may have learnt a rotation."""
        chain = self.keys.own_chain if by == self.party else self.keys.peer_chains[by]
        if fresh:
            with reading(self.engine) as conn:
                if by == self.party:
                    chain = keychain.own_history(conn, by, self.keys.public)
                else:
                    chain = keychain.history(conn, self.config.peers[by].public_key)
        try:
            return records.verify({"body": data, "signature": signature}, chain, by)
        except (records.RecordInvalid, KeyRotationInvalid):
            return None

    def _scan_entries(self) -> None:
        """The ledger's user and note entries since the last look, each checked against its leaf hash."""
        bound = self._bound
        bound.scanned_at = time.monotonic()
        with reading(self.engine) as conn:
            # Up to the last entry stored, which the next look starts after: every entry below it
            # is committed (appenders take indexes in turn under the log's counter), so nothing
            # is passed over, and a look reads only what was appended since (a range of the key).
            last = entries.last_index(conn)
            if last is None or last <= bound.scanned:
                return
            found = entries.of_kinds(conn, bound.scanned, last, [*bindings.USER_KINDS, *bindings.NOTE_KINDS])
        bound.scanned = last
        for idx, data, leaf in found:
            self._take_entry(idx, data, leaf)

    def _take_entry(self, idx: int, data: bytes, leaf: bytes) -> None:
        """Remember a user or note entry whose bytes are its leaf's."""
        if merkle.leaf_hash(data) != leaf:
            return  # an altered entry vouches for nothing (``audit verify`` names it)
        try:
            entry = json.loads(data)
            detail = entry["detail"]
            kind = entry["kind"]
            name = detail["note_id"] if kind in bindings.NOTE_KINDS else detail["user"]
        except (ValueError, KeyError, TypeError):
            return
        if entry.get("index") != idx or kind not in (*bindings.USER_KINDS, *bindings.NOTE_KINDS):
            return
        if not isinstance(name, str):
            return
        if kind in bindings.NOTE_KINDS:
            self._bound.notes.setdefault(name, entry)
        else:
            self._bound.users.setdefault(name, {})[kind] = (idx, entry)
            self._bound.user_rows.clear()  # a user added or revoked: every row is checked afresh

    def entered_notes(self, rows: Sequence[Any]) -> list[Any]:
        """The notes whose ledger entry says what their row says; an alarm for any other."""
        self._scan_entries()
        kept = []
        for row in rows:
            entry = self._bound.notes.get(row["note_id"])
            try:
                wrong = "no ledger entry" if entry is None else bindings.note_differs(row, entry, self.party)
            except (KeyError, TypeError):
                wrong = "detail"
            if wrong is None:
                kept.append(row)
            else:
                detail = f"note {row['note_id']}: its row is not what its ledger entry says ({wrong}; database edited)"
                self.alarm_once("tampered_note", detail)
        return kept

    def user_bound(self, row: Any) -> bool:
        """Whether a user's row is what its ledger entries say; checked once per process per row."""
        bound = self._bound
        key = tuple(row[c] for c in _USER_COLUMNS)
        known = bound.user_rows.get(key)
        # A row as it was before a revocation (revoked_at set back to null) is the same key: a
        # revocation entered since the last look forgets what was remembered (``_scan_entries``).
        if known is not None and time.monotonic() - bound.scanned_at < BOUND_RESCAN:
            return known
        self._scan_entries()
        known = bound.user_rows.get(key)
        if known is not None:
            return known
        found = bound.users.get(row["user_id"], {})
        added, revoked = found.get("user_added"), found.get("user_revoked")
        try:
            if added is None:
                wrong: str | None = "no ledger entry"
            else:
                later = revoked[1] if revoked is not None and revoked[0] > added[0] else None
                wrong = bindings.user_differs(row, added[1]["detail"], later)
        except (KeyError, TypeError):
            wrong = "detail"
        if wrong is not None:
            detail = f"user {row['user_id']}: its row is not what its ledger entry says ({wrong}; database edited)"
            self.alarm_once("tampered_user", detail)
        if len(bound.user_rows) >= BOUND_KEPT:
            bound.user_rows.clear()
        bound.user_rows[key] = wrong is None
        return wrong is None

    def alarm_once(self, kind: str, detail: str) -> None:
        """Tell the security authorities (``raise_alarm``), once per process for the same finding."""
        if (kind, detail) in self._bound.alarmed:
            return
        self._bound.alarmed.add((kind, detail))
        self.partner.raise_alarm(kind, self.party, detail)
