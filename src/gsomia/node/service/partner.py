"""The ledger between the nodes: this node's signed tree heads, the partner's, and alarms."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError

from gsomia.core.errors import AlarmInvalid, NotFound
from gsomia.core.ledger import TreeHead
from gsomia.node.runtime.clock import Clock
from gsomia.node.runtime.config import NodeConfig
from gsomia.node.service.ledger import entry
from gsomia.node.service.outbox import Outbox
from gsomia.store import gate, heads, ledger_store
from gsomia.store import outbox as outbox_rows
from gsomia.store import schema as t


class PartnerLedger:
    """Tree heads and fork alarms: the part of a node that watches its partner's log."""

    def __init__(self, engine: Engine, config: NodeConfig, clock: Clock, outbox: Outbox) -> None:
        self.engine = engine
        self.config = config
        self.party = config.party
        self.clock = clock
        self.outbox = outbox
        self.head_cache: tuple[float, dict[str, Any]] | None = None  # (monotonic, head) last signed

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
        self.head_cache = (time.monotonic(), head)
        return head

    def cached_head(self, max_age: float = 1.0) -> dict[str, Any] | None:
        """The head ``own_head`` would return without touching the database, if it has one that fresh."""
        cached = self.head_cache
        if cached is not None and time.monotonic() - cached[0] < max_age:
            return cached[1]
        return None

    def _sign_current_head(self) -> dict[str, Any]:
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
                return TreeHead(self.party, size, bytes(last["root"]), last["at"], bytes(last["signature"])).as_dict()
            return heads.sign_current(conn, self.config.key, self.clock.now()).as_dict()

    def consistency(self, old: int, new: int) -> list[str]:
        with self.engine.connect() as conn:
            if not 0 <= old <= new <= ledger_store.size(conn):
                raise NotFound(f"no consistency proof from {old} to {new} entries")
            return [p.hex() for p in ledger_store.consistency(conn, old, new)]

    def last_partner_head(self, peer: str) -> TreeHead | None:
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
        with gate.begin(self.engine) as conn:
            heads.store(conn, head, self.clock.now())

    def raise_alarm(self, kind: str, about: str, detail: str) -> dict[str, Any]:
        """Record an alarm and send it to every partner at once: each security authority sees it."""
        now = self.clock.now()
        body = {
            "alarm_id": str(uuid.uuid4()),
            "at": now.astimezone(UTC).isoformat(),
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
            ledger_store.append_rows(conn, [entry(now, "alarm", self.party, None, body)])
            message = json.dumps(body).encode()
            outbox_rows.add(
                conn, [self.outbox.row(code, "flash", "alarm", body["alarm_id"], message) for code in self.config.peers]
            )
        for code in self.config.peers:
            self.outbox.queued_flash(code)
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
                received = entry(self.clock.now(), "alarm_received", peer, None, {**values, "at": body["at"]})
                ledger_store.append_rows(conn, [received])
        except IntegrityError:
            return False
        return True

    def alarms(self) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.alarms).order_by(t.alarms.c.seq)).mappings().all()
        return [{**dict(r), "at": r["at"].isoformat()} for r in rows]
