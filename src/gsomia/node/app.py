"""HTTP surfaces of a node: the user API (tokens) and the peer API (mutual TLS).

Thin: parse, authenticate, call ``Node``, answer. Refusals are RFC 9457 problem
documents naming the rules behind them. Blocking database work runs in threads.
"""

import asyncio
import base64
import binascii
import bisect
import contextlib
import json
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse
from fastapi.security import HTTPBearer
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from sse_starlette.sse import EventSourceResponse
from starlette.datastructures import Headers

from gsomia.core import policy
from gsomia.core.agreement import lifecycle
from gsomia.core.envelope import EnvelopeError
from gsomia.core.errors import GsomiaError, NotFound, Refused
from gsomia.node import docs, heads, intake, problems
from gsomia.node import peer as peer_proto
from gsomia.node.clock import SimulatedClock
from gsomia.node.delivery import Delivery
from gsomia.node.problems import Problem
from gsomia.node.service import FreshAlert, ItemSpec, Node


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


class _Stream(EventSourceResponse):
    """An alert stream that gives its place back (``Broker.let_go``) however it ends."""

    def __init__(self, content: Any, release: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._release = release

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ItemIn(Strict):
    to: str = Field(min_length=3, max_length=3, description="Recipient party (ISO 3166-1 alpha-3).")
    classification: str = Field(min_length=1, max_length=64, description="Originator's national marking.")
    payload_b64: str | None = Field(default=None, max_length=16 << 20)
    text: str | None = Field(default=None, max_length=1 << 20)
    releasable_to: list[str] = Field(default_factory=list, max_length=8)
    purposes: list[str] = Field(default_factory=list, max_length=16)
    compartments: list[str] = Field(default_factory=list, max_length=16)

    def spec(self) -> ItemSpec:
        if (self.payload_b64 is None) == (self.text is None):
            raise Problem(400, "Invalid request", "give exactly one of payload_b64 and text")
        if self.payload_b64 is not None:
            try:
                payload = base64.b64decode(self.payload_b64, validate=True)
            except (binascii.Error, ValueError):
                raise Problem(400, "Invalid request", "payload_b64 is not base64") from None
        else:
            payload = (self.text or "").encode("utf-8")
        return ItemSpec(
            self.to,
            self.classification,
            payload,
            tuple(self.releasable_to),
            tuple(self.purposes),
            tuple(self.compartments),
        )


class ProvideIn(Strict):
    items: list[ItemIn] = Field(min_length=1, max_length=1000)


class AlertIn(Strict):
    to: str = Field(min_length=3, max_length=3)
    classification: str = Field(min_length=1, max_length=64)
    text: str = Field(min_length=1, max_length=65536)
    compartments: list[str] = Field(default_factory=list, max_length=16)
    purposes: list[str] = Field(default_factory=list, max_length=16)


def _plausible(at: datetime) -> datetime:
    """An instant a note or an alarm can carry: any zone can still spell it (years 1900 to 9000)."""
    if at.year < 1900 or at.year > 9000:
        raise ValueError("an instant between the years 1900 and 9000")
    return at


# Instants from a request: the year 9999 in one zone is past the last datetime in another.
Instant = Annotated[datetime, AfterValidator(_plausible)]
AwareInstant = Annotated[AwareDatetime, AfterValidator(_plausible)]


class NoteIn(Strict):
    to: str = Field(min_length=3, max_length=3, description="The other party to the agreement.")
    type: Literal["termination_notice", "suspend_notice", "resume_notice", "withdraw_notice"]
    at: Instant | None = None
    conditions: list[str] = Field(default_factory=list, max_length=32)
    ref: str | None = Field(default=None, max_length=4096)


class RecordIn(Strict):
    kind: Literal[
        "consent_request",
        "consent_decision",
        "release",
        "compromise_report",
        "investigation",
        "reproduction",
        "translation",
        "destruction",
        "reclassification",
    ]
    item_id: str = Field(min_length=36, max_length=36)
    recipient: str | None = Field(default=None, max_length=64)
    purpose: str | None = Field(default=None, max_length=256)
    request_id: str | None = Field(default=None, max_length=36)
    report_id: str | None = Field(default=None, max_length=36)
    grant: bool | None = None
    reason: str | None = Field(default=None, max_length=4096)
    nature: Literal["loss", "compromise", "possible_compromise"] | None = None
    description: str | None = Field(default=None, max_length=16384)
    results: str | None = Field(default=None, max_length=16384)
    remedial_steps: str | None = Field(default=None, max_length=16384)
    closed: bool | None = None
    classification: str | None = Field(default=None, max_length=64)
    location: str | None = Field(default=None, max_length=256)
    language: str | None = Field(default=None, max_length=35)
    copy_id: str | None = Field(default=None, max_length=36)


class PeerNoteIn(Strict):
    """A diplomatic note as the partner's node delivers it (``Node.record_note`` makes it)."""

    note_id: str = Field(min_length=36, max_length=36)
    agreement: str = Field(min_length=1, max_length=128)
    at: AwareInstant
    by: str = Field(min_length=3, max_length=3)
    type: Literal["termination_notice", "suspend_notice", "resume_notice", "withdraw_notice"]
    conditions: list[Annotated[str, Field(max_length=4096)]] = Field(default_factory=list, max_length=32)
    ref: str | None = Field(default=None, max_length=4096)
    recorded_by: str | None = Field(default=None, max_length=128)


class PeerAlarmIn(Strict):
    """An alarm as the partner's node raises it (``NodeLedger.raise_alarm``)."""

    alarm_id: str = Field(min_length=1, max_length=36)
    at: AwareInstant
    kind: str = Field(min_length=1, max_length=64)
    about: str = Field(max_length=256)
    raised_by: str = Field(min_length=3, max_length=3)
    detail: str = Field(max_length=16384)


def _json(body: bytes, expected: str) -> Any:
    """A partner's body as JSON; nested past the parser's depth is as malformed as a stray byte."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise Problem(400, "Invalid request", expected) from None


def _peer_message(model: type[Strict], name: str, body: bytes) -> dict[str, Any]:
    """The partner's JSON object, checked field by field: a 422 problem names the first bad one."""
    data = _json(body, f"a{'n' if name[0] in 'aeiou' else ''} {name} is a JSON object")
    try:
        model.model_validate(data)
    except ValidationError as exc:
        raise Problem(422, "Invalid message", problems.validation_detail(exc.errors(), name)[0]) from None
    return data  # type: ignore[no-any-return]  # a dict: the model took it


class ClockIn(Strict):
    at: Instant


def _refusal(exc: Refused) -> Problem:
    return Problem(
        403,
        "Denied",
        str(exc),
        decision="deny",
        reasons=[{"rule": r.rule, "text": r.text} for r in exc.shown.reasons],  # the ledger has the full text
    )


# Sequence numbers are BIGINT in PostgreSQL: a larger cursor is bad input, not an overflow.
MAX_SEQ = (1 << 63) - 1
_EVENT_ID = re.compile(r"[0-9]{1,19}")


def _event_id(value: str | None) -> int:
    """The stream's ``Last-Event-ID``: the sequence number of the last event the client saw."""
    if not value:
        return 0
    if not _EVENT_ID.fullmatch(value) or int(value) > MAX_SEQ:
        raise Problem(400, "Invalid request", "Last-Event-ID: expected an event id this stream sent")
    return int(value)


def _aware(at: datetime | None, name: str) -> datetime | None:
    if at is not None and at.tzinfo is None:
        raise Problem(400, "Invalid request", f"{name} must carry a UTC offset")
    return at


def _parse_provide(body: bytes) -> list[ItemSpec]:
    try:
        parsed = ProvideIn.model_validate_json(body)
    except ValidationError as exc:
        detail, errors = problems.validation_detail(exc.errors(), "body")
        raise Problem(400, "Invalid request", detail, errors=errors) from None
    return [i.spec() for i in parsed.items]


FLASH_INLINE = 64 * 1024  # bytes of a flash delivery parsed on the event loop itself


_ENVELOPES = "expected {lane, envelopes: [base64]}"


def _parse_envelopes(body: bytes) -> tuple[str, list[bytes]]:
    data = _json(body, _ENVELOPES)
    lane = data["lane"]
    if lane not in ("flash", "bulk") or not isinstance(data["envelopes"], list):
        raise ValueError("bad lane or envelopes")
    return lane, [base64.b64decode(e, validate=True) for e in data["envelopes"]]


# Paths a client may ask for without a token: the node's liveness and the API's own description.
_OPEN_USER_PATHS = ("/health", "/openapi.json", *docs.OPEN_PATHS)
_TOKEN_CHARS = 256  # tokens are 43 characters; a longer one is not looked up
_bearer = HTTPBearer(auto_error=False, description="The token `gsomia user add` printed.")


def _user_limit(method: str, path: str) -> int:
    return intake.PROVIDE_BODY_LIMIT if method == "POST" and path == "/items" else intake.USER_BODY_LIMIT


def _peer_limit(method: str, path: str) -> int:
    return intake.PEER_BODY_LIMIT if path == "/peer/items" else intake.PEER_MESSAGE_LIMIT


def create_user_app(node: Node, delivery: Delivery, broker: Broker) -> FastAPI:
    app = FastAPI(title=f"gsomia node {node.party}: user API", version="1", docs_url=None, redoc_url=None)
    problems.install(app)
    docs.install(app)  # served from the package: no CDN

    def readable(subject: policy.Subject, alert: FreshAlert) -> bool:
        return node.may_read(subject, alert.peer, alert.label)

    broker.readable = readable
    broker.show = lambda asks: node.lanes.run("flash", node.fresh_alert_events_for, asks)
    broker.record = lambda shown: node.lanes.run("flash", node.record_alert_reads_for, shown)

    async def check(scope: intake.Scope) -> dict[str, Any]:
        token = intake.bearer_token(scope)
        if token is None:
            raise intake.Refusal(401, "Unauthorized", "send Authorization: Bearer <token>")
        found = None
        if len(token) <= _TOKEN_CHARS:
            found = await node.lanes.run("control", node.authenticate, token)
        if found is None:
            raise intake.Refusal(401, "Unauthorized", "unknown or revoked token")
        return {"subject": found, "token": token}

    app.add_middleware(intake.Intake, check=check, limit=_user_limit, open_paths=_OPEN_USER_PATHS)

    async def subject(request: Request, _: Annotated[Any, Depends(_bearer)] = None) -> policy.Subject:
        found = getattr(request.state, "subject", None)
        if found is None:  # an open path: the intake asked for nothing
            raise Problem(401, "Unauthorized", "send Authorization: Bearer <token>")
        return found  # type: ignore[no-any-return]

    Who = Annotated[policy.Subject, Depends(subject)]  # noqa: N806 - a type alias

    async def call(fn: Any, *args: Any, lane: str = "bulk", **kwargs: Any) -> Any:
        try:
            return await node.lanes.run(lane, fn, *args, **kwargs)
        except Refused as exc:
            raise _refusal(exc) from None
        except NotFound as exc:
            raise Problem(404, "Not found", str(exc)) from None
        except EnvelopeError as exc:  # a stored item that no longer verifies: an integrity failure, not bad input
            raise Problem(409, "Integrity failure", str(exc), error=type(exc).__name__) from None
        except GsomiaError as exc:
            raise Problem(
                409 if "note" in type(exc).__name__.lower() or "History" in type(exc).__name__ else 400,
                "Refused",
                str(exc),
                error=type(exc).__name__,
            ) from None

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"party": node.party, "now": node.clock.now().isoformat(), "simulated_clock": node.clock.simulated}

    @app.get("/status")
    async def status(who: Who) -> dict[str, Any]:
        now = node.clock.now()
        return {
            code: {
                "agreement": node.agreement(code).id,
                **lifecycle.as_json(node.agreement(code), node.status(code, now)),
            }
            for code in node.config.peers
        }

    @app.post(
        "/items",
        status_code=201,
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": ProvideIn.model_json_schema()}},
            }
        },
    )
    async def provide(request: Request, who: Who) -> dict[str, Any]:
        # Parsed and validated in the bulk pool: 500 items of JSON must not hold the
        # event loop while a flash report waits to be read (R17).
        body = await request.body()  # read by the intake, within its limit
        specs = await node.lanes.run("bulk", _parse_provide, body)
        results = await call(node.provide, who, specs, "bulk")
        for code in {s.to for s in specs}:
            delivery.notify(code, "bulk")
        return {"items": results}

    @app.get("/items")
    async def list_items(
        who: Who, after: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0, limit: Annotated[int, Query(ge=1, le=1000)] = 100
    ) -> dict[str, Any]:
        rows, cursor = await call(node.list_items, who, after, limit)
        return {"items": rows, "next": cursor}

    @app.get("/items/{item_id}")
    async def read_item(item_id: str, who: Who, purpose: str | None = None) -> dict[str, Any]:
        return await call(node.read_item, who, item_id, purpose)  # type: ignore[no-any-return]

    @app.post("/alerts", status_code=201)
    async def alert(body: AlertIn, who: Who) -> dict[str, Any]:
        if who.role not in (policy.Role.DUTY_OFFICER, policy.Role.SECURITY_AUTHORITY):
            raise Problem(403, "Denied", "R17: flash reports are sent by duty officers", decision="deny")
        spec = ItemSpec(
            body.to, body.classification, body.text.encode("utf-8"), (), tuple(body.purposes), tuple(body.compartments)
        )
        # Claimed at commit only where this process delivers the flash lane; else the node's
        # flash process is told and claims it (``node/link.py``). Not while stopping: its
        # workers have given back their rows already, and this one would wait out the lease.
        here = "flash" in delivery.lanes and not delivery.stopping
        result, claimed, fresh = await call(
            node.provide_alert, who, spec, delivery.worker_id if here else None, lane="flash"
        )
        if here:
            delivery.hand_over(body.to, claimed)
        broker.publish(fresh)
        return {"alert": result}

    @app.get("/alerts/stream")
    async def stream(
        request: Request,
        who: Who,
        last_event_id: Annotated[str | None, Header()] = None,
        after: Annotated[int | None, Query(ge=0, le=MAX_SEQ)] = None,
    ) -> EventSourceResponse:
        start = after if after is not None else _event_id(last_event_id)

        token = (request.headers.get("authorization") or "").removeprefix("Bearer ").strip()
        limit = node.config.max_streams_per_user
        if not broker.hold(who.id, limit):
            raise Problem(
                429, "Too many streams", f"{who.id} holds {limit} open alert streams already; close one first"
            )
        broker.watch(lambda: node.lanes.run("flash", node.latest_alert_seq))

        async def events() -> Any:
            subscription = broker.subscribe(who, start)
            try:
                async for event in _events(subscription):
                    yield event
            finally:  # every text shown is on the ledger before the stream is done
                broker.unsubscribe(who, subscription)
                for task in recording:
                    await asyncio.shield(task)

        recording: list[asyncio.Future[None]] = []

        async def _events(subscription: Subscription) -> Any:
            # ``subscription.cursor``: the last report looked at, shown or not (the broker moves it
            # past reports this subscriber may not read). Only shown reports carry an id: a
            # subscriber learns nothing of those it may not read (principle 5).
            stored = None  # the broker's ``stored`` when this stream last read the database
            while not broker.closing and not await request.is_disconnected():
                subscription.event.clear()  # what is published from here on wakes the wait below
                cursor = subscription.cursor
                fresh = None if stored != broker.stored else broker.after(cursor)
                if fresh is None:  # one hop to a flash thread for the lot
                    stored = broker.stored
                    page = await node.lanes.run("flash", node.alert_events, who, token, cursor)
                    if page is None:
                        return  # revoked while subscribed: the stream ends before anything more is shown
                    looked, shown = page
                    if looked != cursor:
                        stored = None  # a page from the database: there may be more
                    subscription.cursor = max(subscription.cursor, looked)
                else:
                    for a in fresh:
                        node.trace.mark(a.alert_id, "stream.woke")
                    # Decided here, once per subject and report: a stream with nothing to show makes no thread hop.
                    visible = [a for a in fresh if broker.may_read(who, a, readable)]
                    if fresh:
                        subscription.cursor = max(subscription.cursor, fresh[-1].seq)
                    found = await broker.events_for(who, token, visible) if visible else []
                    if found is None:
                        return
                    shown = found
                for seq, event in shown:
                    node.trace.mark(event["alert_id"], "stream.shown")
                    yield {"id": str(seq), "event": "flash", "data": json.dumps(event, ensure_ascii=False)}
                if shown:  # recorded once sent, beside the stream: the ledger write may wait behind bulk work
                    recording[:] = [task for task in recording if not task.done() or task.result()]
                    recording.append(broker.reads(who, [e for _, e in shown]))
                if stored is None or fresh:
                    continue
                # Until a publication here it may read, a wake from the node's other process or its
                # poll, or a while: a quiet stream asks nothing of the database.
                await subscription.wait(quiet)

        # Each stream keeps its own rhythm: hundreds opened at once must not all wake, or be
        # pinged, in the same instant, beside a flash report (jitter, not secrecy).
        quiet = random.uniform(50.0, 70.0)  # noqa: S311
        return _Stream(events(), lambda: broker.let_go(who.id), ping=random.uniform(12.0, 18.0))  # noqa: S311

    @app.post("/notes", status_code=201)
    async def note(body: NoteIn, who: Who) -> dict[str, Any]:
        result = await call(node.record_note, who, body.to, body.type, _aware(body.at, "at"), body.conditions, body.ref)
        delivery.notify(body.to, "flash")
        return {"note": result}

    @app.post("/records", status_code=201)
    async def make_record(body: RecordIn, who: Who) -> dict[str, Any]:
        fields = body.model_dump(exclude={"kind", "item_id"}, exclude_none=True)
        result = await call(node.make_record, who, body.kind, body.item_id, fields)
        delivery.notify(result["peer"], "flash" if body.kind in ("compromise_report", "investigation") else "bulk")
        return {k: v for k, v in result.items() if k != "peer"}

    @app.get("/register/{item_id}")
    async def register(item_id: str, who: Who) -> dict[str, Any]:
        return await call(node.register, who, item_id)  # type: ignore[no-any-return]

    @app.get("/records")
    async def cases(who: Who, item_id: str | None = None) -> dict[str, Any]:
        return {"cases": await call(node.cases, who, item_id)}

    @app.get("/ledger/head")
    async def head(who: Who) -> dict[str, Any]:
        # Its size counts every entry, denied reads of items a user may not know of among them.
        if who.role not in (policy.Role.SECURITY_AUTHORITY, policy.Role.AUDITOR):
            raise Problem(403, "Denied", "R11: the ledger's head is for the security authority and auditors")
        return await node.lanes.run("control", node.own_head)

    @app.get("/ledger/alarms")
    async def alarms(who: Who) -> dict[str, Any]:
        if who.role not in (policy.Role.SECURITY_AUTHORITY, policy.Role.AUDITOR):
            raise Problem(403, "Denied", "R11: alarms are for the security authority and auditors")
        return {"alarms": await node.lanes.run("control", node.alarms)}

    @app.get("/keys")
    async def keys(who: Who) -> dict[str, Any]:
        if who.role not in (policy.Role.SECURITY_AUTHORITY, policy.Role.AUDITOR):
            raise Problem(403, "Denied", "R8: the key chains are for the security authority and auditors")
        return {"keys": node.key_chains()}

    @app.get("/outbox")
    async def outbox(who: Who) -> dict[str, Any]:
        return {"pending": await node.lanes.run("control", node.pending)}

    @app.post("/demo/clock")
    async def set_clock(body: ClockIn, who: Who) -> dict[str, Any]:
        if not isinstance(node.clock, SimulatedClock):
            raise Problem(404, "Not found", "the clock can only be moved in demo mode")
        if who.role is not policy.Role.SECURITY_AUTHORITY:
            raise Problem(403, "Denied", "only the security authority moves the demo clock")
        node.clock.set(_aware(body.at, "at") or body.at)
        return {"now": node.clock.now().isoformat()}

    return app


