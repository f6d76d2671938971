"""The signed tree head that rides on each peer request and receipt, never waited for.

Signing a current head is a write transaction on the node's main database (the head is
stored). On SQLite that waits for the one write lock, which a bulk transaction of 500
items holds for a long while, and a flash report's receipt must not wait behind it, nor
every report posted after that one (R17). A head seconds old is still a valid, signed
statement of the log, and the partner's witness asks for the current one itself
(``GET /peer/ledger/head``). So a head older than ``Node.own_head``'s second is used as it
is while a fresh one is signed in the background; only a node that has signed none yet
waits for one.
"""

from __future__ import annotations

import asyncio
import logging
import math
from typing import Any

from gsomia.node.service import Node

log = logging.getLogger("gsomia.heads")


async def for_peer(node: Node) -> dict[str, Any]:
    """The head to put on a request or receipt: the cached one, however old, if there is one."""
    head = node.cached_head()
    if head is not None:
        return head
    stale = node.cached_head(math.inf)
    if stale is None:
        return await node.lanes.run("control", node.own_head)
    signing = node.head_signing
    if signing is None or signing.done():
        signing = asyncio.ensure_future(node.lanes.run("control", node.own_head))
        signing.add_done_callback(_report)
        node.head_signing = signing
    return stale


def _report(done: asyncio.Future[Any]) -> None:
    if not done.cancelled() and done.exception() is not None:  # the next request tries again
        log.warning("could not sign a tree head: %s", done.exception())
