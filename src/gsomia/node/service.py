"""The node's operations, each one database transaction, each decided by the core.

Routes (``node.app``) and workers (``node.delivery``) call these; nothing here knows
HTTP. Every write that matters commits together with its outbox row and its audit
entry, so a crash at any instant leaves either all of it or none of it.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import io
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    LargeBinary,
    Table,
    all_,
    and_,
    any_,
    bindparam,
    cast,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError

from gsomia.core import envelope, merkle, policy, records, users
from gsomia.core.agreement import lifecycle
from gsomia.core.agreement.schemes import spelling
from gsomia.core.agreement.terms import Agreement, Note, NoteType
from gsomia.core.errors import AlarmInvalid, GsomiaError, InvalidHistory, NoteInvalid, NotFound, Refused
from gsomia.core.keyring import KeyRotationInvalid
from gsomia.core.label import Label, LabelInvalid, display, is_item_id, marking_for, new_item_id
from gsomia.core.records import effective_label
from gsomia.node import audit as audit_kinds
from gsomia.node import egress, keychain
from gsomia.node.clock import Clock
from gsomia.node.config import NodeConfig
from gsomia.node.lanes import Lanes
from gsomia.node.trace import Trace
from gsomia.store import flash, gate, ledger_store
from gsomia.store import schema as t
from gsomia.store.db import reading
from gsomia.store.flash import FlashStore
from gsomia.store.ledger_store import append_rows, enqueue_rows, insert_many, sequence_queued

LANES = ("flash", "bulk")
# Seconds within which a note recorded by another process of this node is enforced here too
# (the process that records or receives a note applies it at once).
NOTES_REFRESH = 0.25
LEASE = 30.0  # seconds a delivery worker holds the outbox rows it claimed
# What a claim hands the delivery worker of each outbox row (with its ``key``).
_CLAIMED = ("seq", "kind", "ref", "body", "attempts")
# An outbox row's name across the node's files: ("main", seq) or, for a row of the flash file
# (``store.flash``), ("flash", seq). Each file counts its own seqs.
RowKey = tuple[str, int]


def token_hash(token: str) -> str:
    # Tokens are 256-bit random strings: a plain SHA-256 is enough to keep them unusable at rest.
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ItemSpec:
    to: str
    classification: str
    payload: bytes
    releasable_to: tuple[str, ...] = ()
    purposes: tuple[str, ...] = ()
    compartments: tuple[str, ...] = ()


# --- the ledger between the two nodes ------------------------------------------------------


@dataclass(frozen=True)
class FreshAlert:
    """A flash report this process has just committed, with its opened text.

    Alert streams show it from memory (R17: no read back, no second open on the way to
    the duty officer); ``seq`` is its row in ``alerts``, the streams' cursor."""

    seq: int
    alert_id: str
    origin: str
    direction: str
    peer: str
    label: Label
    payload: bytes

    def fields(self) -> dict[str, Any]:
        """What an alert stream shows of it besides its label and text, as ``alerts`` rows name it."""
        return {"alert_id": self.alert_id, "origin": self.origin, "direction": self.direction, "peer": self.peer}


@dataclass(frozen=True)
class _Provision:
    """The rows one provision writes, and each item's (peer, label, payload) to alert on."""

    rows: list[dict[str, Any]]
    outbox: list[dict[str, Any]]
    audits: list[dict[str, Any]]
    opened: list[tuple[str, Label, bytes]]
    now: datetime

    def alerts(self, party: str) -> list[dict[str, Any]]:
        return [_alert_row(label.item_id, party, "out", self.now) for _, label, _ in self.opened]

    def fresh(self, party: str, seqs: Iterable[int]) -> list[FreshAlert]:
        """The alerts committed, given their ``seq`` in the order of ``opened``."""
        return [
            FreshAlert(seq, label.item_id, party, "out", peer, label, payload)
            for seq, (peer, label, payload) in zip(seqs, self.opened, strict=True)
        ]


class NodeLedger:
    """Tree heads and fork alarms: the part of a node that watches its partner's log."""

    engine: Engine
    config: NodeConfig
    party: str
    flash_queued: dict[str, int]

    on_flash_queued: Callable[[str], None] | None

    def _queued_flash(self, peer: str) -> None:
        """Called after a commit that put unclaimed rows for ``peer`` on the flash lane."""
        self.flash_queued[peer] = self.flash_queued.get(peer, 0) + 1
        if self.on_flash_queued is not None:  # the node's flash process delivers them: tell it
            self.on_flash_queued(peer)

    def own_head(self, max_age: float = 1.0) -> dict[str, Any]:
        """The log's signed tree head, at most ``max_age`` seconds old.

        Heads ride on every delivery; signing and storing one per request would put a
        database write on the flash path. A head a second old is still a valid,
        signed statement, and the partner's witness asks for the current one itself.
        """
        cached = self.cached_head(max_age)
        if cached is not None:
            return cached
        head = self._sign_current_head()
        self._head_cache = (time.monotonic(), head)
        return head

    def cached_head(self, max_age: float = 1.0) -> dict[str, Any] | None:
        """The head ``own_head`` would return without touching the database, if it has one that fresh."""
        cached: tuple[float, dict[str, Any]] | None = getattr(self, "_head_cache", None)
        if cached is not None and time.monotonic() - cached[0] < max_age:
            return cached[1]
        return None

    def _sign_current_head(self) -> dict[str, Any]:
        from gsomia.node import audit
        from gsomia.store import ledger_store

        with gate.begin(self.engine) as conn:
            size = ledger_store.size(conn)
            last = (
                conn.execute(
                    select(t.tree_heads)
                    .where(t.tree_heads.c.party == self.party, t.tree_heads.c.size == size)
                    .order_by(t.tree_heads.c.seq.desc())
                    .limit(1)
                )
                .mappings()
                .first()
            )
            if last is not None:
                from gsomia.core.ledger import TreeHead

                return TreeHead(self.party, size, bytes(last["root"]), last["at"], bytes(last["signature"])).as_dict()
            return audit.current_head(conn, self.config.key).as_dict()

    def consistency(self, old: int, new: int) -> list[str]:
        from gsomia.store import ledger_store

        with self.engine.connect() as conn:
            if not 0 <= old <= new <= ledger_store.size(conn):
                raise NotFound(f"no consistency proof from {old} to {new} entries")
            return [p.hex() for p in ledger_store.consistency(conn, old, new)]

    def last_partner_head(self, peer: str) -> Any:
        from gsomia.core.ledger import TreeHead

        with self.engine.connect() as conn:
            row = (
                conn.execute(
                    select(t.tree_heads)
                    .where(t.tree_heads.c.party == peer)
                    .order_by(t.tree_heads.c.size.desc(), t.tree_heads.c.seq.desc())
                    .limit(1)
                )
                .mappings()
                .first()
            )
        if row is None:
            return None
        return TreeHead(peer, int(row["size"]), bytes(row["root"]), row["at"], bytes(row["signature"]))

    def keep_partner_head(self, head: Any) -> None:
        from gsomia.node import audit

        with gate.begin(self.engine) as conn:
            audit.store_head(conn, head)

    def raise_alarm(self, kind: str, about: str, detail: str) -> dict[str, Any]:
        """Record an alarm and send it to the partner at once: both security authorities see it."""
        body = {
            "alarm_id": str(uuid.uuid4()),
            "at": datetime.now(UTC).isoformat(),
            "kind": kind,
            "about": about,
            "raised_by": self.party,
            "detail": detail,
        }
        with gate.begin(self.engine) as conn:
            if conn.execute(
                select(t.alarms.c.seq).where(
                    t.alarms.c.kind == kind, t.alarms.c.about == about, t.alarms.c.detail == detail
                )
            ).first():
                return body  # the same alarm stands already
            conn.execute(insert(t.alarms).values(**{**body, "at": datetime.fromisoformat(body["at"])}))
            append_rows(conn, [_audit_row(datetime.now(UTC), "alarm", self.party, None, body)])
            for code in self.config.peers:
                conn.execute(
                    insert(t.outbox).values(
                        **_outbox_row(code, "flash", "alarm", body["alarm_id"], json.dumps(body).encode())
                    )
                )
        for code in self.config.peers:
            self._queued_flash(code)
        return body

    def receive_alarm(self, peer: str, body: dict[str, Any]) -> bool:
        try:
            values = {
                "alarm_id": str(body["alarm_id"]),
                "at": datetime.fromisoformat(str(body["at"])),
                "kind": str(body["kind"]),
                "about": str(body["about"]),
                "raised_by": peer,
                "detail": str(body["detail"]),
            }
        except (KeyError, ValueError):
            raise AlarmInvalid("alarm: not an alarm") from None
        try:
            with gate.begin(self.engine) as conn:
                conn.execute(insert(t.alarms).values(**values))
                append_rows(
                    conn, [_audit_row(datetime.now(UTC), "alarm_received", peer, None, {**values, "at": body["at"]})]
                )
        except IntegrityError:
            return False
        return True

    def alarms(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.alarms).order_by(t.alarms.c.seq)).mappings().all()
        return [{**dict(r), "at": r["at"].isoformat()} for r in rows]


