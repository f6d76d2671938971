"""The peer API (mutual TLS and signed requests): a router of small handlers, each asking the ``Node``.

Every request but the key chain and the liveness check is signed by the partner's node key:
its headers are checked before the body is read (``intake``), its signature over the body
after, and every receipt is signed back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers

from gsomia.core.errors import GsomiaError
from gsomia.node import peer as peer_proto
from gsomia.node.api import intake, models, problems
from gsomia.node.api.models import ENVELOPES_EXPECTED, PeerAlarmIn, PeerNoteIn
from gsomia.node.api.problems import Problem
from gsomia.node.api.streams import Broker
from gsomia.node.service import Node
from gsomia.node.workers import heads
from gsomia.node.workers.keysync import KeySync
from gsomia.node.workers.witness import Witness

INLINE_BYTES = 64 * 1024  # bytes of a flash delivery parsed on the event loop itself
OPEN_PATHS = ("/peer/keys", "/peer/health")


@dataclass(frozen=True, slots=True)
class PeerSide:
    """What the peer API's handlers ask and tell: the node, its broker, the requests seen, and
    (in the main process) the witness of the partner's log; the keys it learns from."""

    node: Node
    broker: Broker
    replays: peer_proto.ReplayGuard
    witness: Witness | None
    keys: KeySync | None


async def _side(request: Request) -> PeerSide:
    side: PeerSide = request.app.state.side  # set by the app's factory
    return side


Side = Annotated[PeerSide, Depends(_side)]
router = APIRouter()


def create_peer_app(node: Node, broker: Broker, witness: Witness | None = None, keys: KeySync | None = None) -> FastAPI:
    app = FastAPI(title=f"gsomia node {node.party}: peer API", version="1", docs_url=None, redoc_url=None)
    problems.install(app)
    app.state.side = PeerSide(node, broker, peer_proto.ReplayGuard(), witness, keys)
    app.add_middleware(intake.Intake, check=_header_check(node, keys), limit=_body_limit, open_paths=OPEN_PATHS)
    app.include_router(router)
    return app


def _header_check(node: Node, keys: KeySync | None) -> intake.Check:
    """The intake's check: the partner's headers, before its body is read (a known party,
    fresh, its current key)."""

    async def check(scope: intake.Scope) -> dict[str, Any]:
        party = intake.header(scope, "x-gsomia-party") or ""
        if party not in node.config.peers:
            raise intake.Refusal(403, "Unknown peer", f"{party[:16] or 'no party'} is not a peer of {node.party}")
        reason = peer_proto.check_headers(node.peer_chains[party], Headers(scope=scope))
        if reason:
            if isinstance(reason, peer_proto.UnknownKey) and keys is not None:
                keys.soon(party)  # it may have rotated its key: learn the chain; the sender retries
            raise intake.Refusal(401, "Unauthenticated", reason)
        return {"party": party}

    return check


def _body_limit(method: str, path: str) -> int:
    return intake.PEER_BODY_LIMIT if path == "/peer/items" else intake.PEER_MESSAGE_LIMIT


async def _authenticated(request: Request, side: PeerSide) -> tuple[str, bytes]:
    """The partner and the body it signed: the signature covers this body, and was not seen before."""
    body = await request.body()  # read by the intake, within its limit, after the headers passed
    party = str(request.state.party)
    headers = request.headers
    target = peer_proto.received_target(request.scope)
    # The headers passed the intake's check (``_header_check``) before the body was read.
    reason = peer_proto.verify_signature(side.node.peer_chains[party], request.method, target, headers, body)
    if reason:
        raise Problem(401, "Unauthenticated", reason)
    if not side.replays.fresh(headers["x-gsomia-signature"], headers["x-gsomia-timestamp"], peer_proto.wall_seconds()):
        raise Problem(401, "Unauthenticated", "this signed request was received before (a replay)")
    if side.witness is not None:
        side.witness.observe(party, peer_proto.decode_head(headers.get(peer_proto.HEAD_HEADER)))
    return party, body


async def _answer(side: PeerSide, receipt: dict[str, Any], body: bytes) -> JSONResponse:
    """The signed receipt for ``body``, with this node's tree head on it."""
    node = side.node
    head = await heads.for_peer(node)
    receipt = {**receipt, "request_sha256": hashlib.sha256(body).hexdigest(), "tree_head": head}
    _, signature = peer_proto.sign_receipt(node.config.key, receipt)
    return JSONResponse({"receipt": receipt, "signature": signature, "kid": node.public.kid})


