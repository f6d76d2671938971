"""The user API (bearer tokens): a router of small handlers, each asking the ``Node``.

Thin: parse, authenticate, call the node in the lane its work belongs to, answer. A refusal
is the node's exception, answered by its class (``problems.install``); blocking database
work runs in the node's threads (``Node.lanes``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.security import HTTPBearer

from gsomia.core import policy
from gsomia.core.agreement import lifecycle
from gsomia.core.errors import Refused
from gsomia.node.api import docs, intake, models, problems
from gsomia.node.api.models import MAX_SEQ, AlertIn, ClockIn, NoteIn, ProvideIn, RecordIn
from gsomia.node.api.problems import Problem
from gsomia.node.api.streams import AlertFeed, AlertStream, Broker, connect
from gsomia.node.runtime.clock import SimulatedClock
from gsomia.node.service import Node
from gsomia.node.workers.delivery import Delivery

# Paths a client may ask for without a token: the node's liveness and the API's own description.
OPEN_PATHS = ("/health", "/openapi.json", *docs.OPEN_PATHS)
_TOKEN_CHARS = 256  # tokens are 43 characters; a longer one is not looked up
_bearer = HTTPBearer(auto_error=False, description="The token `gsomia user add` printed.")


@dataclass(frozen=True, slots=True)
class UserSide:
    """What the user API's handlers ask and tell: the node, this process's delivery, its broker."""

    node: Node
    delivery: Delivery
    broker: Broker


async def _side(request: Request) -> UserSide:
    side: UserSide = request.app.state.side  # set by the app's factory
    return side


async def _subject(request: Request, _: Annotated[Any, Depends(_bearer)] = None) -> policy.Subject:
    found: policy.Subject | None = getattr(request.state, "subject", None)
    if found is None:  # an open path: the intake asked for nothing
        raise Problem(401, "Unauthorized", "send Authorization: Bearer <token>")
    return found


Side = Annotated[UserSide, Depends(_side)]
Who = Annotated[policy.Subject, Depends(_subject)]
router = APIRouter()


def create_user_app(node: Node, delivery: Delivery, broker: Broker) -> FastAPI:
    app = FastAPI(title=f"gsomia node {node.party}: user API", version="1", docs_url=None, redoc_url=None)
    problems.install(app)
    docs.install(app)  # served from the package: no CDN
    app.state.side = UserSide(node, delivery, broker)
    connect(broker, node)
    app.add_middleware(intake.Intake, check=_token_check(node), limit=_body_limit, open_paths=OPEN_PATHS)
    app.include_router(router)
    return app


def _token_check(node: Node) -> intake.Check:
    """The intake's check: a bearer token of an active user, before the body is read."""

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

    return check


def _body_limit(method: str, path: str) -> int:
    return intake.PROVIDE_BODY_LIMIT if method == "POST" and path == "/items" else intake.USER_BODY_LIMIT


def _obey(decision: policy.Decision, what: str) -> None:
    """The core decided (``core.policy``); a refusal answers 403 with its reasons."""
    if not decision.permit:
        raise Refused(decision, what)


@router.get("/health")
async def health(side: Side) -> dict[str, Any]:
    clock = side.node.clock
    return {"party": side.node.party, "now": clock.now().isoformat(), "simulated_clock": clock.simulated}


@router.get("/status")
async def status(who: Who, side: Side) -> dict[str, Any]:
    node = side.node
    now = node.clock.now()
    return {
        code: {
            "agreement": node.agreement(code).id,
            **lifecycle.as_json(node.agreement(code), node.status(code, now)),
        }
        for code in node.config.peers
    }


@router.post("/items", status_code=201, openapi_extra=models.body_schema(ProvideIn.model_json_schema()))
async def provide(request: Request, who: Who, side: Side) -> dict[str, Any]:
    # Parsed and validated in the bulk pool: 500 items of JSON must not hold the
    # event loop while a flash report waits to be read (R17).
    node = side.node
    body = await request.body()  # read by the intake, within its limit
    specs = await node.lanes.run("bulk", models.parse_provide, body)
    results = await node.lanes.run("bulk", node.provide, who, specs, "bulk")
    for code in {s.to for s in specs}:
        side.delivery.notify(code, "bulk")
    return {"items": results}


