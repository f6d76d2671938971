"""The agreements this node is party to, as its notes make them, and the keys that seal under them.

A node may be party to several agreements, and share with one partner under more than one
(a bilateral agreement, and a trilateral arrangement routed through a third party): every
agreement is known by its id, and an item names the one it travels under (``Label.agreement``).
Each agreement's status comes from its own notes only.

A diplomatic note recorded here, or received from a partner, ends, suspends or revives an
agreement for every process of the node: each applies the notes whose ledger entry vouches
for them (``Integrity.entered_notes``) to the agreement file's own history.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from io import BytesIO
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select
from sqlalchemy.exc import IntegrityError

from gsomia.core import envelope, policy
from gsomia.core.agreement import lifecycle
from gsomia.core.agreement.terms import Agreement, Note, NoteType
from gsomia.core.errors import InvalidHistory, NoteInvalid, NotFound, Refused
from gsomia.core.keyring import KeyRotationInvalid
from gsomia.core.label import LabelInvalid
from gsomia.node.runtime import keychain
from gsomia.node.runtime.clock import Clock
from gsomia.node.runtime.config import NodeConfig
from gsomia.node.service.integrity import Integrity, Keys
from gsomia.node.service.ledger import Ledger
from gsomia.node.service.outbox import Outbox
from gsomia.node.service.partner import PartnerLedger
from gsomia.store import gate
from gsomia.store import schema as t
from gsomia.store.db import reading

# Seconds within which a note recorded by another process of this node is enforced here too
# (the process that records or receives a note applies it at once).
NOTES_REFRESH = 0.25


@dataclass(frozen=True)
class Applied:
    """Every agreement of the node with the notes applied at one instant, and what seals and
    opens under each: replaced whole when a note is applied, so a holder of one (a batch
    guarded ahead of delivery) can tell by identity whether it is still current."""

    by_id: Mapping[str, Agreement]
    direct: Mapping[str, str]  # partner -> the bilateral agreement it shares under by default
    shared: Mapping[str, tuple[str, ...]]  # partner -> every agreement both are party to
    sealers: Mapping[str, envelope.Sealer]
    openers: Mapping[str, envelope.Opener]
    # Parties an arrangement through a hub joins this node with: only for them is a route chosen.
    via_hub: frozenset[str] = frozenset()

    def get(self, agreement_id: str) -> Agreement:
        try:
            return self.by_id[agreement_id]
        except KeyError:
            raise NotFound(f"no agreement {agreement_id!r} on this node") from None

    def with_peer(self, peer: str) -> Agreement:
        """The bilateral agreement this node shares under with ``peer`` unless an item names another."""
        try:
            return self.by_id[self.direct[peer]]
        except KeyError:
            raise NotFound(f"no agreement with {peer!r} on this node") from None

    def opener_for(self, peer: str, data: bytes) -> envelope.Opener:
        """The opener of the agreement an envelope from ``peer`` names (its label, unverified:
        the opener then checks the label against that agreement). With one agreement shared
        with ``peer``, no look inside is needed."""
        shared = self.shared.get(peer, ())
        if len(shared) == 1:
            return self.openers[shared[0]]
        named = envelope.peek_label(BytesIO(data)).agreement
        if named not in shared:
            raise LabelInvalid(f"label: {peer} and this node share no agreement {named!r}")
        return self.openers[named]


class Agreements:
    """The node's agreements with their notes applied (``Applied``); notes and key chains."""

    def __init__(
        self,
        engine: Engine,
        config: NodeConfig,
        clock: Clock,
        keys: Keys,
        integrity: Integrity,
        partner: PartnerLedger,
        outbox: Outbox,
        ledger: Ledger,
    ) -> None:
        self.engine = engine
        self.config = config
        self.party = config.party
        self.clock = clock
        self.keys = keys
        self.integrity = integrity
        self.partner = partner
        self.outbox = outbox
        self.ledger = ledger
        self.applied = Applied({}, {}, {}, {}, {})
        self._notes_mark = (0, 0)  # (count, last seq) of the notes applied
        self._notes_checked = 0.0

    def reload_notes(self) -> None:
        """Apply the notes recorded on this node to each agreement file's own history.

        Only a note whose ledger entry says the same is applied: a row written behind the
        node's back neither ends nor revives the agreement, and raises an alarm instead."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.notes).order_by(t.notes.c.seq)).mappings().all()
        self._notes_mark = (len(rows), max((r["seq"] for r in rows), default=0))
        rows = self.integrity.entered_notes(rows)
        self._notes_checked = time.monotonic()
        own = self.keys.own_chain
        by_id: dict[str, Agreement] = {}
        sealers: dict[str, envelope.Sealer] = {}
        openers: dict[str, envelope.Opener] = {}
        shared: dict[str, list[str]] = {}
        for base in self.config.agreements:
            if self.party not in base.parties:
                continue
            extra = [r for r in rows if r["agreement"] == base.id]
            agreement = base.with_notes(base.notes + tuple(_note(r, len(base.notes) + i) for i, r in enumerate(extra)))
            lifecycle.compile_history(agreement)  # refuse an impossible history now, not later
            by_id[agreement.id] = agreement
            # Under an arrangement through a hub, items go to and from the hub only (R18): two
            # other parties never share directly under it.
            hub = agreement.hub
            partners = [
                p for p in agreement.parties if p in self.keys.peer_chains and (hub is None or hub in (self.party, p))
            ]
            if not partners:
                continue
            for p in partners:
                shared.setdefault(p, []).append(agreement.id)
            # Yet an item the hub passes on is signed by its originator: under an arrangement the
            # opener trusts every party's keys known here, and the policy judges who delivered it.
            known = [p for p in agreement.parties if p in self.keys.peer_chains] if hub else partners
            chains = [self.keys.peer_chains[p] for p in known]
            sealers[agreement.id] = envelope.Sealer(self.config.key, agreement)
            retired = {k: w for chain in (*chains, own) for k, w in chain.windows().items()}
            trusted = [key for chain in (*chains, own) for key in chain.keys]
            openers[agreement.id] = envelope.Opener(self.keys.own, trusted, agreement, retired=retired)
        direct = {code: self.config.agreement_with(code).id for code in self.config.peers}
        via_hub = frozenset(p for a in by_id.values() if a.hub is not None for p in a.parties if p != self.party)
        self.applied = Applied(by_id, direct, {p: tuple(ids) for p, ids in shared.items()}, sealers, openers, via_hub)

    def refresh_notes(self, older_than: float = 0.0) -> None:
        """Apply notes another process of this node recorded (or received) since the last look,
        if that look is older than ``older_than`` seconds (``node.notewatch``)."""
        if time.monotonic() - self._notes_checked < older_than:
            return
        self._notes_checked = time.monotonic()
        with reading(self.engine) as conn:
            count, last = conn.execute(select(func.count(), func.coalesce(func.max(t.notes.c.seq), 0))).one()
        if (int(count), int(last)) != self._notes_mark:
            self.reload_notes()

    def current(self) -> Applied:
        """The agreements as they stand: notes another process recorded are looked for first
        when the last look is older than ``NOTES_REFRESH``."""
        if time.monotonic() - self._notes_checked > NOTES_REFRESH:
            self.refresh_notes()
        return self.applied

    def if_fresh(self) -> Applied | None:
        """What ``current`` would return, where that needs no look for new notes (no I/O); else None."""
        if time.monotonic() - self._notes_checked > NOTES_REFRESH:
            return None
        return self.applied

    def agreement(self, peer: str) -> Agreement:
        """The bilateral agreement with ``peer``, as it stands."""
        return self.current().with_peer(peer)

    def by_id(self, agreement_id: str) -> Agreement:
        """The agreement ``agreement_id`` (an item's, a note's), as it stands."""
        return self.current().get(agreement_id)

    def status(self, peer: str, at: datetime | None = None) -> lifecycle.Status:
        return lifecycle.status(self.agreement(peer), at or self.clock.now())

    # --- key chains ---------------------------------------------------------------------

    def learn_keys(self, peer: str, offered: Sequence[Any]) -> bool:
        """Extend ``peer``'s key chain with the rotations it offers (verified, stored, on the ledger)."""
        known = self.keys.peer_chains[peer]
        try:
            chain = keychain.learn(self.engine, known, list(offered), peer, at=self.clock.now())
        except KeyRotationInvalid as exc:
            self.partner.raise_alarm("bad_key_chain", peer, str(exc))
            raise
        if len(chain.rotations) == len(known.rotations):
            return False
        self.keys.peer_chains[peer] = chain
        self.reload_notes()  # openers trust the new key, sealers wrap for it
        return True

    def key_chains(self) -> list[dict[str, Any]]:
        """Every key of this node and of its partners, as known here."""
        return keychain.summary([self.keys.own_chain, *self.keys.peer_chains.values()])

    def key_chain(self) -> dict[str, Any]:
        """This node's rotations, for its partners (public keys and signatures only)."""
        with self.engine.connect() as conn:
            found = keychain.rotations(conn, self.party)
        return {"party": self.party, "current": self.keys.public.kid, "rotations": [r.as_dict() for r in found]}

    # --- diplomatic notes ---------------------------------------------------------------

    def record_note(
        self,
        subject: policy.Subject,
        peer: str,
        note_type: str,
        at: datetime | None,
        conditions: Sequence[str],
        ref: str | None,
    ) -> dict[str, Any]:
        """A security authority records a diplomatic note by its own party; it goes to the peer at once."""
        decision = policy.record_note(subject)
        if not decision.permit:
            raise Refused(decision, "recording a note")
        note_id = str(uuid.uuid4())
        agreement = self.agreement(peer)
        body: dict[str, Any] = {
            "note_id": note_id,
            "agreement": agreement.id,
            "at": (at or self.clock.now()).astimezone(UTC).isoformat(),
            "by": self.party,
            "type": note_type,
            "conditions": list(conditions),
            "ref": ref,
            "recorded_by": subject.id,
        }
        # Every partner party to the agreement is told (one, for a bilateral agreement).
        partners = [p for p in agreement.parties if p != self.party and p in self.config.peers]
        with gate.begin(self.engine) as conn:
            self._store_note(conn, body, origin=self.party)
            for p in partners:
                self.outbox.enqueue(conn, p, "flash", "note", note_id, json.dumps(body).encode())
            self.ledger.audit(conn, "diplomatic_note", subject.id, None, body)
        for p in partners:
            self.outbox.queued_flash(p)
        self.reload_notes()
        return body

    def receive_note(self, peer: str, body: dict[str, Any]) -> bool:
        """A note delivered by the peer node; idempotent. Returns False for a repeat."""
        if body.get("by") != peer:
            raise NoteInvalid(f"a note delivered by {peer} must be {peer}'s own note")
        if not isinstance(body.get("agreement"), str) or body["agreement"] not in self.current().shared.get(peer, ()):
            raise NoteInvalid(f"a note delivered by {peer} must be on an agreement {peer} is party to with this node")
        try:
            with gate.begin(self.engine) as conn:
                self._store_note(conn, body, origin=peer)
                self.ledger.audit(conn, "diplomatic_note_received", peer, None, body)
        except IntegrityError:
            return False
        self.reload_notes()
        return True

    def _store_note(self, conn: Connection, body: dict[str, Any], origin: str) -> None:
        try:
            note_type = NoteType(body["type"])
            at = datetime.fromisoformat(body["at"])
        except (KeyError, ValueError, TypeError):
            raise InvalidHistory("note", "type", "not a valid diplomatic note") from None
        if at.tzinfo is None:
            raise InvalidHistory("note", "at", "must carry a UTC offset")
        if not 1900 <= at.year <= 9000:  # past the last datetime once moved to another zone
            raise InvalidHistory("note", "at", "must lie between the years 1900 and 9000")
        current = self.by_id(body["agreement"])
        conditions = tuple(body.get("conditions") or ())
        note = Note(at.astimezone(UTC), body["by"], note_type, len(current.notes), conditions, body.get("ref"))
        lifecycle.compile_history(current.with_notes((*current.notes, note)))  # InvalidHistory names the note
        conn.execute(
            insert(t.notes).values(
                note_id=body["note_id"],
                agreement=body["agreement"],
                at=at,
                by=body["by"],
                type=note_type.value,
                conditions=json.dumps(list(conditions), ensure_ascii=False),
                ref=body.get("ref"),
                recorded_by=str(body.get("recorded_by") or origin),
                origin=origin,
            )
        )


def _note(row: Any, index: int) -> Note:
    return Note(
        at=row["at"],
        by=row["by"],
        type=NoteType(row["type"]),
        index=index,
        conditions=tuple(json.loads(row["conditions"])),
        ref=row["ref"],
    )
