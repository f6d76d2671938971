"""What a request must show before a node reads its body, and how much of it the node reads.

A stranger must not make a node work: the user API checks the bearer token, and the
peer API the partner's signature headers, before a byte of the body is read. The body
is then read no further than the endpoint's limit, counted as it arrives, so a 400 MB
body, declared or chunked, costs the node its first chunk past the limit and no more:
the answer is a 413 problem document at that point.

Pure ASGI middleware: the route handlers read the body from memory afterwards.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from gsomia.node.api.problems import problem_response

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# The user API's limits. A provide request carries items whose payloads are base64 in JSON;
# every other request is a small JSON object (a flash report's text is at most 64 KiB).
PROVIDE_BODY_LIMIT = 64 << 20
USER_BODY_LIMIT = 1 << 20

# Bytes in one request from a partner: a delivery of items carries at most 32 MB of
# envelopes (``delivery.BATCH_BYTES``; an item alone, at most a 12 MiB payload), 43 MB as base64.
PEER_BODY_LIMIT = 64 << 20
PEER_MESSAGE_LIMIT = 1 << 20  # a note, an alarm or a record


class Refusal(Exception):
    """Raised by a check that runs before the body: answered as a problem document."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.title = title
        self.detail = detail


# Called with the request's scope before its body is read; raises Refusal, or returns
# what the handlers may find in ``request.state`` (``scope["state"]``).
Check = Callable[[Scope], Awaitable[dict[str, Any]]]


def header(scope: Scope, name: str) -> str | None:
    """The first value of header ``name`` (lower case), decoded as Latin-1 as HTTP/1.1 allows."""
    key = name.encode("latin-1")
    for k, v in scope.get("headers", ()):
        if k == key:
            return bytes(v).decode("latin-1")
    return None


def bearer_token(scope: Scope) -> str | None:
    value = header(scope, "authorization")
    if not value or not value.startswith("Bearer "):
        return None
    return value.removeprefix("Bearer ").strip() or None


class Intake:
    """Runs ``check`` on every request not in ``open_paths``, then reads the body within ``limit``."""

    def __init__(
        self,
        app: ASGIApp,
        check: Check,
        limit: Callable[[str, str], int],
        open_paths: Iterable[str] = (),
    ) -> None:
        self.app = app
        self.check = check
        self.limit = limit
        self.open_paths = frozenset(open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if path in self.open_paths:
            limit = 0  # what anyone may ask for takes no body: a stranger's bytes are not read
        else:
            try:
                found = await self.check(scope)
            except Refusal as exc:
                await _answer(scope, receive, send, exc.status, exc.title, exc.detail)
                return
            scope.setdefault("state", {}).update(found)
            limit = self.limit(scope.get("method", "GET"), path)
        body = await _read_within(scope, receive, limit)
        if body is None:
            detail = f"a request to {path} carries at most {limit:,} bytes"
            await _answer(scope, receive, send, 413, "Content too large", detail)
            return
        await self.app(scope, _replay(body, receive), send)


async def _read_within(scope: Scope, receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None as soon as it is known to pass ``limit`` (declared or counted)."""
    declared = header(scope, "content-length")
    # At most 19 digits: a longer number is past any limit and not worth converting.
    if declared is not None and not (declared.isascii() and declared.isdigit() and len(declared) <= 19):
        return None
    if declared is not None and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body once, then the client's own messages (a stream waits on them for a disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def _answer(scope: Scope, receive: Receive, send: Send, status: int, title: str, detail: str) -> None:
    response = problem_response(status, title, detail, scope.get("path"))
    if status == 413:  # the rest of the body is not read: the connection cannot carry another request
        response.headers["Connection"] = "close"
    if status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    await response(scope, receive, send)
