"""A provisioned KOR node's user and peer apps, in process (Starlette's TestClient), on SQLite.

Fast enough for hypothesis and schemathesis to send thousands of requests; the integration
tests (``nodes.py``) cover the same apps over real sockets.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import func, select

from gsomia.cli.demo import terms_only
from gsomia.node.api import Broker, create_peer_app, create_user_app
from gsomia.node.runtime import config as node_config
from gsomia.node.runtime.clock import SystemClock
from gsomia.node.service import Node
from gsomia.node.setup.provision import provision_pair
from gsomia.node.workers.delivery import Delivery
from gsomia.store import schema as t
from gsomia.store.db import open_database
from nodes import AGREEMENT


@contextmanager
def in_process_apps(root: Path, terms_name: str = "terms.toml") -> Iterator[dict[str, Any]]:
    """``terms_name``: the file the agreement's terms are written to, as refusals name it."""
    nodes = provision_pair(root, terms_only(AGREEMENT, root / terms_name))
    kor_cfg = node_config.load(nodes["KOR"].config)
    jpn_cfg = node_config.load(nodes["JPN"].config)
    node = Node(kor_cfg, open_database(kor_cfg.database_url), SystemClock())
    broker = Broker()
    user_app = create_user_app(node, Delivery(node), broker)
    peer_app = create_peer_app(node, broker)
    user = TestClient(user_app, raise_server_exceptions=False)
    peer_client = TestClient(peer_app, raise_server_exceptions=False)
    try:
        yield {
            "root": root,
            "node": node,
            "user": user,
            "peer": peer_client,
            "user_app": user_app,
            "peer_app": peer_app,
            "tokens": nodes["KOR"].tokens,
            "jpn_key": jpn_cfg.key,
        }
    finally:
        node.dispose()


# What a refused request must leave as it was: the rows a request could add. (Not the ledger:
# an access decision is entered there, a refusal too.)
STORED_TABLES = (t.items, t.outbox, t.notes, t.records, t.alarms, t.users)


def stored(node: Node) -> tuple[int, ...]:
    with node.engine.connect() as c:
        return tuple(int(c.execute(select(func.count()).select_from(tbl)).scalar_one()) for tbl in STORED_TABLES)


def assert_problem(response: Any) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/problem+json"), response.text
        body = response.json()
        assert {"type", "title", "status", "detail"} <= set(body)