def _receipt(node: Node, fresh: Any, **about: Any) -> dict[str, Any]:
    return {"node": node.party, **about, "fresh": fresh, "received": [], "refused": []}


@router.post("/peer/items", openapi_extra=models.body_schema(models.ENVELOPES_SCHEMA))
async def items(request: Request, side: Side) -> JSONResponse:
    party, body = await _authenticated(request, side)
    node = side.node
    hint = "flash" if request.headers.get("x-gsomia-lane") == "flash" else "bulk"  # scheduling only
    try:
        if hint == "flash" and len(body) <= INLINE_BYTES:  # a report or two: parsed here, without a thread hop
            lane, envelopes = models.parse_envelopes(body)
        else:
            lane, envelopes = await node.lanes.run(hint, models.parse_envelopes, body)
    except (ValueError, KeyError, TypeError):
        raise Problem(400, "Invalid request", ENVELOPES_EXPECTED) from None
    receipt, fresh = await node.lanes.run(lane, node.receive_alerts, party, envelopes, lane)
    if fresh:
        side.broker.publish(fresh)
    return await _answer(side, receipt, body)


# What the partner's node reads in a refusal (its Delivery takes a 4xx as final): a note this
# node cannot record, whatever the exception, means the two nodes disagree on the agreement
# (409 Conflict; the sender raises an alarm); an alarm or a record it cannot take is bad input
# (400). The peer protocol fixes these, so they do not follow the exception's class.


async def _message(
    request: Request,
    side: PeerSide,
    parse: Callable[[bytes], Any],
    receive: Callable[[str, Any], bool],
    refusal: tuple[int, str],
    about: dict[str, str] | None = None,
) -> tuple[JSONResponse, bool]:
    """A note, alarm or record from the partner: authenticated, parsed, taken on the flash lane
    and answered with a signed receipt; what it cannot take is answered ``refusal``."""
    party, body = await _authenticated(request, side)
    node = side.node
    data = parse(body)
    try:
        fresh = await node.lanes.run("flash", receive, party, data)
    except (ValueError, GsomiaError) as exc:
        raise Problem(refusal[0], refusal[1], str(exc)) from None
    named = {key: data.get(field) for key, field in (about or {}).items()}
    return await _answer(side, _receipt(node, fresh, **named), body), fresh


@router.post("/peer/notes", openapi_extra=models.body_schema(PeerNoteIn.model_json_schema()))
async def notes(request: Request, side: Side) -> JSONResponse:
    def parse(body: bytes) -> dict[str, Any]:
        return models.peer_message(PeerNoteIn, "note", body)

    answer, _ = await _message(request, side, parse, side.node.receive_note, (409, "Note refused"), {"note": "note_id"})
    return answer


@router.post("/peer/alarms", openapi_extra=models.body_schema(PeerAlarmIn.model_json_schema()))
async def alarms(request: Request, side: Side) -> JSONResponse:
    def parse(body: bytes) -> dict[str, Any]:
        return models.peer_message(PeerAlarmIn, "alarm", body)

    answer, _ = await _message(
        request, side, parse, side.node.receive_alarm, (400, "Invalid request"), {"alarm": "alarm_id"}
    )
    return answer


@router.post("/peer/records", openapi_extra=models.body_schema(models.RECORD_SCHEMA))
async def peer_records(request: Request, side: Side) -> JSONResponse:
    def parse(body: bytes) -> Any:
        return models.json_body(body, "a record is a JSON object {body, signature}")

    answer, fresh = await _message(request, side, parse, side.node.receive_record, (400, "Invalid record"))
    if fresh:
        side.broker.publish()
    return answer


@router.get("/peer/ledger/head")
async def ledger_head(request: Request, side: Side) -> dict[str, Any]:
    await _authenticated(request, side)
    return await side.node.lanes.run("control", side.node.own_head, 0.0)  # the witness asks for the current head


@router.get("/peer/ledger/consistency")
async def ledger_consistency(
    request: Request, side: Side, old: Annotated[int, Query(ge=0)], new: Annotated[int, Query(ge=0)]
) -> dict[str, Any]:
    await _authenticated(request, side)
    proof = await side.node.lanes.run("control", side.node.consistency, old, new)
    return {"old": old, "new": new, "proof": proof}


@router.get("/peer/keys")
async def key_chain(side: Side) -> dict[str, Any]:
    # Public keys and signed statements only: mutual TLS is enough (a partner that
    # rotated cannot sign a request we could check before it has learned this).
    return await side.node.lanes.run("control", side.node.key_chain)


@router.get("/peer/health")
async def health(side: Side) -> dict[str, str]:
    return {"party": side.node.party}
