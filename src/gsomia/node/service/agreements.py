"""The agreements this node is party to, as its notes make them, and the keys that seal under them.

A diplomatic note recorded here, or received from a partner, ends, suspends or revives an
agreement for every process of the node: each applies the notes whose ledger entry vouches
for them (``Integrity.entered_notes``) to the agreement file's own history.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select
from sqlalchemy.exc import IntegrityError

from gsomia.core import envelope, policy
from gsomia.core.agreement import lifecycle
from gsomia.core.agreement.terms import Agreement, Note, NoteType
from gsomia.core.errors import InvalidHistory, NoteInvalid, NotFound, Refused
from gsomia.core.keyring import KeyRotationInvalid
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


class Agreements:
    """Each partner's agreement with the notes applied, its sealer and opener; notes and key chains."""

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
        self._agreements: dict[str, Agreement] = {}
        self.sealers: dict[str, envelope.Sealer] = {}
        self.openers: dict[str, envelope.Opener] = {}
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
        for code in self.config.peers:
            base = self.config.agreement_with(code)
            extra = [r for r in rows if r["agreement"] == base.id]
            agreement = base.with_notes(base.notes + tuple(_note(r, len(base.notes) + i) for i, r in enumerate(extra)))
            lifecycle.compile_history(agreement)  # refuse an impossible history now, not later
            self._agreements[code] = agreement
            self.sealers[code] = envelope.Sealer(self.config.key, agreement)
            chain = self.keys.peer_chains[code]
            self.openers[code] = envelope.Opener(
                self.keys.own, [*chain.keys, *own.keys], agreement, retired={**chain.windows(), **own.windows()}
            )

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

    def agreement(self, peer: str) -> Agreement:
        if time.monotonic() - self._notes_checked > NOTES_REFRESH:
            self.refresh_notes()
        try:
            return self._agreements[peer]
        except KeyError:
            raise NotFound(f"{self.party} has no agreement with {peer!r}") from None

    def applied_agreement(self, peer: str) -> Agreement | None:
        """The agreement with ``peer`` as last applied here, without looking for new notes (no I/O)."""
        return self._agreements.get(peer)

    def agreement_if_fresh(self, peer: str) -> Agreement | None:
        """What ``agreement`` would return, where that needs no look for new notes (no I/O); else None."""
        if time.monotonic() - self._notes_checked > NOTES_REFRESH:
            return None
        return self._agreements.get(peer)

    def status(self, peer: str, at: datetime | None = None) -> lifecycle.Status:
        return lifecycle.status(self.agreement(peer), at or self.clock.now())

    def _peer_of(self, agreement_id: str) -> str:
        for code, a in self._agreements.items():
            if a.id == agreement_id:
                return code
        raise NotFound(f"no agreement {agreement_id!r} on this node")

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
        body: dict[str, Any] = {
            "note_id": note_id,
            "agreement": self.agreement(peer).id,
            "at": (at or self.clock.now()).astimezone(UTC).isoformat(),
            "by": self.party,
            "type": note_type,
            "conditions": list(conditions),
            "ref": ref,
            "recorded_by": subject.id,
        }
        with gate.begin(self.engine) as conn:
            self._store_note(conn, body, origin=self.party)
            self.outbox.enqueue(conn, peer, "flash", "note", note_id, json.dumps(body).encode())
            self.ledger.audit(conn, "diplomatic_note", subject.id, None, body)
        self.outbox.queued_flash(peer)
        self.reload_notes()
        return body

    def receive_note(self, peer: str, body: dict[str, Any]) -> bool:
        """A note delivered by the peer node; idempotent. Returns False for a repeat."""
        if body.get("by") != peer:
            raise NoteInvalid(f"a note delivered by {peer} must be {peer}'s own note")
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
        current = self.agreement(self._peer_of(body["agreement"]))
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
