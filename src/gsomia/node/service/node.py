"""The node: its use cases built once, wired to each other, and called by name.

Routes (``node.api``), workers (``node.workers.delivery``) and the command line call ``Node``'s
methods; each is one line handing the call to the use case that does it, so that what a
user does (provide, receive, read, ...) sits in a module of its own and none shares
state with another except through what it was given here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Engine

from gsomia.core import policy
from gsomia.core.agreement import lifecycle
from gsomia.core.agreement.terms import Agreement
from gsomia.core.label import Label
from gsomia.core.ledger import TreeHead
from gsomia.node.runtime import keychain
from gsomia.node.runtime.clock import Clock, SystemClock
from gsomia.node.runtime.config import NodeConfig
from gsomia.node.runtime.lanes import Lanes
from gsomia.node.runtime.trace import Trace
from gsomia.node.service.agreements import Agreements, Applied
from gsomia.node.service.alerts import Alerts, FreshAlert
from gsomia.node.service.casework import Casework
from gsomia.node.service.integrity import Integrity, Keys
from gsomia.node.service.ledger import Ledger
from gsomia.node.service.outbox import LEASE, Outbox
from gsomia.node.service.partner import PartnerLedger
from gsomia.node.service.provide import ItemSpec, Provide
from gsomia.node.service.read import Reading
from gsomia.node.service.receive import Receive
from gsomia.node.service.users import Users
from gsomia.store import flash
from gsomia.store.lane import main_store
from gsomia.store.outbox import OutboxRow, RowKey


class Node:
    """One party's node: its stores, keys, agreements and use cases."""

    def __init__(
        self, config: NodeConfig, engine: Engine, clock: Clock, lanes: Lanes | None = None, trace: Trace | None = None
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.party = config.party
        # The process's worker threads by lane (R17), and where it marks a flash report's hops.
        self.lanes = lanes or Lanes()
        self.trace = trace or Trace.from_environment()
        # The tree head being signed for the partner in the background (``heads.for_peer``).
        self.head_signing: Any = None
        self.main = main_store(engine)
        self.flash = flash.flash_store(engine)  # the flash lane's tables: a file of their own on SQLite
        # The current key (an interrupted rotation finished), the retired ones, the chain.
        self.config, own_keys, own_chain = keychain.resolve(config, engine)
        with engine.connect() as conn:
            chains = {code: keychain.history(conn, p.public_key) for code, p in self.config.peers.items()}
        self.keys = Keys(own_keys, own_chain, self.config.key.public(), chains)
        self._wire()
        self.agreements.reload_notes()

    def _wire(self) -> None:
        config, engine, clock = self.config, self.engine, self.clock
        self.ledger = Ledger(engine, self.flash, clock)
        self.outbox = Outbox(self.main, self.flash, self.party, self.ledger, SystemClock())
        self.partner = PartnerLedger(engine, config, clock, self.outbox)
        self.integrity = Integrity(engine, config, self.keys, self.partner)
        self.agreements = Agreements(
            engine, config, clock, self.keys, self.integrity, self.partner, self.outbox, self.ledger
        )
        self.users = Users(engine, config, clock, self.integrity, self.ledger)
        self.casework = Casework(engine, config, clock, self.agreements, self.integrity, self.outbox, self.ledger)
        self.reading = Reading(
            self.main, self.flash, self.party, clock, self.agreements, self.casework, self.partner, self.ledger
        )
        self.alerts = Alerts(
            self.outbox, self.party, clock, self.agreements, self.reading, self.casework, self.users, self.ledger
        )
        self.providing = Provide(
            self.party, clock, self.agreements, self.keys, self.outbox, self.ledger, self.lanes, self.trace
        )
        self.receiving = Receive(
            self.party,
            clock,
            self.agreements,
            self.outbox,
            self.ledger,
            self.lanes,
            self.trace,
            self.casework.approvals,
        )

    # --- state others read or set -------------------------------------------------------

    @property
    def public(self) -> Any:
        return self.keys.public

    @property
    def own_keys(self) -> Any:
        return self.keys.own

    @property
    def own_chain(self) -> Any:
        return self.keys.own_chain

    @property
    def peer_chains(self) -> dict[str, Any]:
        return self.keys.peer_chains

    @property
    def flash_queued(self) -> dict[str, int]:
        return self.outbox.flash_queued

    @property
    def on_flash_queued(self) -> Callable[[str], None] | None:
        return self.outbox.on_flash_queued

    @on_flash_queued.setter
    def on_flash_queued(self, call: Callable[[str], None] | None) -> None:
        self.outbox.on_flash_queued = call

    @property
    def on_flash_moved(self) -> Callable[[], None] | None:
        return self.ledger.on_flash_moved

    @on_flash_moved.setter
    def on_flash_moved(self, call: Callable[[], None] | None) -> None:
        self.ledger.on_flash_moved = call

    @property
    def queued(self) -> int:
        return self.ledger.queued

    @queued.setter
    def queued(self, n: int) -> None:
        self.ledger.queued = n

    @property
    def sealed_labels(self) -> dict[str, Label]:
        return self.providing.sealed_labels

    def dispose(self) -> None:
        """Close the node's database connections (the main engine's and the flash store's), its
        worker threads and its trace file."""
        self.lanes.close()
        self.trace.close()
        if self.flash.separate:
            self.flash.engine.dispose()
        self.engine.dispose()

    # --- agreements, notes and keys -------------------------------------------------------

    def reload_notes(self) -> None:
        self.agreements.reload_notes()

    def refresh_notes(self, older_than: float = 0.0) -> None:
        self.agreements.refresh_notes(older_than)

    def agreement(self, peer: str) -> Agreement:
        return self.agreements.agreement(peer)

    def current_agreements(self) -> Applied:
        return self.agreements.current()

    def applied_agreements(self) -> Applied:
        """The agreements as last applied here, without looking for new notes (no I/O)."""
        return self.agreements.applied

    def agreements_if_fresh(self) -> Applied | None:
        return self.agreements.if_fresh()

    def check_forward(self, agreements: Applied, label: Label, peer: str) -> str | None:
        return self.casework.check_forward(agreements, label, peer)

    def status(self, peer: str, at: datetime | None = None) -> lifecycle.Status:
        return self.agreements.status(peer, at)

    def record_note(
        self,
        subject: policy.Subject,
        peer: str,
        note_type: str,
        at: datetime | None,
        conditions: Sequence[str],
        ref: str | None,
    ) -> dict[str, Any]:
        return self.agreements.record_note(subject, peer, note_type, at, conditions, ref)

    def receive_note(self, peer: str, body: dict[str, Any]) -> bool:
        return self.agreements.receive_note(peer, body)

    def learn_keys(self, peer: str, offered: Sequence[Any]) -> bool:
        return self.agreements.learn_keys(peer, offered)

    def key_chains(self) -> list[dict[str, Any]]:
        return self.agreements.key_chains()

    def key_chain(self) -> dict[str, Any]:
        return self.agreements.key_chain()

    # --- users ----------------------------------------------------------------------------

    def add_user(self, user_id: str, role: str, clearance: str | None, need_to_know: Sequence[str]) -> str:
        return self.users.add_user(user_id, role, clearance, need_to_know)

    def revoke_user(self, user_id: str) -> None:
        self.users.revoke_user(user_id)

    def list_users(self) -> list[dict[str, Any]]:
        return self.users.list_users()

    def authenticate(self, token: str) -> policy.Subject | None:
        return self.users.authenticate(token)

    # --- provide and receive --------------------------------------------------------------

    def provide(self, subject: policy.Subject, specs: Sequence[ItemSpec], lane: str = "bulk") -> list[dict[str, Any]]:
        return self.providing.provide(subject, specs, lane)

    def provide_alert(
        self, subject: policy.Subject, spec: ItemSpec, worker: str | None
    ) -> tuple[dict[str, Any], list[dict[str, Any]], list[FreshAlert]]:
        result, claimed, fresh = self.providing.provide_alert(subject, spec, worker)
        return result, _rows(claimed), fresh

    def label_to_send(self, item_id: str, env: bytes) -> Label:
        return self.providing.label_to_send(item_id, env)

    def receive_alerts(
        self, peer: str, envelopes: Sequence[bytes], lane: str
    ) -> tuple[dict[str, Any], list[FreshAlert]]:
        return self.receiving.receive_alerts(peer, envelopes, lane)

    # --- reading and alerts ---------------------------------------------------------------

    def list_items(self, subject: policy.Subject, after: int, limit: int) -> tuple[list[dict[str, Any]], int]:
        return self.reading.list_items(subject, after, limit)

    def read_item(self, subject: policy.Subject, item_id: str, purpose: str | None = None) -> dict[str, Any]:
        return self.reading.read_item(subject, item_id, purpose)

    def may_read(self, subject: policy.Subject, label: Label) -> bool:
        return self.reading.may_read(subject, label)

    def alerts_after(self, after: int, limit: int = 100) -> list[dict[str, Any]]:
        return self.alerts.alerts_after(after, limit)

    def latest_alert_seq(self) -> int:
        return self.alerts.latest_alert_seq()

    def alert_events(
        self, subject: policy.Subject, token: str, after: int
    ) -> tuple[int, list[tuple[int, dict[str, Any]]]] | None:
        return self.alerts.alert_events(subject, token, after)

    def fresh_alert_events(
        self, subject: policy.Subject, token: str, alerts: Sequence[FreshAlert]
    ) -> list[tuple[int, dict[str, Any]]] | None:
        return self.alerts.fresh_alert_events_for([(subject, token, alerts)])[0]

    def fresh_alert_events_for(
        self, asks: Sequence[tuple[policy.Subject, str, Sequence[FreshAlert]]]
    ) -> list[list[tuple[int, dict[str, Any]]] | None]:
        return self.alerts.fresh_alert_events_for(asks)

    def record_alert_reads(self, subject: policy.Subject, events: Sequence[dict[str, Any]]) -> None:
        self.alerts.record_alert_reads_for([(subject, events)])

    def record_alert_reads_for(self, shown: Sequence[tuple[policy.Subject, Sequence[dict[str, Any]]]]) -> None:
        self.alerts.record_alert_reads_for(shown)

    # --- casework ---------------------------------------------------------------------------

    def register(self, subject: policy.Subject, item_id: str) -> dict[str, Any]:
        return self.casework.register(subject, item_id)

    def make_record(self, subject: policy.Subject, kind: str, item_id: str, fields: dict[str, Any]) -> dict[str, Any]:
        return self.casework.make_record(subject, kind, item_id, fields)

    def receive_record(self, peer: str, data: Any) -> bool:
        return self.casework.receive_record(peer, data)

    def cases(self, subject: policy.Subject, item_id: str | None = None) -> list[dict[str, Any]]:
        return self.casework.cases(subject, item_id)

    # --- outbox and the node's own ledger ---------------------------------------------------

    def claim(
        self, peer: str, lane: str, worker: str, limit: int, lease: float = LEASE, skip: Sequence[RowKey] = ()
    ) -> list[dict[str, Any]]:
        return _rows(self.outbox.claim(peer, lane, worker, limit, lease, skip))

    def delivered(
        self,
        keys: Sequence[RowKey],
        receipt: dict[str, Any],
        signature: str,
        refused: dict[str, str],
        lane: str = "bulk",
    ) -> None:
        self.outbox.delivered(keys, receipt, signature, refused, lane)

    def failed(self, keys: Sequence[RowKey], error: str, delay: float, release: Sequence[RowKey] = ()) -> None:
        self.outbox.failed(keys, error, delay, release)

    def release(self, worker: str) -> None:
        self.outbox.release(worker)

    def pending(self, peer: str | None = None) -> int:
        return self.outbox.pending(peer)

    def sequence_ledger(self) -> int:
        return self.ledger.sequence()

    def trim_flash(self) -> None:
        self.ledger.trim_flash()

    # --- the ledger between the nodes ---------------------------------------------------------

    def own_head(self, max_age: float = 1.0) -> dict[str, Any]:
        return self.partner.own_head(max_age)

    def cached_head(self, max_age: float = 1.0) -> dict[str, Any] | None:
        return self.partner.cached_head(max_age)

    def consistency(self, old: int, new: int) -> list[str]:
        return self.partner.consistency(old, new)

    def last_partner_head(self, peer: str) -> TreeHead | None:
        return self.partner.last_partner_head(peer)

    def keep_partner_head(self, head: Any) -> None:
        self.partner.keep_partner_head(head)

    def raise_alarm(self, kind: str, about: str, detail: str) -> dict[str, Any]:
        return self.partner.raise_alarm(kind, about, detail)

    def receive_alarm(self, peer: str, body: dict[str, Any]) -> bool:
        return self.partner.receive_alarm(peer, body)

    def alarms(self) -> list[dict[str, Any]]:
        return self.partner.alarms()


def _rows(rows: list[OutboxRow]) -> list[dict[str, Any]]:
    """Outbox rows as the delivery worker's annotations take them (plain dicts, until they name ``OutboxRow``)."""
    return cast(list[dict[str, Any]], rows)