@router.get("/items")
async def list_items(
    who: Who,
    side: Side,
    after: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    rows, cursor = await side.node.lanes.run("bulk", side.node.list_items, who, after, limit)
    return {"items": rows, "next": cursor}


@router.get("/items/{item_id}")
async def read_item(item_id: str, who: Who, side: Side, purpose: str | None = None) -> dict[str, Any]:
    return await side.node.lanes.run("bulk", side.node.read_item, who, item_id, purpose)


@router.post("/alerts", status_code=201)
async def alert(body: AlertIn, who: Who, side: Side) -> dict[str, Any]:
    _obey(policy.send_flash(who), "a flash report")
    node, delivery = side.node, side.delivery
    # Claimed at commit only where this process delivers the flash lane; else the node's
    # flash process is told and claims it (``node/link.py``). Not while stopping: its
    # workers have given back their rows already, and this one would wait out the lease.
    here = "flash" in delivery.lanes and not delivery.stopping
    worker = delivery.worker_id if here else None
    result, claimed, fresh = await node.lanes.run("flash", node.provide_alert, who, body.spec(), worker)
    if here:
        delivery.hand_over(body.to, claimed)
    side.broker.publish(fresh)
    return {"alert": result}


@router.get("/alerts/stream")
async def stream(
    request: Request,
    who: Who,
    side: Side,
    last_event_id: Annotated[str | None, Header()] = None,
    after: Annotated[int | None, Query(ge=0, le=MAX_SEQ)] = None,
) -> AlertStream:
    node, broker = side.node, side.broker
    start = after if after is not None else models.event_id(last_event_id)
    token = (request.headers.get("authorization") or "").removeprefix("Bearer ").strip()
    limit = node.config.max_streams_per_user
    if not broker.hold(who.id, limit):
        raise Problem(429, "Too many streams", f"{who.id} holds {limit} open alert streams already; close one first")
    broker.watch(lambda: node.lanes.run("flash", node.latest_alert_seq))
    feed = AlertFeed(request, node, broker, who, token, start)
    return AlertStream(feed.events(), lambda: broker.let_go(who.id), ping=random.uniform(12.0, 18.0))  # noqa: S311


@router.post("/notes", status_code=201)
async def note(body: NoteIn, who: Who, side: Side) -> dict[str, Any]:
    node = side.node
    at = models.aware(body.at, "at")
    result = await node.lanes.run("bulk", node.record_note, who, body.to, body.type, at, body.conditions, body.ref)
    side.delivery.notify(body.to, "flash")
    return {"note": result}


@router.post("/records", status_code=201)
async def make_record(body: RecordIn, who: Who, side: Side) -> dict[str, Any]:
    fields = body.model_dump(exclude={"kind", "item_id"}, exclude_none=True)
    result = await side.node.lanes.run("bulk", side.node.make_record, who, body.kind, body.item_id, fields)
    side.delivery.notify(result["peer"], "flash" if body.kind in ("compromise_report", "investigation") else "bulk")
    return {k: v for k, v in result.items() if k != "peer"}


@router.get("/register/{item_id}")
async def register(item_id: str, who: Who, side: Side) -> dict[str, Any]:
    return await side.node.lanes.run("bulk", side.node.register, who, item_id)


@router.get("/records")
async def cases(who: Who, side: Side, item_id: str | None = None) -> dict[str, Any]:
    return {"cases": await side.node.lanes.run("bulk", side.node.cases, who, item_id)}


@router.get("/ledger/head")
async def head(who: Who, side: Side) -> dict[str, Any]:
    # Its size counts every entry, denied reads of items a user may not know of among them.
    _obey(policy.oversee(who, "R11", "ledger heads"), "the ledger head")
    return await side.node.lanes.run("control", side.node.own_head)


@router.get("/ledger/alarms")
async def alarms(who: Who, side: Side) -> dict[str, Any]:
    _obey(policy.oversee(who, "R11", "alarms"), "the alarms")
    return {"alarms": await side.node.lanes.run("control", side.node.alarms)}


@router.get("/keys")
async def keys(who: Who, side: Side) -> dict[str, Any]:
    _obey(policy.oversee(who, "R8", "key chains"), "the key chains")
    return {"keys": side.node.key_chains()}


@router.get("/outbox")
async def outbox(who: Who, side: Side) -> dict[str, Any]:
    return {"pending": await side.node.lanes.run("control", side.node.pending)}


@router.post("/demo/clock")
async def set_clock(body: ClockIn, who: Who, side: Side) -> dict[str, Any]:
    clock = side.node.clock
    if not isinstance(clock, SimulatedClock):
        raise Problem(404, "Not found", "the clock can only be moved in demo mode")
    if who.role is not policy.Role.SECURITY_AUTHORITY:
        raise Problem(403, "Denied", "only the security authority moves the demo clock")
    clock.set(models.aware(body.at, "at") or body.at)
    return {"now": clock.now().isoformat()}