@dataclass
class Node(NodeLedger):
    config: NodeConfig
    engine: Engine
    clock: Clock
    _agreements: dict[str, Agreement] = field(default_factory=dict)
    _sealers: dict[str, envelope.Sealer] = field(default_factory=dict)
    _openers: dict[str, envelope.Opener] = field(default_factory=dict)
    _notes_mark: tuple[int, int] = (0, 0)  # (count, last seq) of the notes applied
    _notes_checked: float = 0.0
    # Per peer, how many times this process committed flash-lane outbox rows nobody holds:
    # a delivery worker that sees the count move claims before it sends what it was handed.
    flash_queued: dict[str, int] = field(default_factory=dict)
    # Called from the committing thread with the peer's code, when another process delivers the flash lane.
    on_flash_queued: Callable[[str], None] | None = None
    # Set in a main process with a flash process: rows were moved out of the flash file, and
    # the flash process, not this low-priority one, deletes them there (``flash.move``).
    on_flash_moved: Callable[[], None] | None = None
    queued: int = 0  # ledger entries this process has queued (``ledger_store.enqueue_rows``): wakes the sequencer
    # The labels of bulk items this process sealed and has not yet sent, by item id: the egress
    # guard takes one instead of parsing the envelope's label again when the bytes are the same.
    sealed_labels: dict[str, Label] = field(default_factory=dict)
    # (user, item) pairs whose read on an alert stream is on the ledger (``record_alert_reads``),
    # oldest first, at most ``STREAM_READS_KEPT``: one entry per user and report, however many
    # streams showed it.
    _stream_reads: dict[tuple[str, str], None] = field(default_factory=dict)
    _stream_reads_lock: threading.Lock = field(default_factory=threading.Lock)
    # Rows that decide (users, notes, records) are used only as their ledger entry, or their
    # author's signature, vouches for them (principle 6); what was checked is remembered here,
    # so the check costs a dict lookup after the first time (``_bound``).
    _bound: _Bound = field(default_factory=lambda: _Bound())
    # The process's worker threads by lane (R17), and where it marks a flash report's hops.
    lanes: Lanes = field(default_factory=Lanes)
    trace: Trace = field(default_factory=Trace.from_environment)
    # The tree head being signed for the partner in the background (``heads.for_peer``).
    head_signing: Any = None

    def __post_init__(self) -> None:
        self.party = self.config.party
        self.main = flash.main_store(self.engine)
        self.flash = flash.flash_store(self.engine)  # the flash lane's tables: a file of their own on SQLite
        # The current key (an interrupted rotation finished), the retired ones, the chain.
        self.config, self.own_keys, self.own_chain = keychain.resolve(self.config, self.engine)
        self.public = self.config.key.public()
        with self.engine.connect() as conn:
            self.peer_chains = {code: keychain.history(conn, p.public_key) for code, p in self.config.peers.items()}
        self.reload_notes()

    # --- agreements and notes ---------------------------------------------------------

    def reload_notes(self) -> None:
        """Apply the notes recorded on this node to each agreement file's own history.

        Only a note whose ledger entry says the same is applied: a row written behind the
        node's back neither ends nor revives the agreement, and raises an alarm instead."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.notes).order_by(t.notes.c.seq)).mappings().all()
        self._notes_mark = (len(rows), max((r["seq"] for r in rows), default=0))
        rows = self._entered_notes(rows)
        self._notes_checked = time.monotonic()
        for code in self.config.peers:
            base = self.config.agreement_with(code)
            extra = [r for r in rows if r["agreement"] == base.id]
            agreement = base.with_notes(base.notes + tuple(_note(r, len(base.notes) + i) for i, r in enumerate(extra)))
            lifecycle.compile_history(agreement)  # refuse an impossible history now, not later
            self._agreements[code] = agreement
            self._sealers[code] = envelope.Sealer(self.config.key, agreement)
            chain = self.peer_chains[code]
            self._openers[code] = envelope.Opener(
                self.own_keys,
                [*chain.keys, *self.own_chain.keys],
                agreement,
                retired={**chain.windows(), **self.own_chain.windows()},
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

    # --- key chains ---------------------------------------------------------------------

    def learn_keys(self, peer: str, offered: Sequence[Any]) -> bool:
        """Extend ``peer``'s key chain with the rotations it offers (verified, stored, on the ledger)."""
        known = self.peer_chains[peer]
        try:
            chain = keychain.learn(self.engine, known, list(offered), peer)
        except KeyRotationInvalid as exc:
            self.raise_alarm("bad_key_chain", peer, str(exc))
            raise
        if len(chain.rotations) == len(known.rotations):
            return False
        self.peer_chains[peer] = chain
        self.reload_notes()  # openers trust the new key, sealers wrap for it
        return True

    def key_chains(self) -> list[dict[str, Any]]:
        """Every key of this node and of its partners, as known here."""
        return keychain.summary([self.own_chain, *self.peer_chains.values()])

    def key_chain(self) -> dict[str, Any]:
        """This node's rotations, for its partners (public keys and signatures only)."""
        with self.engine.connect() as conn:
            found = keychain.rotations(conn, self.party)
        return {"party": self.party, "current": self.public.kid, "rotations": [r.as_dict() for r in found]}

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
            self._enqueue(conn, peer, "flash", "note", note_id, json.dumps(body).encode())
            self._audit(conn, "diplomatic_note", subject.id, None, body)
        self._queued_flash(peer)
        self.reload_notes()
        return body

    def receive_note(self, peer: str, body: dict[str, Any]) -> bool:
        """A note delivered by the peer node; idempotent. Returns False for a repeat."""
        if body.get("by") != peer:
            raise NoteInvalid(f"a note delivered by {peer} must be {peer}'s own note")
        try:
            with gate.begin(self.engine) as conn:
                self._store_note(conn, body, origin=peer)
                self._audit(conn, "diplomatic_note_received", peer, None, body)
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
        peer = self._peer_of(body["agreement"])
        current = self.agreement(peer)
        candidate = current.with_notes(
            (
                *current.notes,
                Note(
                    at.astimezone(UTC),
                    body["by"],
                    note_type,
                    len(current.notes),
                    tuple(body.get("conditions") or ()),
                    body.get("ref"),
                ),
            )
        )
        lifecycle.compile_history(candidate)  # InvalidHistory names the note
        conn.execute(
            insert(t.notes).values(
                note_id=body["note_id"],
                agreement=body["agreement"],
                at=at,
                by=body["by"],
                type=note_type.value,
                conditions=json.dumps(list(body.get("conditions") or ()), ensure_ascii=False),
                ref=body.get("ref"),
                recorded_by=str(body.get("recorded_by") or origin),
                origin=origin,
            )
        )

    # --- users ------------------------------------------------------------------------

    def add_user(self, user_id: str, role: str, clearance: str | None, need_to_know: Sequence[str]) -> str:
        users.check_user_id(user_id)  # the command line checks too; any other caller is held to the same
        clearance = users.check_clearance(self.config.agreements, self.party, clearance)
        need_to_know = users.check_need_to_know(need_to_know)
        subject = policy.subject_from_dict(
            {
                "id": user_id,
                "party": self.party,
                "role": role,
                "clearance": clearance,
                "need_to_know": list(need_to_know),
            }
        )
        token = "gsk_" + secrets.token_urlsafe(32)
        created = self.clock.now()
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    insert(t.users).values(
                        user_id=subject.id,
                        party=self.party,
                        role=subject.role.value,
                        clearance=clearance,
                        need_to_know=json.dumps(sorted(need_to_know), ensure_ascii=False),
                        token_hash=token_hash(token),
                        created_at=created,
                    )
                )
                # Every column a decision reads, so the row is checked against the entry (principle 6).
                entered = {
                    "user": user_id,
                    "party": self.party,
                    "role": subject.role.value,
                    "clearance": clearance,
                    "need_to_know": sorted(need_to_know),
                    "token_hash": token_hash(token),
                    "created_at": created.isoformat(),
                }
                self._audit(conn, "user_added", "cli", None, entered)
        except IntegrityError:
            raise GsomiaError(f"user {user_id!r} already exists") from None
        return token

    def revoke_user(self, user_id: str) -> None:
        now = self.clock.now()
        with self.engine.begin() as conn:
            done = conn.execute(
                update(t.users)
                .where(t.users.c.user_id == user_id, t.users.c.revoked_at.is_(None))
                .values(revoked_at=now)
            ).rowcount
            if not done:
                raise NotFound(f"no active user {user_id!r}")
            self._audit(conn, "user_revoked", "cli", None, {"user": user_id, "revoked_at": now.isoformat()})
        self._bound.scanned_at = float("-inf")  # the next authentication reads the revocation

    def list_users(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.users).order_by(t.users.c.seq)).mappings().all()
        return [
            {
                "user_id": r["user_id"],
                "role": r["role"],
                "clearance": r["clearance"],
                "need_to_know": json.loads(r["need_to_know"]),
                "created_at": r["created_at"].isoformat(),
                "revoked_at": r["revoked_at"].isoformat() if r["revoked_at"] else None,
            }
            for r in rows
        ]

    def authenticate(self, token: str) -> policy.Subject | None:
        with reading(self.engine) as conn:
            row = conn.execute(_USER_BY_TOKEN, {"token_hash": token_hash(token)}).mappings().first()
        if row is None:
            return None
        if not self._user_bound(row):
            return None
        return policy.Subject(
            id=row["user_id"],
            party=row["party"],
            role=policy.Role(row["role"]),
            clearance=row["clearance"],
            need_to_know=frozenset(json.loads(row["need_to_know"])),
        )

    # --- providing items ---------------------------------------------------------------

    def provide(self, subject: policy.Subject, specs: Sequence[ItemSpec], lane: str = "bulk") -> list[dict[str, Any]]:
        """Decide, seal and commit items with their outbox rows; all or nothing."""
        return self._provide(subject, specs, lane, None)[0]

    def provide_alert(
        self, subject: policy.Subject, spec: ItemSpec, worker: str | None
    ) -> tuple[dict[str, Any], list[dict[str, Any]], list[FreshAlert]]:
        """A flash report (R17): committed like any item, its outbox row already claimed by ``worker``.

        The claim is part of the commit, so the delivery worker can send the row it is handed
        at once instead of claiming it back in a transaction of its own; the stream shows the
        returned ``FreshAlert`` without reading it back. With no ``worker`` (this process does not
        deliver the flash lane), the row is left for whichever worker claims it. On SQLite it
        is all written to the flash lane's own file (``store.flash``): no bulk transaction
        holds that file's write lock."""
        results, claimed, fresh = self._provide(subject, [spec], "flash", worker)
        return results[0], claimed, fresh

    def _provide(
        self, subject: policy.Subject, specs: Sequence[ItemSpec], lane: str, worker: str | None
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[FreshAlert]]:
        if not specs:
            return [], [], []
        now = self.clock.now()
        by_peer: dict[str, list[tuple[bytes, Label]]] = {}
        for n, spec in enumerate(specs):
            if lane == "bulk" and n % 16 == 0:
                self.lanes.yield_to_flash()
            agreement = self.agreement(spec.to)
            label = Label(
                item_id=new_item_id(),
                agreement=agreement.id,
                originator=self.party,
                # The agreement's own spelling (군사Ⅱ급비밀 is 군사II급비밀): never a second one in a label.
                classification=spelling(agreement, self.party, spec.classification) or spec.classification,
                releasable_to=spec.releasable_to or (spec.to,),
                created_at=now,
                purposes=spec.purposes,
                compartments=spec.compartments,
            )
            decision = policy.decide(
                agreement,
                subject,
                policy.Action.PROVIDE,
                label,
                lifecycle.status(agreement, now),
                (),
                now,
                recipient=spec.to,
            )
            if not decision.permit:
                with gate.begin(self.engine) as conn:
                    self._audit(conn, "provide_denied", subject.id, label.item_id, decision.as_dict())
                raise Refused(decision, f"providing to {spec.to}")
            by_peer.setdefault(spec.to, []).append((spec.payload, label))

        results: list[dict[str, Any]] = []
        rows: list[dict[str, Any]] = []
        outbox: list[dict[str, Any]] = []
        audits: list[dict[str, Any]] = []
        opened: list[tuple[str, Label, bytes]] = []
        for peer, batch in by_peer.items():
            sealed = self._sealers[peer].seal_batch(batch, [self.peer_chains[peer].current, self.public])
            for (payload, label), env in zip(batch, sealed, strict=True):
                rows.append(_item_row(label, env, "out", peer, lane, now, None))
                # A bulk envelope is stored once, in ``items``: the claim reads it from there. A flash
                # report's outbox row keeps its own copy: its item may have moved to the main file.
                outbox.append(_outbox_row(peer, lane, "item", label.item_id, env if lane == "flash" else b""))
                audits.append(_audit_row(now, "provide", subject.id, label.item_id, {"to": peer, "lane": lane}))
                results.append({"item_id": label.item_id, "to": peer, "classification": label.classification})
                opened.append((peer, label, payload))
        if worker is not None:  # leases are real time, even in the demo (as in ``claim``)
            until = datetime.now(UTC) + timedelta(seconds=LEASE)
            outbox = [{**row, "claimed_by": worker, "claimed_until": until} for row in outbox]
        if lane == "bulk":
            self.lanes.yield_to_flash()  # let a pending flash report take the write lock first
        if lane == "flash":
            for r in results:
                self.trace.mark(r["item_id"], "provide.begin")
        store = self._store_of(lane)
        provision = _Provision(rows, outbox, audits, opened, now)
        if lane == "flash" and _is_pg(store.engine):
            sent, fresh = self._store_sent_reports(store, provision)
            claimed = sent if worker is not None else []
        else:
            claimed, fresh = self._store_provided(store, lane, worker, provision)
        for a in fresh:
            self.trace.mark(a.alert_id, "provide.committed")
        if lane == "bulk":
            if len(self.sealed_labels) + len(opened) > SEALED_LABELS_KEPT:
                self.sealed_labels.clear()  # rows another process sent, or a long backlog: start afresh
            self.sealed_labels.update((label.item_id, label) for _, label, _ in opened)
        if lane == "flash" and worker is None:
            for peer in by_peer:
                self._queued_flash(peer)
        return results, claimed, fresh

    def _store_provided(
        self, store: FlashStore, lane: str, worker: str | None, p: _Provision
    ) -> tuple[list[dict[str, Any]], list[FreshAlert]]:
        claimed: list[dict[str, Any]] = []
        fresh: list[FreshAlert] = []
        with gate.begin(store.engine) as conn:
            _insert_rows(conn, store.items, p.rows)
            if worker is None:
                _insert_rows(conn, store.outbox, p.outbox)  # in this order: delivery follows the outbox's seq
            else:
                returned = conn.execute(_insert_claimed(store.outbox), p.outbox)
                claimed = [_keyed(store, dict(r)) for r in returned.mappings()]
            self._log(conn, lane, p.audits)
            if lane == "flash":
                fresh = p.fresh(self.party, conn.execute(_insert_alerts(store.alerts), p.alerts(self.party)).scalars())
        return claimed, fresh

    def _store_sent_reports(self, store: FlashStore, p: _Provision) -> tuple[list[dict[str, Any]], list[FreshAlert]]:
        """Flash reports provided, on PostgreSQL: stored as ``_store_provided`` stores them, in
        one statement in autocommit (``store_sent_alerts``): one round trip instead of six
        (BEGIN, four inserts, COMMIT). Returns the outbox rows (as claimed) and the alerts."""
        with store.engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            sent = ledger_store.store_sent_alerts(
                conn,
                store.items,
                p.rows,
                store.outbox,
                p.outbox,
                _CLAIMED,
                p.audits,
                store.alerts,
                p.alerts(self.party),
            )
        self.queued += len(p.audits)
        seqs = {row["ref"]: row.pop("alert_seq") for row in sent}
        fresh = p.fresh(self.party, (seqs[label.item_id] for _, label, _ in p.opened))
        return [_keyed(store, row) for row in sent], fresh

    # --- receiving items ---------------------------------------------------------------

    def receive_items(self, peer: str, envelopes: Sequence[bytes], lane: str) -> dict[str, Any]:
        """Verify each envelope, check the agreement at its release instant, store; idempotent."""
        return self.receive_alerts(peer, envelopes, lane)[0]

    def receive_alerts(
        self, peer: str, envelopes: Sequence[bytes], lane: str
    ) -> tuple[dict[str, Any], list[FreshAlert]]:
        """``receive_items``, and the flash reports newly stored, opened, for the alert streams."""
        now = self.clock.now()
        opener = self._openers[peer]
        agreement = self.agreement(peer)
        accepted: list[tuple[Label, bytes, bytes]] = []
        refused: list[dict[str, str]] = []
        for n, env in enumerate(envelopes):
            if lane == "bulk" and n % 16 == 0:
                self.lanes.yield_to_flash()
            try:
                label, payload = opener.open(env)
            except (envelope.EnvelopeError, LabelInvalid) as exc:
                refused.append({"item_id": "", "reason": f"{type(exc).__name__}: {exc}"})
                continue
            decision = policy.receive(agreement, label, self.party, peer, now)
            if not decision.permit:
                reason = decision.reasons[0]
                refused.append({"item_id": label.item_id, "reason": f"{reason.rule}: {reason.text}"})
                continue
            accepted.append((label, env, payload))
        received: list[str] = []
        fresh_alerts: list[FreshAlert] = []
        if lane == "flash":
            for lbl, _, _ in accepted:
                self.trace.mark(lbl.item_id, "receive.begin")
        if accepted and lane == "flash" and _is_pg(self.flash.engine):
            fresh_alerts = self._store_received_reports(peer, accepted, now)
            received = [lbl.item_id for lbl, _, _ in accepted]  # repeats are acknowledged again
        elif accepted:
            rows = [_item_row(lbl, env, "in", peer, lane, lbl.created_at, now) for lbl, env, _ in accepted]
            store = self._store_of(lane)
            with gate.begin(store.engine) as conn:
                if store.separate:  # moved to the main file already: a repeat. Read under the flash file's lock,
                    # which the move's delete waits for, so a row is in one file or the other here.
                    known = self._moved_already([r["item_id"] for r in rows])
                    rows = [r for r in rows if r["item_id"] not in known]
                # Insert-or-ignore: a redelivery (or a race between two senders' workers) stores nothing twice.
                if not rows:
                    returned: set[str] = set()
                elif store.engine.dialect.name == "postgresql":
                    returned = set(
                        insert_many(conn, store.items, rows, ignore_conflicts_on="item_id", returning="item_id")
                    )
                else:
                    returned = set(conn.execute(_insert_new_items(store.items), rows).scalars())
                fresh = [(lbl, payload) for lbl, _, payload in accepted if lbl.item_id in returned]  # delivery order
                if fresh:
                    self._log(
                        conn,
                        lane,
                        [
                            _audit_row(now, "receipt", peer, lbl.item_id, {"from": peer, "lane": lane})
                            for lbl, _ in fresh
                        ],
                    )
                    if lane == "flash":
                        seqs = conn.execute(
                            _insert_alerts(store.alerts), [_alert_row(lbl.item_id, peer, "in", now) for lbl, _ in fresh]
                        ).scalars()
                        fresh_alerts = [
                            FreshAlert(seq, lbl.item_id, peer, "in", peer, lbl, payload)
                            for seq, (lbl, payload) in zip(seqs, fresh, strict=True)
                        ]
            received = [lbl.item_id for lbl, _, _ in accepted]  # repeats are acknowledged again
        receipt = {"node": self.party, "received": received, "refused": refused, "at": now.isoformat()}
        for a in fresh_alerts:
            self.trace.mark(a.alert_id, "receive.committed")
        return receipt, fresh_alerts

    def _store_received_reports(
        self, peer: str, accepted: Sequence[tuple[Label, bytes, bytes]], now: datetime
    ) -> list[FreshAlert]:
        """Flash reports received, on PostgreSQL: stored as ``receive_alerts`` stores a batch,
        with their queued ledger entries and alerts, in one statement in autocommit: one
        round trip instead of six (BEGIN, three inserts, COMMIT, and the pool's ping of before).

        With a flash database of its own, a report moved to the main one already is a repeat:
        it is looked for there first, with trims held off (``flash.hold_trims``)."""
        store = self._store_of("flash")
        with store.engine.connect() as conn:
            if store.separate:
                conn.begin()
                flash.hold_trims(conn)
                known = self._moved_already([lbl.item_id for lbl, _, _ in accepted])
                accepted = [a for a in accepted if a[0].item_id not in known]
            else:
                conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            rows = [_item_row(lbl, env, "in", peer, "flash", lbl.created_at, now) for lbl, env, _ in accepted]
            entries = [
                _audit_row(now, "receipt", peer, lbl.item_id, {"from": peer, "lane": "flash"}) for lbl, _, _ in accepted
            ]
            alerts = [_alert_row(lbl.item_id, peer, "in", now) for lbl, _, _ in accepted]
            seqs = (
                ledger_store.store_fresh_alerts(conn, store.items, rows, entries, store.alerts, alerts) if rows else {}
            )
            if store.separate:
                conn.commit()
        self.queued += len(seqs)
        return [
            FreshAlert(seqs[lbl.item_id], lbl.item_id, peer, "in", peer, lbl, payload)
            for lbl, _, payload in accepted
            if lbl.item_id in seqs
        ]

    # --- reading -------------------------------------------------------------------------

    def list_items(self, subject: policy.Subject, after: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        """A page of the items after ``after`` this subject may know of, and the next cursor.

        The cursor is the ``seq`` of the last item shown (``after`` itself when none is): it
        never lands on an item the subject may not know of, so a page that ends before ``limit``
        items ends the listing, and nothing counts the rows passed over (principle 5)."""
        inventory = policy.keeps_inventory(subject)
        out: list[dict[str, Any]] = []
        cursor = scanned = after
        now = self.clock.now()
        statuses: dict[str, lifecycle.Status] = {}
        while len(out) < limit:
            chunk = limit if inventory else max(limit, LIST_SCAN)
            with self.engine.connect() as conn:
                rows = (
                    conn.execute(
                        select(
                            t.items.c.seq,
                            t.items.c.item_id,
                            t.items.c.label,
                            t.items.c.direction,
                            t.items.c.peer,
                            t.items.c.lane,
                        )
                        .where(t.items.c.seq > scanned)
                        .order_by(t.items.c.seq)
                        .limit(chunk)
                    )
                    .mappings()
                    .all()
                )
                reclassified = self._reclassifications(conn, [r["item_id"] for r in rows])
            for r in rows:
                if len(out) == limit:
                    break
                label = effective_label(
                    Label.from_bytes(r["label"].encode("utf-8")), reclassified.get(r["item_id"], [])
                )
                agreement = self.agreement(r["peer"])
                if not inventory:
                    status = statuses.get(r["peer"])
                    if status is None:
                        status = statuses[r["peer"]] = lifecycle.status(agreement, now)
                    if not policy.decide(agreement, subject, policy.Action.READ, label, status, (), now).permit:
                        continue
                cursor = r["seq"]
                out.append(
                    {
                        "seq": r["seq"],
                        "item_id": r["item_id"],
                        "direction": r["direction"],
                        "peer": r["peer"],
                        "lane": r["lane"],
                        "originator": label.originator,
                        "marking": marking_for(label, agreement, self.party),
                        "display": display(label, agreement, self.party),
                        "created_at": label.created_at.isoformat(),
                    }
                )
            if len(rows) < chunk:
                break
            scanned = rows[-1]["seq"]
        return out, cursor

    def read_item(self, subject: policy.Subject, item_id: str, purpose: str | None = None) -> dict[str, Any]:
        """An item's content, if the access decision permits (R7); the decision goes on the ledger.

        A subject who may not know of the item (principle 5: not in the inventory, and no read
        without a purpose permitted) is answered exactly as for an id that does not exist."""
        unknown = NotFound(f"no item {item_id}")
        if not is_item_id(item_id):  # cannot name an item: nothing to look up, nothing learnt
            raise unknown
        row, history = self._stored_item(item_id)
        if row is None:
            # Entered like the refusal of an item the subject may not know of, so neither the
            # ledger's growth nor an auditor's listing tells a probe of one from the other.
            missing = policy.Decision(False, (policy.Reason("R7", "no item with this id on this node"),))
            with gate.begin(self.engine) as conn:
                self._audit(conn, "read_denied", subject.id, item_id, missing.as_dict())
            raise unknown
        label = effective_label(Label.from_bytes(row["label"].encode("utf-8")), history)
        peer = row["peer"]
        agreement = self.agreement(peer)
        now = self.clock.now()
        status = lifecycle.status(agreement, now)
        decision = policy.decide(agreement, subject, policy.Action.READ, label, status, (), now, purpose=purpose)
        if not decision.permit and not self._may_know(subject, agreement, label, status, now):
            with gate.begin(self.engine) as conn:
                self._audit(conn, "read_denied", subject.id, item_id, decision.as_dict())
            raise unknown
        if records.register(history, self.party)["item_destroyed"]:
            raise NotFound(f"item {item_id} was destroyed (R9)")
        with gate.begin(self.engine) as conn:
            self._audit(conn, "read" if decision.permit else "read_denied", subject.id, item_id, decision.as_dict())
        if not decision.permit:
            raise Refused(decision, f"reading {item_id}")
        opened, payload = self._open_stored(row)
        current = effective_label(opened, history)
        return {
            "item_id": item_id,
            "label": opened.as_dict(),
            "classification": current.classification,
            "marking": marking_for(current, agreement, self.party),
            "display": display(current, agreement, self.party),
            "payload_b64": base64.b64encode(payload).decode(),
            "decision": decision.shown().as_dict(),
        }

    def _may_know(
        self, subject: policy.Subject, agreement: Agreement, label: Label, status: lifecycle.Status, now: datetime
    ) -> bool:
        """Whether ``subject`` may learn that this item exists (principle 5).

        The security authority and auditors keep the inventory (R8); anyone else only when the
        item is one they may read for some purpose, so a refusal of the purpose they declared
        tells them nothing new."""
        if policy.keeps_inventory(subject):
            return True
        return policy.decide(agreement, subject, policy.Action.READ, label, status, (), now).permit

    def _moved_already(self, item_ids: Sequence[str]) -> set[str]:
        """Which of these items the main tables hold: reports moved from the flash store.

        On PostgreSQL as one array parameter in SQL written out: a flash report's receipt waits
        for it, and Core's statement costs 0.1 ms more CPU (compiling the expanding IN)."""
        with reading(self.engine) as main:
            if _is_pg(self.engine):
                found = main.exec_driver_sql(_MOVED_ALREADY, (list(item_ids),))
                return {str(item_id) for (item_id,) in found}
            return set(main.execute(select(t.items.c.item_id).where(t.items.c.item_id.in_(item_ids))).scalars())

    def dispose(self) -> None:
        """Close the node's database connections (the main engine's and the flash store's), its
        worker threads and its trace file."""
        self.lanes.close()
        self.trace.close()
        if self.flash.separate:
            self.flash.engine.dispose()
        self.engine.dispose()

    def _store_of(self, lane: str) -> FlashStore:
        """Where a transaction of ``lane`` writes: the flash lane's own file on SQLite (R17)."""
        return self.flash if lane == "flash" else self.main

    def _stored_item(self, item_id: str) -> tuple[Any, list[records.Record]]:
        """An item's row and its records, wherever it is: a flash report may not have moved yet.

        The main file is read again when the flash file lacks it too: the report may have moved
        between the two reads (it is copied to the main file before it leaves the flash file)."""
        stores = [self.main, self.flash, self.main] if self.flash.separate else [self.main]
        for store in stores:
            with store.engine.connect() as conn:
                row = conn.execute(select(store.items).where(store.items.c.item_id == item_id)).mappings().first()
                if row is not None:
                    return row, self._records(conn, item_id) if store is self.main else []
        return None, []

    def alerts_after(self, after: int, limit: int = 100) -> list[dict[str, Any]]:
        """Flash reports after ``after``, in seq order, from both files where there are two.

        The flash file is read first: a report that moves meanwhile is then found in the main
        file, never missed; one found in both is the same row (its seq kept by the move)."""
        found: dict[int, dict[str, Any]] = {}
        for store in (self.flash, self.main) if self.flash.separate else (self.main,):
            a, i = store.alerts, store.items
            with reading(store.engine) as conn:
                rows = conn.execute(
                    select(a, i.c.label, i.c.envelope, i.c.peer)
                    .join(i, i.c.item_id == a.c.alert_id)
                    .where(a.c.seq > after)
                    .order_by(a.c.seq)
                    .limit(limit)
                ).mappings()
                found.update((r["seq"], dict(r)) for r in rows)
        return [found[seq] for seq in sorted(found)[:limit]]

    def latest_alert_seq(self) -> int:
        """The highest flash report seq stored, in either file: what alert streams have to catch up to."""
        top = 0
        for store in self._files():
            with reading(store.engine) as conn:
                top = max(top, conn.execute(select(func.max(store.alerts.c.seq))).scalar() or 0)
        return top

    def alert_events(
        self, subject: policy.Subject, token: str, after: int
    ) -> tuple[int, list[tuple[int, dict[str, Any]]]] | None:
        """The flash reports after ``after`` this subscriber may read, and the seq looked up to.

        Each is decided under its current label, the originator's reclassifications applied (R6);
        one it may not read is passed over unseen (principle 5), the returned seq past it all the
        same. None once its token is revoked."""
        rows = self.alerts_after(after)
        if not rows:
            return after, []
        with reading(self.engine) as conn:
            history = self._reclassifications(conn, [r["alert_id"] for r in rows])
        shown: list[tuple[int, dict[str, Any]]] = []
        for row in rows:
            label = effective_label(Label.from_bytes(row["label"].encode("utf-8")), history.get(row["alert_id"], []))
            if self.may_read(subject, row["peer"], label):
                shown.append((row["seq"], self._alert_view(row, label, functools.partial(self._opened_payload, row))))
        if shown and self.authenticate(token) is None:
            return None
        return rows[-1]["seq"], shown

    def may_read(self, subject: policy.Subject, peer: str, label: Label) -> bool:
        """Whether ``subject`` may read an item of this label now (R7): pure, no database."""
        agreement = self.agreement(peer)
        now = self.clock.now()
        status = lifecycle.status(agreement, now)
        return policy.decide(agreement, subject, policy.Action.READ, label, status, (), now).permit

    def fresh_alert_events(
        self, subject: policy.Subject, token: str, alerts: Sequence[FreshAlert]
    ) -> list[tuple[int, dict[str, Any]]] | None:
        """``alert_events`` for reports just committed by this process: no read back, no second open."""
        return self.fresh_alert_events_for([(subject, token, alerts)])[0]

    def fresh_alert_events_for(
        self, asks: Sequence[tuple[policy.Subject, str, Sequence[FreshAlert]]]
    ) -> list[list[tuple[int, dict[str, Any]]] | None]:
        """``fresh_alert_events`` for many streams at once: one token lookup, each report's event made once.

        Each (subscriber, token, reports) gets the events of the reports it may read (each checked
        here, where the text is put in), or None once its token is revoked."""
        valid = self._live_tokens({token for _, token, alerts in asks if alerts})
        views: dict[int, dict[str, Any]] = {}
        decided: dict[tuple[policy.Subject, int], bool] = {}  # one decision for subscribers weighed alike
        out: list[list[tuple[int, dict[str, Any]]] | None] = []
        for subject, token, alerts in asks:
            if alerts and token not in valid:
                out.append(None)
                continue
            shown = []
            weighed = policy.as_decided(subject)
            for a in alerts:
                permit = decided.get((weighed, a.seq))
                if permit is None:
                    permit = decided[(weighed, a.seq)] = self.may_read(subject, a.peer, a.label)
                if permit:
                    view = views.get(a.seq)
                    if view is None:
                        view = views[a.seq] = self._alert_view(a.fields(), a.label, _given(a.payload))
                    shown.append((a.seq, view))
            out.append(shown)
        return out

    def _live_tokens(self, tokens: Iterable[str]) -> set[str]:
        """Which of these tokens belong to a user not revoked (``authenticate``, in one query)."""
        by_hash = {token_hash(tok): tok for tok in tokens}
        if not by_hash:
            return set()
        users = t.users
        with reading(self.engine) as conn:
            found = conn.execute(
                select(users.c.token_hash).where(users.c.token_hash.in_(list(by_hash)), users.c.revoked_at.is_(None))
            ).scalars()
            return {by_hash[h] for h in found}

    def _opened_payload(self, row: Any) -> bytes:
        return self._open_stored(row)[1]

    def _alert_view(self, alert: dict[str, Any], label: Label, payload: Callable[[], bytes]) -> dict[str, Any]:
        """One flash report as a subscriber who may read it sees it: in its current marking."""
        agreement = self.agreement(alert["peer"])
        return {
            "alert_id": alert["alert_id"],
            "origin": alert["origin"],
            "direction": alert["direction"],
            "marking": marking_for(label, agreement, self.party),
            "display": display(label, agreement, self.party),
            "created_at": label.created_at.isoformat(),
            "decision": "permit",
            "text": payload().decode("utf-8", "replace"),
        }

    def record_alert_reads(self, subject: policy.Subject, events: Sequence[dict[str, Any]]) -> None:
        """Flash text shown on a stream is a read like any other (R9): one entry per user and report."""
        self.record_alert_reads_for([(subject, events)])

    def record_alert_reads_for(self, shown: Sequence[tuple[policy.Subject, Sequence[dict[str, Any]]]]) -> None:
        """``record_alert_reads`` for many streams at once, in one transaction.

        However many streams a user holds, and whichever showed a report first: the pairs recorded
        are remembered here, and the ledger (queued or appended, in this file or the flash file)
        is asked about the rest, so a restart does not record a report again either."""
        pairs = list(dict.fromkeys((who.id, e["alert_id"]) for who, events in shown for e in events if "text" in e))
        with self._stream_reads_lock:
            claimed = [pair for pair in pairs if pair not in self._stream_reads]
            self._stream_reads.update((pair, None) for pair in claimed)
            while len(self._stream_reads) > STREAM_READS_KEPT:
                del self._stream_reads[next(iter(self._stream_reads))]
        if not claimed:
            return
        try:
            known = self._reads_on_ledger(claimed)
            fresh = [pair for pair in claimed if pair not in known]
            if fresh:
                now = self.clock.now()
                rows = [
                    _audit_row(now, "read", user, item, {"via": "alerts/stream", "effect": "permit"})
                    for user, item in fresh
                ]
                with gate.begin(self.flash.engine) as conn:
                    self._log(conn, "flash", rows)  # the stream's own lane: never behind a bulk transaction
        except BaseException:
            with self._stream_reads_lock:  # not recorded: the next stream to show them tries again
                for pair in claimed:
                    self._stream_reads.pop(pair, None)
            raise

    def _reads_on_ledger(self, pairs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of these (user, item) pairs have a read on the ledger, sequenced or queued.

        Queued entries move from the flash file to the main file's queue, then into the log:
        read in that order, an entry moving meanwhile is found in the next place."""
        found: set[tuple[str, str]] = set()
        users, items = list({u for u, _ in pairs}), list({i for _, i in pairs})
        places: list[tuple[Engine, Table]] = [(store.engine, store.queue) for store in reversed(self._files())]
        places.append((self.engine, t.ledger_entries))
        for engine, table in places:
            with reading(engine) as conn:
                rows = conn.execute(
                    select(table.c.actor, table.c.item_id).where(
                        table.c.kind == "read", table.c.actor.in_(users), table.c.item_id.in_(items)
                    )
                )
                found.update((actor, item) for actor, item in rows)
        return found & set(pairs)

    def _open_stored(self, row: Any) -> tuple[Label, bytes]:
        """Open a stored envelope; its sealed label must be the stored copy the decision used.

        Decisions read the label copy in ``items.label`` (no decryption before a permit); a
        copy edited in the database to open more than it should is caught here."""
        opened, payload = self._openers[row["peer"]].open(row["envelope"])
        if opened.to_bytes().decode("utf-8") != row["label"]:
            detail = f"item {opened.item_id}: the stored label differs from the sealed label (database edited)"
            self.raise_alarm("tampered_item", self.party, detail)
            raise envelope.Tampered(detail)
        return opened, payload

    # --- records: consent and release (R5), compromise and investigation (R11) ----------------

    def _records(self, conn: Connection, item_id: str) -> list[records.Record]:
        rows = conn.execute(
            select(t.records.c.body, t.records.c.signature)
            .where(t.records.c.item_id == item_id)
            .order_by(t.records.c.seq)
        )
        return [r for r in (self._signed_record(b, sig) for b, sig in rows) if r is not None]

    def _reclassifications(self, conn: Connection, item_ids: list[str]) -> dict[str, list[records.Record]]:
        found: dict[str, list[records.Record]] = {}
        if not item_ids:
            return found
        rows = conn.execute(
            select(t.records.c.item_id, t.records.c.body, t.records.c.signature)
            .where(t.records.c.kind == "reclassification", t.records.c.item_id.in_(item_ids))
            .order_by(t.records.c.seq)
        )
        for item_id, body, sig in rows:
            record = self._signed_record(body, sig)
            if record is not None:
                found.setdefault(item_id, []).append(record)
        return found

    # --- rows bound to the ledger at run time (principle 6) -----------------------------------

    def _signed_record(self, body: str, signature: str) -> records.Record | None:
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
        if by == self.party or by in self.peer_chains:
            record = self._verified(data, signature, by, fresh=False) or self._verified(data, signature, by, fresh=True)
        if record is None:
            what = data.get("record_id") if isinstance(data, dict) else None
            self._alarm_once("tampered_record", f"record {what!r}: its signature does not verify (database edited)")
        if len(bound.signed) >= _BOUND_KEPT:
            bound.signed.clear()
        bound.signed[key] = record
        return record

    def _verified(self, data: dict[str, Any], signature: str, by: str, fresh: bool) -> records.Record | None:
        """``records.verify`` with ``by``'s key chain as this process knows it, or (``fresh``) as
        the database records it now: another process of the node may have learnt a rotation."""
        chain = self.own_chain if by == self.party else self.peer_chains[by]
        if fresh:
            with reading(self.engine) as conn:
                if by == self.party:
                    chain = keychain.own_history(conn, by, self.public)
                else:
                    chain = keychain.history(conn, self.config.peers[by].public_key)
        try:
            return records.verify({"body": data, "signature": signature}, chain, by)
        except (records.RecordInvalid, KeyRotationInvalid):
            return None

    def _scan_bound_entries(self) -> None:
        """The ledger's user and note entries since the last look, each checked against its leaf hash."""
        bound = self._bound
        e = t.ledger_entries.c
        kinds = [*audit_kinds.USER_KINDS, *audit_kinds.NOTE_KINDS]
        body = cast(e.body, LargeBinary) if self.engine.dialect.name == "sqlite" else e.body
        bound.scanned_at = time.monotonic()
        with reading(self.engine) as conn:
            # Up to the last entry stored, which the next look starts after: every entry below it
            # is committed (appenders take indexes in turn under the log's counter), so nothing
            # is passed over, and a look reads only what was appended since (a range of the key).
            last = conn.execute(select(func.max(e.idx))).scalar()
            if last is None or last <= bound.scanned:
                return
            rows = conn.execute(
                select(e.idx, body, e.leaf_hash)
                .where(e.idx > bound.scanned, e.idx <= last, e.kind.in_(kinds))
                .order_by(e.idx)
            ).all()
        bound.scanned = int(last)
        for idx, raw, leaf in rows:
            data = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)
            if merkle.leaf_hash(data) != bytes(leaf):
                continue  # an altered entry vouches for nothing (``audit verify`` names it)
            try:
                entry = json.loads(data)
                detail = entry["detail"]
                kind = entry["kind"]
                name = detail["note_id"] if kind in audit_kinds.NOTE_KINDS else detail["user"]
            except (ValueError, KeyError, TypeError):
                continue
            if entry.get("index") != idx or kind not in kinds or not isinstance(name, str):
                continue
            if kind in audit_kinds.NOTE_KINDS:
                bound.notes.setdefault(name, entry)
            else:
                bound.users.setdefault(name, {})[kind] = (int(idx), entry)
                bound.user_rows.clear()  # a user added or revoked: every row is checked afresh

    def _entered_notes(self, rows: Sequence[Any]) -> list[Any]:
        """The notes whose ledger entry says what their row says; an alarm for any other."""
        self._scan_bound_entries()
        kept = []
        for row in rows:
            entry = self._bound.notes.get(row["note_id"])
            try:
                wrong = "no ledger entry" if entry is None else audit_kinds.note_differs(row, entry, self.party)
            except (KeyError, TypeError):
                wrong = "detail"
            if wrong is None:
                kept.append(row)
            else:
                detail = f"note {row['note_id']}: its row is not what its ledger entry says ({wrong}; database edited)"
                self._alarm_once("tampered_note", detail)
        return kept

    def _user_bound(self, row: Any) -> bool:
        """Whether a user's row is what its ledger entries say; checked once per process per row."""
        bound = self._bound
        key = tuple(row[c] for c in _USER_COLUMNS)
        known = bound.user_rows.get(key)
        # A row as it was before a revocation (revoked_at set back to null) is the same key: a
        # revocation entered since the last look forgets what was remembered (``_scan_bound_entries``).
        if known is not None and time.monotonic() - bound.scanned_at < BOUND_RESCAN:
            return known
        self._scan_bound_entries()
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
                wrong = audit_kinds.user_differs(row, added[1]["detail"], later)
        except (KeyError, TypeError):
            wrong = "detail"
        if wrong is not None:
            detail = f"user {row['user_id']}: its row is not what its ledger entry says ({wrong}; database edited)"
            self._alarm_once("tampered_user", detail)
        if len(bound.user_rows) >= _BOUND_KEPT:
            bound.user_rows.clear()
        bound.user_rows[key] = wrong is None
        return wrong is None

    def _alarm_once(self, kind: str, detail: str) -> None:
        """Tell both security authorities (``raise_alarm``), once per process for the same finding."""
        if (kind, detail) in self._bound.alarmed:
            return
        self._bound.alarmed.add((kind, detail))
        self.raise_alarm(kind, self.party, detail)

    def register(self, subject: policy.Subject, item_id: str) -> dict[str, Any]:
        """Where an item is (R8): holder, current marking, copies, translations, destruction."""
        decision = policy.read_register(subject)
        if not decision.permit:
            raise Refused(decision, "reading the register")
        with self.engine.connect() as conn:
            row = conn.execute(select(t.items).where(t.items.c.item_id == item_id)).mappings().first()
            if row is None:
                raise NotFound(f"no item {item_id}")
            history = self._records(conn, item_id)
        sealed = Label.from_bytes(row["label"].encode("utf-8"))
        current = effective_label(sealed, history)
        agreement = self.agreement(row["peer"])
        reg = records.register(history, self.party)
        marking = marking_for(current, agreement, self.party)
        return {
            "item_id": item_id,
            "holder": self.party,
            "originator": sealed.originator,
            "direction": row["direction"],
            "sealed_classification": sealed.classification,
            "classification": current.classification,
            "marking": marking,
            "display": display(current, agreement, self.party),
            "copies": [{**c, "marking": marking} for c in reg["copies"]],
            "item_destroyed": reg["item_destroyed"],
            "destroyed_by": reg["destroyed_by"],
            "records": [r.body for r in history if r.kind in records.REGISTER],
        }

    def _store_record(self, conn: Connection, record: records.Record, origin: str) -> None:
        body = record.body
        ref = body.get("request_id") or body.get("report_id")
        conn.execute(
            insert(t.records).values(
                record_id=record.id,
                kind=record.kind,
                item_id=body["item_id"],
                ref=ref,
                origin=origin,
                body=record.canonical().decode("utf-8"),
                signature=record.signature,
                created_at=datetime.fromisoformat(body["at"]),
            )
        )

    def make_record(self, subject: policy.Subject, kind: str, item_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        """A security authority's record about an item; checked, signed, kept and sent to the partner."""
        decision = records.maker(subject, kind)
        if not decision.permit:
            raise Refused(decision, f"making a {kind}")
        now = self.clock.now()
        with self.engine.connect() as conn:
            row = conn.execute(select(t.items).where(t.items.c.item_id == item_id)).mappings().first()
            if row is None:
                raise NotFound(f"no item {item_id}")
            history = self._records(conn, item_id)
        label = Label.from_bytes(row["label"].encode("utf-8"))
        peer = row["peer"]
        agreement = self.agreement(peer)
        status, current = lifecycle.status(agreement, now), effective_label(label, history)
        if not self._may_know(subject, agreement, current, status, now):
            # Answered as an unknown id (principle 5); why, the ledger says.
            decision = policy.decide(agreement, subject, policy.Action.READ, current, status, (), now)
            with gate.begin(self.engine) as conn:
                self._audit(conn, f"{kind}_denied", subject.id, item_id, decision.as_dict())
            raise NotFound(f"no item {item_id}")
        extra = records.check(records.Ask(subject, kind, fields, label, agreement, history, self.party, now))
        if kind == "release":
            consents = records.consents(history, label.originator)
            guard = egress.release(label, extra["recipient"], extra["purpose"], self.party, consents)
            if not guard.permit:
                raise Refused(guard, f"making a {kind}")
        record = records.make(self.config.key, kind, self.party, subject.id, item_id, now, **{**fields, **extra})
        lane = "flash" if kind in records.FLASH else "bulk"
        with gate.begin(self.engine) as conn:
            self._store_record(conn, record, self.party)
            append_rows(conn, [_audit_row(now, kind, subject.id, item_id, record.body)])
            conn.execute(
                insert(t.outbox).values(
                    **_outbox_row(peer, lane, "record", record.id, json.dumps(record.as_dict()).encode())
                )
            )
        if lane == "flash":
            self._queued_flash(peer)
        state = records.case_state([*history, record], records.case_of(record))
        return {"record": record.body, "state": state, "peer": peer}

    def receive_record(self, peer: str, data: Any) -> bool:
        record = records.verify(data, self.peer_chains[peer], peer)
        now = self.clock.now()
        try:
            with gate.begin(self.engine) as conn:
                self._store_record(conn, record, peer)
                append_rows(
                    conn, [_audit_row(now, f"{record.kind}_received", peer, record.body["item_id"], record.body)]
                )
        except IntegrityError:
            return False
        return True

    def cases(self, subject: policy.Subject, item_id: str | None = None) -> list[dict[str, Any]]:
        """Every case (consent request, compromise report) with its records and derived state."""
        decision = policy.list_cases(subject)
        if not decision.permit:
            raise Refused(decision, "listing cases")
        with self.engine.connect() as conn:
            q = select(t.records.c.body, t.records.c.signature).order_by(t.records.c.seq)
            if item_id:
                q = q.where(t.records.c.item_id == item_id)
            all_records = [r for r in (self._signed_record(b, sig) for b, sig in conn.execute(q)) if r is not None]
        out = []
        for r in all_records:
            if r.kind in ("consent_request", "compromise_report"):
                related = [x for x in all_records if records.case_of(x) == r.id]
                out.append(
                    {
                        "case": r.id,
                        "kind": r.kind,
                        "item_id": r.body["item_id"],
                        "state": records.case_state(all_records, r.id),
                        "records": [x.body for x in related],
                    }
                )
        return out

    # --- outbox ----------------------------------------------------------------------------

    def label_to_send(self, item_id: str, env: bytes) -> Label:
        """The label of an envelope about to leave, for the egress guard: the one sealed here
        if its bytes are the envelope's, else parsed from the envelope (unverified, as
        ``envelope.peek_label``: the receiver verifies it)."""
        raw = envelope.peek_label_bytes(io.BytesIO(env))
        sealed = self.sealed_labels.pop(item_id, None)
        if sealed is not None and sealed.to_bytes() == raw:
            return sealed
        return Label.from_bytes(raw)

    def _enqueue(self, conn: Connection, peer: str, lane: str, kind: str, ref: str, body: bytes) -> None:
        conn.execute(insert(t.outbox).values(**_outbox_row(peer, lane, kind, ref, body)))

    def claim(
        self, peer: str, lane: str, worker: str, limit: int, lease: float = LEASE, skip: Sequence[RowKey] = ()
    ) -> list[dict[str, Any]]:
        """Claim undelivered rows in order. On PostgreSQL, rows locked by another worker are skipped.

        Rows this worker holds already (a flash report committed claimed, ``provide_alert``)
        come back with the rest, in their place, except those in ``skip``: the worker has them
        in hand (with the partner, or their receipt being recorded) and claims what comes next.
        The flash lane's rows are in the flash file where there is one (reports, receipts'
        entries), and in the main file (notes, alarms, records, and reports committed before
        the flash file): both are claimed, in the order they were committed."""
        stores = self._files() if lane == "flash" else (self.main,)
        claimed: list[dict[str, Any]] = []
        for store in stores:
            name = "flash" if store.separate else "main"
            skipped = [seq for where, seq in skip if where == name]
            claimed += self._claim_in(store, peer, lane, worker, limit, lease, skipped)
        if len(stores) > 1:
            claimed.sort(key=lambda r: (r["created_at"], r["key"]))
        for r in claimed:
            del r["created_at"]
        return claimed

    def _claim_in(
        self, store: FlashStore, peer: str, lane: str, worker: str, limit: int, lease: float, skip: list[int]
    ) -> list[dict[str, Any]]:
        now = datetime.now(UTC)  # leases and back-off are real time, even in the demo
        given: dict[str, Any] = {"p_peer": peer, "p_lane": lane, "p_worker": worker, "p_now": now}
        if skip:
            given["p_skip"] = skip
        peek, take = _claim_statements(store.outbox, _is_pg(store.engine), bool(skip))
        with reading(store.engine) as conn:  # nothing to claim (an idle worker's poll): no write transaction
            if conn.execute(peek, given).first() is None:
                return []
        with gate.begin(store.engine) as conn:
            until = now + timedelta(seconds=lease)
            rows = conn.execute(take, {**given, "p_limit": limit, "p_until": until}).mappings().all()
            claimed = sorted((_keyed(store, dict(r)) for r in rows), key=lambda r: r["seq"])
            _fill_envelopes(conn, claimed)
        return claimed

    def _by_store(self, keys: Sequence[RowKey]) -> list[tuple[FlashStore, list[int]]]:
        """Outbox row keys by the file that holds them (the flash file's first)."""
        flash_seqs = [seq for where, seq in keys if where == "flash"]
        main_seqs = [seq for where, seq in keys if where != "flash"]
        split = [(self.flash, flash_seqs)] if flash_seqs else []
        return split + ([(self.main, main_seqs)] if main_seqs else [])

    def delivered(
        self,
        keys: Sequence[RowKey],
        receipt: dict[str, Any],
        signature: str,
        refused: dict[str, str],
        lane: str = "bulk",
    ) -> None:
        """Mark rows delivered and keep the receipt (and, if signed, its ledger entry) beside them.

        Rows of both files (a flash claim): the receipt goes with the flash file's rows, and
        their transaction commits first, so a crash between the two sends the main file's rows
        again (the partner acknowledges a repeat) rather than losing the receipt."""
        now = datetime.now(UTC)
        for n, (store, seqs) in enumerate(self._by_store(keys) or [(self.main, [])]):
            ob = store.outbox
            with gate.begin(store.engine) as conn:
                conn.execute(_mark_delivered(ob, _is_pg(store.engine)), {"seqs": seqs, "now": now})
                for ref, reason in refused.items():
                    conn.execute(update(ob).where(and_(ob.c.seq.in_(seqs), ob.c.ref == ref)).values(last_error=reason))
                if n:
                    continue
                if refused and not signature:  # held back here, or refused unread: no signed receipt says so
                    peer = str(receipt.get("node", "?"))
                    self._log(
                        conn,
                        lane,
                        [
                            _audit_row(
                                now, "delivery_refused", self.party, ref or None, {"peer": peer, "reason": reason}
                            )
                            for ref, reason in refused.items()
                        ],
                    )
                conn.execute(
                    _insert(store.receipts),
                    {
                        "peer": receipt.get("node", "?"),
                        "body": json.dumps(receipt, ensure_ascii=False),
                        "signature": signature,
                        "received_at": now,
                    },
                )
                if signature:  # the partner's signed word that it holds these: on this ledger too, one entry a batch
                    detail = {"receipt": receipt, "signature": signature}
                    who = str(receipt.get("node", "?"))
                    self._log(conn, lane, [_audit_row(now, "receipt_signed", who, None, detail)])

    def failed(self, keys: Sequence[RowKey], error: str, delay: float, release: Sequence[RowKey] = ()) -> None:
        """A send failed: count the attempt, and give back ``release`` (the rest of the claim) unsent."""
        now = datetime.now(UTC)
        failing = set(keys)
        for store, seqs in self._by_store([*keys, *release]):
            ob = store.outbox
            name = "flash" if store.separate else "main"
            sent = [seq for seq in seqs if (name, seq) in failing]
            given_back = [seq for seq in seqs if (name, seq) not in failing]
            with gate.begin(store.engine) as conn:
                if given_back:
                    conn.execute(update(ob).where(ob.c.seq.in_(given_back)).values(claimed_until=None))
                conn.execute(
                    update(ob)
                    .where(ob.c.seq.in_(sent))
                    .values(
                        attempts=ob.c.attempts + 1,
                        next_attempt_at=now + timedelta(seconds=delay),
                        claimed_until=None,
                        last_error=error[:500],
                    )
                )

    def _files(self) -> tuple[FlashStore, ...]:
        """The node's files: the main one, and the flash lane's where it has one of its own."""
        return (self.main, self.flash) if self.flash.separate else (self.main,)

    def release(self, worker: str) -> None:
        """Give back what ``worker`` holds unsent (it is stopping): the next worker need not wait out the lease."""
        for store in self._files():
            ob = store.outbox
            with gate.begin(store.engine) as conn:
                conn.execute(
                    update(ob).where(ob.c.claimed_by == worker, ob.c.delivered_at.is_(None)).values(claimed_until=None)
                )

    def pending(self, peer: str | None = None) -> int:
        """Outbox rows not yet delivered, in both files where there are two."""
        total = 0
        for store in self._files():
            q = select(func.count()).select_from(store.outbox).where(store.outbox.c.delivered_at.is_(None))
            if peer:
                q = q.where(store.outbox.c.peer == peer)
            with store.engine.connect() as conn:
                total += int(conn.execute(q).scalar_one())
        return total

    # --- audit -----------------------------------------------------------------------------

    def _log(self, conn: Connection, lane: str, rows: Sequence[dict[str, Any]]) -> None:
        """Write ledger entries in a transaction of ``lane``: a flash one queues them (R17).

        A bulk transaction holds the log's counter from its first entry until it commits; a
        flash report that waited for it would wait for the whole batch. Queued entries commit
        with the report and join the log when ``sequence_ledger`` runs, a moment later."""
        if lane == "flash":
            enqueue_rows(conn, rows)
            self.queued += len(rows)
        else:
            append_rows(conn, rows)

    def sequence_ledger(self) -> int:
        """Move queued entries into the log, in the order queued; how many moved.

        The flash file's rows (``store.flash``) are moved into the main file first, its
        queued entries with them."""
        trimmer = self.on_flash_moved
        if flash.move(self.engine, self.flash, trim_here=trimmer is None) and trimmer is not None:
            trimmer()
        moved = 0
        while True:
            with self.engine.connect() as conn:  # an empty queue: no write transaction, no turn at the gate
                if ledger_store.queued(conn) == 0:
                    return moved
            with gate.begin(self.engine) as conn:
                n = sequence_queued(conn, SEQUENCE_TURN)
            moved += n
            if n < SEQUENCE_TURN:  # the queue is empty now, but for what was queued meanwhile
                return moved

    def trim_flash(self) -> None:
        """Delete from the flash file the rows the main process has moved (``on_flash_moved``)."""
        flash.trim_moved(self.engine, self.flash)

    def _audit(self, conn: Connection, kind: str, actor: str, item_id: str | None, detail: dict[str, Any]) -> None:
        append_rows(conn, [_audit_row(self.clock.now(), kind, actor, item_id, detail)])


SEQUENCE_TURN = 1000  # queued entries appended per write transaction
# Items a listing reads at a time while it looks for ones the subject may know of.
LIST_SCAN = 500
# (user, item) pairs whose read on an alert stream this process remembers having recorded;
# past this many the oldest are forgotten and the ledger is asked instead.
STREAM_READS_KEPT = 100_000
# Labels kept for the egress guard (``Node.sealed_labels``), about 1 KB each. Past this many (a
# partner down for long, rows another process sent) they are dropped and the guard parses labels.
SEALED_LABELS_KEPT = 50_000


_BOUND_KEPT = 100_000  # records and user rows remembered as checked, past which they are checked again
# Seconds a user row checked against the ledger is taken as checked without a look for newer user
# entries (one indexed query for the entries since): how long a revocation another process enters
# could be undone by an insider setting ``revoked_at`` back to null. This process's own revocations
# count at once.
BOUND_RESCAN = 1.0
_USER_COLUMNS = tuple(c.name for c in t.users.c if c.name != "seq")


@dataclass
class _Bound:
    """What this process has checked against the ledger or a signature (``Node._user_bound``,
    ``Node._signed_record``, ``Node._entered_notes``)."""

    scanned: int = -1  # the highest ledger index read for user and note entries
    scanned_at: float = float("-inf")  # when (monotonic) the ledger was last read for them
    users: dict[str, dict[str, tuple[int, dict[str, Any]]]] = field(default_factory=dict)
    notes: dict[str, dict[str, Any]] = field(default_factory=dict)
    user_rows: dict[tuple[Any, ...], bool] = field(default_factory=dict)
    signed: dict[tuple[str, str], records.Record | None] = field(default_factory=dict)
    alarmed: set[tuple[str, str]] = field(default_factory=set)


def _given(payload: bytes) -> Callable[[], bytes]:
    return lambda: payload


def _insert_rows(conn: Connection, table: Any, rows: list[dict[str, Any]]) -> None:
    """Many rows in one statement on PostgreSQL (``insert_many``); Core's executemany on SQLite,
    where it is as fast (and the bench showed no gain)."""
    if conn.dialect.name == "postgresql":
        insert_many(conn, table, rows)
    else:
        conn.execute(_insert(table), rows)


def _note(row: Any, index: int) -> Note:
    return Note(
        at=row["at"],
        by=row["by"],
        type=NoteType(row["type"]),
        index=index,
        conditions=tuple(json.loads(row["conditions"])),
        ref=row["ref"],
    )


def _item_row(
    label: Label, env: bytes, direction: str, peer: str, lane: str, provided: datetime, received: datetime | None
) -> dict[str, Any]:
    return {
        "item_id": label.item_id,
        "agreement": label.agreement,
        "originator": label.originator,
        "direction": direction,
        "peer": peer,
        "classification": label.classification,
        "label": label.to_bytes().decode("utf-8"),
        "envelope": env,
        "lane": lane,
        "provided_at": provided,
        "received_at": received,
        "route": label.route,
    }


def _keyed(store: FlashStore, row: dict[str, Any]) -> dict[str, Any]:
    row["key"] = ("flash" if store.separate else "main", row["seq"])
    return row


def _fill_envelopes(conn: Connection, rows: list[dict[str, Any]]) -> None:
    """A bulk item's outbox row holds no copy of its envelope (written once, in ``items``): read it.

    Rows written before that (migration-free: a non-empty body) and flash reports' rows keep
    their own copy."""
    refs = [r["ref"] for r in rows if r["kind"] == "item" and not r["body"]]
    if not refs:
        return
    found = dict(conn.execute(_envelopes_of(t.items, conn.dialect.name == "postgresql"), {"refs": refs}).all())
    for r in rows:
        if r["kind"] == "item" and not r["body"]:
            r["body"] = found[r["ref"]]


def _outbox_row(peer: str, lane: str, kind: str, ref: str, body: bytes) -> dict[str, Any]:
    # Real time, even in the demo (like leases): it orders the flash lane's rows of the two files.
    created = datetime.now(UTC)
    return {"peer": peer, "lane": lane, "kind": kind, "ref": ref, "body": body, "created_at": created, "attempts": 0}


def _audit_row(at: datetime, kind: str, actor: str, item_id: str | None, detail: dict[str, Any]) -> dict[str, Any]:
    # Through JSON once so the ledger entry holds plain data (decisions, instants as text);
    # text, numbers and flags are plain already (an item's provision or receipt, per item).
    if not all(type(v) in _PLAIN for v in detail.values()):
        detail = json.loads(json.dumps(detail, default=str))
    return {"at": at, "kind": kind, "actor": actor, "item_id": item_id, "detail": detail}


_PLAIN = (str, int, bool, type(None))  # JSON gives these back as they are (keys are text)


def _alert_row(item_id: str, origin: str, direction: str, now: datetime) -> dict[str, Any]:
    return {"alert_id": item_id, "origin": origin, "direction": direction, "body": "{}", "created_at": now}


# A receipt's look at the main tables for reports moved there (PostgreSQL, ``_moved_already``).
_MOVED_ALREADY = "SELECT item_id FROM items WHERE item_id = ANY(%s)"

# Statements of a flash report's path, built once per table (the flash file has tables of its
# own). SQLAlchemy builds a new statement object on every call and derives its cache key
# anew; a constant one only binds its parameters: 0.1 against 0.3 ms of CPU per execution on a
# slow core, and a report runs about a dozen (sender and receiver).
_USER_BY_TOKEN = select(t.users).where(t.users.c.token_hash == bindparam("token_hash"), t.users.c.revoked_at.is_(None))


@functools.cache
def _insert(table: Table) -> Any:
    return insert(table)


@functools.cache
def _insert_claimed(outbox: Table) -> Any:
    return insert(outbox).returning(*(outbox.c[name] for name in _CLAIMED), sort_by_parameter_order=True)


@functools.cache
def _insert_alerts(alerts: Table) -> Any:
    return insert(alerts).returning(alerts.c.seq, sort_by_parameter_order=True)


@functools.cache
def _insert_new_items(items: Table) -> Any:
    """Insert-or-ignore by item id (SQLite): the ids of the rows stored."""
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(items).on_conflict_do_nothing(index_elements=["item_id"]).returning(items.c.item_id)


def _is_pg(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def _among(column: Any, name: str, pg: bool, negate: bool = False) -> Any:
    """``column`` in (or, negated, not in) the list bound to ``name``.

    On PostgreSQL one array parameter (``= ANY``, ``<> ALL``): an expanded ``IN`` list is
    a statement of its own for each length, which SQLAlchemy renders, psycopg parses and
    the server plans anew on every call (11% of a sending node's CPU at 256 rows a batch)."""
    if pg:
        values = bindparam(name, type_=postgresql.ARRAY(column.type))
        return column != all_(values) if negate else column == any_(values)
    values = bindparam(name, expanding=True)
    return column.not_in(values) if negate else column.in_(values)


@functools.cache
def _mark_delivered(outbox: Table, pg: bool) -> Any:
    return (
        update(outbox).where(_among(outbox.c.seq, "seqs", pg)).values(delivered_at=bindparam("now"), claimed_until=None)
    )


@functools.cache
def _envelopes_of(items: Table, pg: bool) -> Any:
    return select(items.c.item_id, items.c.envelope).where(_among(items.c.item_id, "refs", pg))


@functools.cache
def _claim_statements(outbox: Table, skip_locked: bool, skipping: bool = False) -> tuple[Any, Any]:
    """An idle worker's look at the outbox (every 0.2 s on the flash lane), and the claim.

    A row is free when unclaimed, its lease lapsed, or claimed by this worker already (and
    not in ``p_skip``, with ``skipping``: rows it has in hand). There is no per-row "not
    before": skipping a row that is backing off would let a later one overtake it. The
    worker backs off as a whole, so order holds."""
    ob = outbox
    free = or_(
        ob.c.claimed_until.is_(None), ob.c.claimed_until < bindparam("p_now"), ob.c.claimed_by == bindparam("p_worker")
    )
    if skipping:
        free = and_(free, _among(ob.c.seq, "p_skip", skip_locked, negate=True))
    pending = (
        select(ob.c.seq)
        .where(ob.c.peer == bindparam("p_peer"), ob.c.lane == bindparam("p_lane"), ob.c.delivered_at.is_(None), free)
        .order_by(ob.c.seq)
    )
    batch = pending.limit(bindparam("p_limit"))
    if skip_locked:  # PostgreSQL: rows another worker is claiming are skipped, not waited for
        batch = batch.with_for_update(skip_locked=True)
    # PostgreSQL: ``= ANY(ARRAY(…))`` finds the claimed rows by their key; ``IN (…)`` was planned
    # as a hash join over the whole outbox, every row ever sent.
    chosen = (
        ob.c.seq == any_(func.array(batch.scalar_subquery())) if skip_locked else ob.c.seq.in_(batch.scalar_subquery())
    )
    take = (
        update(ob)
        .where(chosen, free)
        .values(claimed_by=bindparam("p_worker"), claimed_until=bindparam("p_until"))
        .returning(*(ob.c[name] for name in _CLAIMED), ob.c.created_at)
    )
    return pending.limit(1), take
