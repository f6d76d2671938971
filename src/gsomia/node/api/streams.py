"""The alert stream (R17): the broker that hands this process's flash reports to the open
streams from memory, and the server-sent events one subscriber's stream is made of."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from fastapi import Request
from sse_starlette.sse import EventSourceResponse

from gsomia.core import policy
from gsomia.node.service import FreshAlert, Node


class Subscription:
    """One open alert stream, as the broker wakes it, and the last report it has looked at."""

    def __init__(self, cursor: int) -> None:
        self.event = asyncio.Event()
        self.cursor = cursor  # only ever moves forward

    async def wait(self, timeout: float) -> None:
        """Until woken (at once if woken since ``event`` was cleared), or ``timeout`` passed."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):  # no task of its own, as wait_for would make
                await self.event.wait()


class Broker:
    """Hands flash reports this process commits to its alert streams, from memory (R17).

    A stream shows what is published here without reading it back. A publication wakes only
    the streams whose subscriber may read one of its reports (``readable``, decided here once
    per subject and report): a stream with nothing to show is not woken, makes no database
    query and no thread hop, however many are open. What other processes of the node store,
    streams read from the database when told (``wake``, from the other process) or when the
    one poll of this process (``watch``) sees a report memory lacks.
    """

    RECENT = 256
    DECISIONS_KEPT = 4096

    def __init__(self) -> None:
        self._recent: list[FreshAlert] = []  # ordered by seq, the last ``RECENT``
        self.stored = 0  # moves when the database may hold reports memory lacks
        self.top = 0  # the highest report seq this process has seen
        self.relay: Callable[[], None] | None = None  # tells the node's other process (``node/link.py``)
        # Whether a subscriber may read a report (``Node.may_read``); None: every stream is woken.
        self.readable: Callable[[policy.Subject, FreshAlert], bool] | None = None
        self.open: dict[str, int] = {}  # open streams by user
        self._streams: dict[policy.Subject, set[Subscription]] = {}
        self._decisions: dict[tuple[int, policy.Subject], bool] = {}
        self._weighed: dict[policy.Subject, policy.Subject] = {}  # each subscriber as the policy weighs it
        self._poll: asyncio.Task[None] | None = None
        # The streams woken by one publication share one thread hop to make their events
        # (``Node.fresh_alert_events_for``) and one to enter their reads (``record_alert_reads_for``).
        self.show: Callable[[list[tuple[policy.Subject, str, Sequence[FreshAlert]]]], Awaitable[list[Any]]] | None
        self.show = None
        self.record: Callable[[list[tuple[policy.Subject, Sequence[dict[str, Any]]]]], Awaitable[None]] | None
        self.record = None
        self._showing: list[tuple[tuple[policy.Subject, str, Sequence[FreshAlert]], asyncio.Future[Any]]] = []
        self._recording: list[tuple[tuple[policy.Subject, Sequence[dict[str, Any]]], asyncio.Future[Any]]] = []
        self._running: set[asyncio.Future[Any]] = set()
        self.closing = False  # the node is stopping: streams end, so the server's shutdown need not cancel them

    def close(self) -> None:
        """End every alert stream now, as a finished response: a stream the server cancelled at the end
        of its graceful shutdown would leave a CancelledError traceback in the node's log."""
        self.closing = True
        for streams in self._streams.values():
            for stream in streams:
                stream.event.set()

    def publish(self, alerts: Sequence[FreshAlert] = ()) -> None:
        if alerts:
            self._recent = sorted([*self._recent, *alerts], key=lambda a: a.seq)[-self.RECENT :]
            self.top = max(self.top, self._recent[-1].seq)
            decide = self.readable
            for who, streams in self._streams.items():
                if decide is None or any(self.may_read(who, a, decide) for a in alerts):
                    for stream in streams:
                        stream.event.set()
                    continue
                for stream in streams:  # nothing it may read: a stream caught up moves past, unwoken
                    passed = self.after(stream.cursor)
                    if passed is not None and not any(self.may_read(who, a, decide) for a in passed):
                        stream.cursor = max(stream.cursor, passed[-1].seq) if passed else stream.cursor
                    else:
                        stream.event.set()
        else:  # a record, not a report: streams look in the database (a reclassification, R6)
            self.wake()
        if self.relay is not None:
            self.relay()

    def wake(self) -> None:
        """Streams look in the database: another process of the node stored something."""
        self.stored += 1
        for streams in self._streams.values():
            for stream in streams:
                stream.event.set()

    def subscribe(self, who: policy.Subject, cursor: int) -> Subscription:
        stream = Subscription(cursor)
        self._weighed.setdefault(who, policy.as_decided(who))
        self._streams.setdefault(who, set()).add(stream)
        return stream

    def unsubscribe(self, who: policy.Subject, stream: Subscription) -> None:
        streams = self._streams.get(who, set())
        streams.discard(stream)
        if not streams:
            self._streams.pop(who, None)
            self._weighed.pop(who, None)

    async def events_for(
        self, who: policy.Subject, token: str, alerts: Sequence[FreshAlert]
    ) -> list[tuple[int, dict[str, Any]]] | None:
        """``Node.fresh_alert_events`` for one stream, in one hop with the other streams asking now."""
        assert self.show is not None
        return await self._batched(self._showing, (who, token, alerts), self.show)  # type: ignore[no-any-return]

    def reads(self, who: policy.Subject, events: Sequence[dict[str, Any]]) -> asyncio.Future[Any]:
        """``Node.record_alert_reads`` for one stream, in one hop with the other streams recording now."""
        assert self.record is not None
        return self._batched(self._recording, (who, events), self.record)

    def _batched(self, queue: list[Any], ask: Any, run: Callable[[list[Any]], Awaitable[Any]]) -> asyncio.Future[Any]:
        """A future of ``ask``'s part of one ``run`` for every ask queued until the loop comes round."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        queue.append((ask, future))
        if len(queue) == 1:  # run once the streams woken with this one have asked too
            loop.call_soon(self._flush, queue, run)
        return future

    def _flush(self, queue: list[Any], run: Callable[[list[Any]], Awaitable[Any]]) -> None:
        batch = queue[:]
        queue.clear()
        task = asyncio.ensure_future(run([ask for ask, _ in batch]))  # noqa: RUF006 - held in _running
        self._running.add(task)

        def settle(task: asyncio.Future[Any]) -> None:
            self._running.discard(task)
            for n, (_, future) in enumerate(batch):
                if future.done():  # its stream is gone
                    continue
                if task.cancelled():
                    future.cancel()
                elif (exc := task.exception()) is not None:
                    future.set_exception(exc)
                else:
                    results = task.result()
                    future.set_result(None if results is None else results[n])

        task.add_done_callback(settle)

    def after(self, seq: int) -> list[FreshAlert] | None:
        """The published reports after ``seq``, in order, or None when memory cannot tell.

        None when their numbers leave a gap: another process of the node stored the missing
        ones, or they fell out of memory. The database has them all."""
        fresh = self._recent[bisect.bisect_right(self._recent, seq, key=lambda a: a.seq) :]
        if any(a.seq != seq + 1 + n for n, a in enumerate(fresh)):
            return None
        return fresh

    def may_read(
        self, who: policy.Subject, alert: FreshAlert, decide: Callable[[policy.Subject, FreshAlert], bool]
    ) -> bool:
        """``decide`` for this subscriber and report, once for all subscribers the policy weighs
        alike (``policy.as_decided``: the same party, role, clearance and need-to-know)."""
        weighed = self._weighed.get(who)
        if weighed is None:
            weighed = policy.as_decided(who)
        key = (alert.seq, weighed)
        found = self._decisions.get(key)
        if found is None:
            if len(self._decisions) >= self.DECISIONS_KEPT:
                self._decisions.clear()
            found = self._decisions[key] = decide(who, alert)
        return found

    def hold(self, user: str, limit: int) -> bool:
        """Count one more open stream of ``user``, unless ``limit`` are open already."""
        if self.open.get(user, 0) >= limit:
            return False
        self.open[user] = self.open.get(user, 0) + 1
        return True

    def let_go(self, user: str) -> None:
        left = self.open.get(user, 0) - 1
        if left > 0:
            self.open[user] = left
        else:
            self.open.pop(user, None)

    def watch(self, latest: Callable[[], Awaitable[int]], every: float = 1.0) -> None:
        """Poll ``latest`` (the highest report seq stored) while any stream is open: one query a
        period for all streams, which read the database only when it found something new."""
        if self._poll is None or self._poll.done():
            self._poll = asyncio.ensure_future(self._watch(latest, every))

    async def _watch(self, latest: Callable[[], Awaitable[int]], every: float) -> None:
        while self.open:
            await asyncio.sleep(every)
            try:
                top = await latest()
            except Exception as exc:  # the database away for a moment: the streams wait for the next look
                logging.getLogger("gsomia.streams").warning("alert streams: no look at the database: %s", exc)
                continue
            if top > self.top:
                self.top = top
                self.wake()


class AlertStream(EventSourceResponse):
    """An alert stream that gives its place back (``Broker.let_go``) however it ends."""

    def __init__(self, content: Any, release: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._release = release

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


def connect(broker: Broker, node: Node) -> None:
    """``broker`` asks ``node`` who may read a report, and has it make and record the events shown."""

    def readable(subject: policy.Subject, alert: FreshAlert) -> bool:
        return node.may_read(subject, alert.label)

    broker.readable = readable
    broker.show = lambda asks: node.lanes.run("flash", node.fresh_alert_events_for, asks)
    broker.record = lambda shown: node.lanes.run("flash", node.record_alert_reads_for, shown)


class AlertFeed:
    """The events of one subscriber's stream: the reports it may read after ``start``, in order.

    ``Subscription.cursor`` is the last report looked at, shown or not (the broker moves it
    past reports this subscriber may not read). Only shown reports carry an id: a subscriber
    learns nothing of those it may not read (principle 5)."""

    def __init__(
        self, request: Request, node: Node, broker: Broker, who: policy.Subject, token: str, start: int
    ) -> None:
        self.request, self.node, self.broker = request, node, broker
        self.who, self.token, self.start = who, token, start
        self.recording: list[asyncio.Future[None]] = []
        # Each stream keeps its own rhythm: hundreds opened at once must not all wake, or be
        # pinged, in the same instant, beside a flash report (jitter, not secrecy).
        self.quiet = random.uniform(50.0, 70.0)  # noqa: S311

    async def events(self) -> AsyncIterator[dict[str, str]]:
        subscription = self.broker.subscribe(self.who, self.start)
        try:
            async for event in self._events(subscription):
                yield event
        finally:  # every text shown is on the ledger before the stream is done
            self.broker.unsubscribe(self.who, subscription)
            for task in self.recording:
                await asyncio.shield(task)

    async def _events(self, subscription: Subscription) -> AsyncIterator[dict[str, str]]:
        broker, node = self.broker, self.node
        stored = None  # the broker's ``stored`` when this stream last read the database
        while not broker.closing and not await self.request.is_disconnected():
            subscription.event.clear()  # what is published from here on wakes the wait below
            cursor = subscription.cursor
            fresh = None if stored != broker.stored else broker.after(cursor)
            if fresh is None:  # one hop to a flash thread for the lot
                stored = broker.stored
                page = await node.lanes.run("flash", node.alert_events, self.who, self.token, cursor)
                if page is None:
                    return  # revoked while subscribed: the stream ends before anything more is shown
                looked, shown = page
                if looked != cursor:
                    stored = None  # a page from the database: there may be more
                subscription.cursor = max(subscription.cursor, looked)
            else:
                found = await self._from_memory(subscription, fresh)
                if found is None:
                    return
                shown = found
            for seq, event in shown:
                node.trace.mark(event["alert_id"], "stream.shown")
                yield {"id": str(seq), "event": "flash", "data": json.dumps(event, ensure_ascii=False)}
            if shown:  # recorded once sent, beside the stream: the ledger write may wait behind bulk work
                self.recording[:] = [task for task in self.recording if not task.done() or task.result()]
                self.recording.append(broker.reads(self.who, [e for _, e in shown]))
            if stored is None or fresh:
                continue
            # Until a publication here it may read, a wake from the node's other process or its
            # poll, or a while: a quiet stream asks nothing of the database.
            await subscription.wait(self.quiet)

    async def _from_memory(
        self, subscription: Subscription, fresh: list[FreshAlert]
    ) -> list[tuple[int, dict[str, Any]]] | None:
        """The events of the reports published here since the cursor that this subscriber may
        read, or None if its token was revoked meanwhile."""
        readable = self.broker.readable
        assert readable is not None  # ``connect`` set it
        for a in fresh:
            self.node.trace.mark(a.alert_id, "stream.woke")
        # Decided here, once per subject and report: a stream with nothing to show makes no thread hop.
        visible = [a for a in fresh if self.broker.may_read(self.who, a, readable)]
        if fresh:
            subscription.cursor = max(subscription.cursor, fresh[-1].seq)
        return await self.broker.events_for(self.who, self.token, visible) if visible else []