# The peer API reads raw bodies (their signature covers the exact bytes): their shapes, for
# the OpenAPI document a partner's developers and the fuzz tests read.
_ENVELOPES_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["lane", "envelopes"],
    "properties": {
        "lane": {"type": "string", "enum": ["flash", "bulk"]},
        "envelopes": {"type": "array", "items": {"type": "string", "contentEncoding": "base64"}},
    },
}
_RECORD_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["body", "signature"],
    "properties": {"body": {"type": "object"}, "signature": {"type": "string", "contentEncoding": "base64"}},
}


def _body_schema(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def create_peer_app(node: Node, broker: Broker, witness: Any = None, keys: Any = None) -> FastAPI:
    app = FastAPI(title=f"gsomia node {node.party}: peer API", version="1", docs_url=None, redoc_url=None)
    problems.install(app)

    replays = peer_proto.ReplayGuard()

    async def check(scope: intake.Scope) -> dict[str, Any]:
        """The partner's headers, before its body is read: a known party, fresh, its current key."""
        party = intake.header(scope, "x-gsomia-party") or ""
        if party not in node.config.peers:
            raise intake.Refusal(403, "Unknown peer", f"{party[:16] or 'no party'} is not a peer of {node.party}")
        reason = peer_proto.check_headers(node.peer_chains[party], Headers(scope=scope), time.time())
        if reason:
            if isinstance(reason, peer_proto.UnknownKey) and keys is not None:
                keys.soon(party)  # it may have rotated its key: learn the chain; the sender retries
            raise intake.Refusal(401, "Unauthenticated", reason)
        return {"party": party}

    app.add_middleware(intake.Intake, check=check, limit=_peer_limit, open_paths=("/peer/keys", "/peer/health"))

    async def authenticated(request: Request) -> tuple[str, bytes]:
        body = await request.body()  # read by the intake, within its limit, after the headers passed
        party = str(request.state.party)
        now = time.time()
        headers = request.headers
        target = peer_proto.received_target(request.scope)
        # The headers passed the intake's check (``check``) before the body was read.
        reason = peer_proto.verify_signature(node.peer_chains[party], request.method, target, headers, body)
        if reason:
            raise Problem(401, "Unauthenticated", reason)
        if not replays.fresh(headers["x-gsomia-signature"], headers["x-gsomia-timestamp"], now):
            raise Problem(401, "Unauthenticated", "this signed request was received before (a replay)")
        if witness is not None:
            witness.observe(party, peer_proto.decode_head(headers.get(peer_proto.HEAD_HEADER)))
        return party, body

    async def answer(receipt: dict[str, Any], body: bytes) -> JSONResponse:
        import hashlib

        head = await heads.for_peer(node)
        receipt = {**receipt, "request_sha256": hashlib.sha256(body).hexdigest(), "tree_head": head}
        _, signature = peer_proto.sign_receipt(node.config.key, receipt)
        return JSONResponse({"receipt": receipt, "signature": signature, "kid": node.public.kid})

    @app.post("/peer/items", openapi_extra=_body_schema(_ENVELOPES_SCHEMA))
    async def items(request: Request) -> JSONResponse:
        party, body = await authenticated(request)
        hint = "flash" if request.headers.get("x-gsomia-lane") == "flash" else "bulk"  # scheduling only
        try:
            if hint == "flash" and len(body) <= FLASH_INLINE:  # a report or two: parsed here, without a thread hop
                lane, envelopes = _parse_envelopes(body)
            else:
                lane, envelopes = await node.lanes.run(hint, _parse_envelopes, body)
        except (ValueError, KeyError, TypeError):
            raise Problem(400, "Invalid request", _ENVELOPES) from None
        receipt, fresh = await node.lanes.run(lane, node.receive_alerts, party, envelopes, lane)
        if fresh:
            broker.publish(fresh)
        return await answer(receipt, body)

    @app.post("/peer/notes", openapi_extra=_body_schema(PeerNoteIn.model_json_schema()))
    async def notes(request: Request) -> JSONResponse:
        party, body = await authenticated(request)
        data = _peer_message(PeerNoteIn, "note", body)
        try:
            fresh = await node.lanes.run("flash", node.receive_note, party, data)
        except GsomiaError as exc:
            raise Problem(409, "Note refused", str(exc)) from None
        return await answer(
            {"node": node.party, "note": data.get("note_id"), "fresh": fresh, "received": [], "refused": []}, body
        )

    @app.post("/peer/alarms", openapi_extra=_body_schema(PeerAlarmIn.model_json_schema()))
    async def alarms(request: Request) -> JSONResponse:
        party, body = await authenticated(request)
        data = _peer_message(PeerAlarmIn, "alarm", body)
        try:
            fresh = await node.lanes.run("flash", node.receive_alarm, party, data)
        except GsomiaError as exc:
            raise Problem(400, "Invalid request", str(exc)) from None
        receipt: dict[str, Any] = {
            "node": node.party,
            "alarm": data.get("alarm_id"),
            "fresh": fresh,
            "received": [],
            "refused": [],
        }
        return await answer(receipt, body)

    @app.post("/peer/records", openapi_extra=_body_schema(_RECORD_SCHEMA))
    async def peer_records(request: Request) -> JSONResponse:
        party, body = await authenticated(request)
        data = _json(body, "a record is a JSON object {body, signature}")
        try:
            fresh = await node.lanes.run("flash", node.receive_record, party, data)
        except (ValueError, GsomiaError) as exc:
            raise Problem(400, "Invalid record", str(exc)) from None
        if fresh:
            broker.publish()
        return await answer({"node": node.party, "fresh": fresh, "received": [], "refused": []}, body)

    @app.get("/peer/ledger/head")
    async def ledger_head(request: Request) -> dict[str, Any]:
        await authenticated(request)
        return await node.lanes.run("control", node.own_head, 0.0)  # the witness asks for the current head

    @app.get("/peer/ledger/consistency")
    async def ledger_consistency(
        request: Request, old: Annotated[int, Query(ge=0)], new: Annotated[int, Query(ge=0)]
    ) -> dict[str, Any]:
        await authenticated(request)
        try:
            proof = await node.lanes.run("control", node.consistency, old, new)
        except NotFound as exc:
            raise Problem(404, "Not found", str(exc)) from None
        return {"old": old, "new": new, "proof": proof}

    @app.get("/peer/keys")
    async def key_chain() -> dict[str, Any]:
        # Public keys and signed statements only: mutual TLS is enough (a partner that
        # rotated cannot sign a request we could check before it has learned this).
        return await node.lanes.run("control", node.key_chain)

    @app.get("/peer/health")
    async def health() -> dict[str, str]:
        return {"party": node.party}

    return app
