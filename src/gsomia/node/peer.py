"""Node-to-node messages: signed requests over mutual TLS, signed receipts.

TLS authenticates the channel; the Ed25519 request signature authenticates the
message itself with the party's node key (the same key that signs envelopes), so a
receipt (kept with its signature, and entered on the sender's ledger) can be shown
to a third person later without the TLS session.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import json
import re
import ssl
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp
import httpx

from gsomia.core.canonical import canonical, unb64
from gsomia.core.keyring import KeyHistory
from gsomia.core.keys import PrivateKeys, PublicKeys

_REQUEST = b"gsomia/peer/v1/request\x00"
_RECEIPT = b"gsomia/peer/v1/receipt\x00"
_CONTEXT = b"gsomia/peer/v1"  # ML-DSA's context string (pq-hybrid keys)
MAX_SKEW = 300.0  # seconds between the two nodes' system clocks
HEAD_HEADER = "X-Gsomia-Tree-Head"
KEY_HEADER = "X-Gsomia-Key"  # the signer's key id: which key of its chain to check with


@functools.lru_cache(maxsize=16)  # keys hash by identity; a node signs with one or two
def key_id(key: PrivateKeys) -> str:
    return key.public().kid


def encode_head(head: dict[str, Any]) -> str:
    """The tree head a request carries, as its header's value. Plain JSON, not canonical: no
    signature covers these bytes and nothing compares them; the head is a signal that wakes
    the receiver's witness, which fetches the signed head itself (``GET /peer/ledger/head``)."""
    return base64.b64encode(json.dumps(head, separators=(",", ":")).encode()).decode()


def decode_head(value: str | None) -> dict[str, Any] | None:
    if not value:
        return None
    try:
        head = json.loads(base64.b64decode(value, validate=True))
    except ValueError:
        return None
    return head if isinstance(head, dict) else None


def wall_seconds() -> float:
    """Seconds since the epoch by this machine's clock: a signed request's timestamp, and the
    instant the receiver checks it against (``MAX_SKEW``, ``ReplayGuard``).

    Not the node's clock: the timestamp is checked against the partner's system clock, and
    a demo node's simulated clock, moved months away, would make every request stale. It
    says only how fresh a request is; no rule reads it and nothing stored carries it."""
    return time.time()


def target(path: str, params: dict[str, Any] | None = None) -> str:
    """The request target as sent and as signed: the path, and ``?query`` when there is one.

    The signature covers the query too (``/peer/ledger/consistency?old=..&new=..``): a proof
    asked for one range must not be answerable for another. The sender requests exactly this
    text (no ``params=`` for the client to re-encode)."""
    return f"{path}?{urlencode(params)}" if params else path


def received_target(scope: Any) -> str:
    """The target a server received, byte for byte: ``raw_path``, then ``?`` and the query if any."""
    raw: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
    query: bytes = scope.get("query_string") or b""
    return (raw + b"?" + query if query else raw).decode("latin-1")


def _request_message(method: str, path: str, party: str, timestamp: str, body: bytes) -> bytes:
    """``path`` is the request target: the path with its query string (``target``)."""
    parts = [method.upper(), path, party, timestamp, hashlib.sha256(body).hexdigest()]
    return _REQUEST + "\x00".join(parts).encode("utf-8")


def sign_request(key: PrivateKeys, method: str, path: str, body: bytes) -> dict[str, str]:
    """Signature headers for a request to ``path``, the target with its query (``target``)."""
    # Microseconds: two requests with the same body, path and instant would carry the same
    # Ed25519 signature, and the receiver refuses the second as a replay.
    timestamp = f"{wall_seconds():.6f}"
    signature = key.sign(_request_message(method, path, key.party, timestamp, body), _CONTEXT)
    return {
        "X-Gsomia-Party": key.party,
        "X-Gsomia-Timestamp": timestamp,
        "X-Gsomia-Signature": base64.b64encode(signature).decode(),
        KEY_HEADER: key_id(key),
        "Content-Type": "application/json",
    }


class UnknownKey(str):
    """A reason: the request names a key id that is not in the sender's chain as known here."""


# Seconds since the epoch as the sender wrote them: digits, a point, 3 to 6 decimals. A
# float() of the header would take "nan", "inf" and "1e9", and nan is never out of the window.
_TIMESTAMP = re.compile(r"[0-9]{1,11}\.[0-9]{3,6}")
_SIGNATURE_CHARS = 8192  # base64 of an Ed25519 + ML-DSA-65 signature is about 4.5 KB


def check_headers(chain: KeyHistory, headers: Any, now: float | None = None) -> str | None:
    """What can be refused before the body is read: None, or the reason.

    The party, a timestamp within ``MAX_SKEW`` of ``now`` (``wall_seconds``), a signature of
    plausible size, and a key id that is the party's current key; the signature itself covers
    the body."""
    party, timestamp, signature = (
        headers.get(h) for h in ("x-gsomia-party", "x-gsomia-timestamp", "x-gsomia-signature")
    )
    if party != chain.party or not timestamp or not signature:
        return "missing or foreign request signature headers"
    if not _TIMESTAMP.fullmatch(timestamp):
        return "X-Gsomia-Timestamp: expected seconds since the epoch, such as 1574413200.000"
    skew = abs((wall_seconds() if now is None else now) - float(timestamp))
    if skew > MAX_SKEW:
        return f"the request is {skew:.0f} s away from this node's clock"
    if len(signature) > _SIGNATURE_CHARS:
        return "the request signature does not verify"
    kid = headers.get(KEY_HEADER.lower()) or chain.current.kid
    if kid != chain.current.kid:
        if chain.by_kid(kid) is None:
            return UnknownKey(f"signed by key {kid[:64]}, which is not in {party}'s key chain as known here")
        return f"signed by {party}'s retired key {kid}; its current key is {chain.current.kid}"
    return None


