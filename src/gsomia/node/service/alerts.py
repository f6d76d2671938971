"""Flash reports on the alert streams (R17): what each subscriber may read, and its reads on the ledger."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, Table, func, select

from gsomia.core import policy, records
from gsomia.core.label import Label, display, marking_for
from gsomia.node.runtime.clock import Clock
from gsomia.node.service.agreements import Agreements
from gsomia.node.service.casework import Casework
from gsomia.node.service.ledger import Ledger, entry
from gsomia.node.service.outbox import Outbox
from gsomia.node.service.read import Reading
from gsomia.node.service.users import Users
from gsomia.store import gate
from gsomia.store import schema as t
from gsomia.store.db import reading

# (user, item) pairs whose read on an alert stream this process remembers having recorded;
# past this many the oldest are forgotten and the ledger is asked instead.
STREAM_READS_KEPT = 100_000


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


class Alerts:
    """The alert streams' reads: reports after a cursor, each shown only to whom may read it."""

    def __init__(
        self,
        outbox: Outbox,
        party: str,
        clock: Clock,
        agreements: Agreements,
        reading_: Reading,
        casework: Casework,
        users: Users,
        ledger: Ledger,
    ) -> None:
        self.outbox = outbox
        self.party = party
        self.clock = clock
        self.agreements = agreements
        self.reading = reading_
        self.casework = casework
        self.users = users
        self.ledger = ledger
        # (user, item) pairs whose read on an alert stream is on the ledger (``record_alert_reads``),
        # oldest first, at most ``STREAM_READS_KEPT``: one entry per user and report, however many
        # streams showed it.
        self._stream_reads: dict[tuple[str, str], None] = {}
        self._stream_reads_lock = threading.Lock()

    def alerts_after(self, after: int, limit: int = 100) -> list[dict[str, Any]]:
        """Flash reports after ``after``, in seq order, from both files where there are two.

        The flash file is read first: a report that moves meanwhile is then found in the main
        file, never missed; one found in both is the same row (its seq kept by the move)."""
        found: dict[int, dict[str, Any]] = {}
        for store in reversed(self.outbox.files()):
            a, i = store.alerts, store.items
            with reading(store.engine) as conn:
                rows = conn.execute(
                    select(a, i.c.item_id, i.c.label, i.c.envelope, i.c.peer, i.c.agreement)
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
        for store in self.outbox.files():
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
        with reading(self.outbox.main.engine) as conn:
            history = self.casework.reclassifications(conn, [r["alert_id"] for r in rows])
        shown: list[tuple[int, dict[str, Any]]] = []
        for row in rows:
            sealed = Label.from_bytes(row["label"].encode("utf-8"))
            label = records.effective_label(sealed, history.get(row["alert_id"], []))
            if self.reading.may_read(subject, label):
                payload = functools.partial(self._opened_payload, row)
                shown.append((row["seq"], self._alert_view(row, label, payload)))
        if shown and self.users.authenticate(token) is None:
            return None
        return rows[-1]["seq"], shown

    def fresh_alert_events_for(
        self, asks: Sequence[tuple[policy.Subject, str, Sequence[FreshAlert]]]
    ) -> list[list[tuple[int, dict[str, Any]]] | None]:
        """``alert_events`` for reports just committed by this process, for many streams at once:
        no read back, no second open, one token lookup, each report's event made once.

        Each (subscriber, token, reports) gets the events of the reports it may read (each checked
        here, where the text is put in), or None once its token is revoked."""
        valid = self.users.live_tokens({token for _, token, alerts in asks if alerts})
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
                    permit = decided[(weighed, a.seq)] = self.reading.may_read(subject, a.label)
                if permit:
                    view = views.get(a.seq)
                    if view is None:
                        view = views[a.seq] = self._alert_view(a.fields(), a.label, _given(a.payload))
                    shown.append((a.seq, view))
            out.append(shown)
        return out

    def _opened_payload(self, row: Any) -> bytes:
        return self.reading.open_stored(row)[1]

    def _alert_view(self, alert: dict[str, Any], label: Label, payload: Callable[[], bytes]) -> dict[str, Any]:
        """One flash report as a subscriber who may read it sees it: in its current marking."""
        agreement = self.agreements.by_id(label.agreement)
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

    def record_alert_reads_for(self, shown: Sequence[tuple[policy.Subject, Sequence[dict[str, Any]]]]) -> None:
        """Flash text shown on streams is a read like any other (R9): one entry per user and report,
        for many streams at once, in one transaction.

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
                detail = {"via": "alerts/stream", "effect": "permit"}
                rows = [entry(now, "read", user, item, detail) for user, item in fresh]
                with gate.begin(self.outbox.flash.engine) as conn:
                    self.ledger.log(conn, "flash", rows)  # the stream's own lane: never behind a bulk transaction
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
        places: list[tuple[Engine, Table]] = [(store.engine, store.queue) for store in reversed(self.outbox.files())]
        places.append((self.outbox.main.engine, t.ledger_entries))
        for engine, table in places:
            with reading(engine) as conn:
                rows = conn.execute(
                    select(table.c.actor, table.c.item_id).where(
                        table.c.kind == "read", table.c.actor.in_(users), table.c.item_id.in_(items)
                    )
                )
                found.update((actor, item) for actor, item in rows)
        return found & set(pairs)


def _given(payload: bytes) -> Callable[[], bytes]:
    return lambda: payload
