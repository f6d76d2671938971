"""The HTTP connection's own bound: how many bytes a request's head may take.

uvicorn's httptools protocol (llhttp, in C: the nodes' request parser) collects a request
line and headers of any length: a stranger sending a 200 MB header costs the node 200 MB
before any check can run. Here the bytes fed while the head is incomplete are counted, and
past ``HEAD_LIMIT`` the connection is answered 431 and closed. Counted after each chunk is
parsed, so the most held is the limit and one read (asyncio reads at most 256 KiB).
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HEAD_LIMIT = 64 * 1024  # a request line and headers; a node's own are under 6 KiB (ML-DSA signatures)

_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: application/problem+json\r\n"
    b"connection: close\r\n"
    b"content-length: %d\r\n\r\n%s"
)


def _problem() -> bytes:
    body = (
        b'{"type":"https://gsomia.invalid/problems/request-header-fields-too-large",'
        b'"title":"Request header fields too large","status":431,'
        b'"detail":"a request\'s line and headers take at most %d bytes"}' % HEAD_LIMIT
    )
    return _TOO_LARGE % (len(body), body)


class BoundedHttpTools(HttpToolsProtocol):
    """uvicorn's httptools protocol, with the request head bounded (``HEAD_LIMIT``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True
        self._head_bytes = 0

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0

    def on_headers_complete(self) -> None:
        self._in_head = False
        super().on_headers_complete()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if not self._in_head or self.transport.is_closing():
            return
        self._head_bytes += len(data)
        if self._head_bytes > HEAD_LIMIT:
            self.transport.write(_problem())
            self.transport.close()