def verify_request(
    chain: KeyHistory, method: str, path: str, headers: Any, body: bytes, now: float | None = None
) -> str | None:
    """None if the request is signed by the party's current key within the allowed clock skew, else the reason."""
    reason = check_headers(chain, headers, now)
    return reason or verify_signature(chain, method, path, headers, body)


def verify_signature(chain: KeyHistory, method: str, path: str, headers: Any, body: bytes) -> str | None:
    """None if the signature covers this request, by the party's current key; ``check_headers``
    has passed the headers already (a server checks them before it reads the body)."""
    party, timestamp, signature = (
        headers.get(h) for h in ("x-gsomia-party", "x-gsomia-timestamp", "x-gsomia-signature")
    )
    try:
        raw = unb64(signature)
    except ValueError:
        return "the request signature does not verify"
    if not chain.current.verify(raw, _request_message(method, path, party, timestamp, body), _CONTEXT):
        return "the request signature does not verify"
    return None


class ReplayGuard:
    """Refuses a signed request seen before, for as long as its timestamp is inside the window.

    A signature is remembered until its timestamp leaves ``MAX_SKEW``; by then the request is
    refused for its age. Bounded: past ``limit`` entries the oldest go first, and the window
    for an evicted signature is closed by refusing timestamps older than the newest eviction.
    """

    def __init__(self, limit: int = 200_000) -> None:
        self._seen: dict[bytes, float] = {}
        self._limit = limit
        self._floor = 0.0  # requests timestamped before this are refused (their record was dropped)

    def fresh(self, signature: str, timestamp: str, now: float) -> bool:
        """True the first time a signature is shown; False for a replay."""
        at = float(timestamp)
        if at <= self._floor:
            return False
        # The decoded bytes, not the header: one signature, whatever spelling would be sent
        # (``unb64`` takes only the canonical one, so the two agree).
        try:
            key = hashlib.sha256(unb64(signature)).digest()
        except ValueError:
            return False
        if key in self._seen:
            return False
        if len(self._seen) >= self._limit:
            self._forget(now)
        self._seen[key] = at
        return True

    def _forget(self, now: float) -> None:
        horizon = now - MAX_SKEW
        self._seen = {k: at for k, at in self._seen.items() if at >= horizon}
        while len(self._seen) >= self._limit:  # all inside the window: drop the oldest half
            cut = sorted(self._seen.values())[len(self._seen) // 2]
            self._floor = max(self._floor, cut)
            self._seen = {k: at for k, at in self._seen.items() if at > cut}


def sign_receipt(key: PrivateKeys, receipt: dict[str, Any]) -> tuple[bytes, str]:
    """The receipt's canonical bytes and their signature: the sender checks them, byte for byte,
    against the receipt as it reads it from the answer (``verify_receipt``)."""
    body = canonical(receipt)
    return body, base64.b64encode(key.sign(_RECEIPT + body, _CONTEXT)).decode()


def verify_receipt(peer: PublicKeys, body: bytes, signature: str) -> bool:
    """``peer``: the partner's current key (receipts are signed as they are made)."""
    try:
        raw = unb64(signature)
    except ValueError:
        return False
    return peer.verify(raw, _RECEIPT + body, _CONTEXT)


def client_context(own_cert: str, own_key: str, peer_cert: str) -> ssl.SSLContext:
    """Client side of mutual TLS: present our certificate, trust only the peer's."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=peer_cert)
    ctx.load_cert_chain(own_cert, own_key)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    return ctx


# A peer client's limits, whichever library it uses (``make_client``, ``FlashClient``).
CONNECT_TIMEOUT = 3.0  # seconds
READ_TIMEOUT = 10.0  # seconds between bytes of an answer
CONNECTIONS = 4  # open to one partner at most


def make_client(own_cert: str, own_key: str, peer_cert: str, base_url: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url,
        verify=client_context(own_cert, own_key, peer_cert),
        timeout=httpx.Timeout(READ_TIMEOUT, connect=CONNECT_TIMEOUT),
        limits=httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS),
    )


@dataclass(frozen=True, slots=True)
class Answer:
    """A peer's answer as ``Delivery`` reads it (the part of ``httpx.Response`` it uses)."""

    status_code: int
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


class FlashClient:
    """The flash lane's client to the partner's flash process (R17), over aiohttp.

    Not httpx, as everywhere else: a report is one small POST, and httpx parses HTTP (h11)
    and streams TLS (anyio) in Python, where aiohttp has a C parser and the event loop's own
    TLS, several times less CPU a request. The flash sender runs at real-time priority beside
    the bulk lanes, so what it saves is the partner's latency and the bulk lanes' CPU. Same
    mutual TLS context, connect and read timeouts and connection limit as ``make_client``;
    the session is made on first use, inside the running loop."""

    def __init__(self, own_cert: str, own_key: str, peer_cert: str, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._context = client_context(own_cert, own_key, peer_cert)
        self._session: aiohttp.ClientSession | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._context, limit=CONNECTIONS),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT, sock_read=READ_TIMEOUT),
                cookie_jar=aiohttp.DummyCookieJar(),  # a peer API sets none; reading them is CPU spent
                auto_decompress=False,
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    async def post(self, path: str, content: bytes, headers: dict[str, str]) -> Answer:
        async with self._open().post(self.base_url + path, data=content, headers=headers) as response:
            return Answer(response.status, await response.read())

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            await asyncio.sleep(0)  # lets the connector close its TLS transports before the loop ends
