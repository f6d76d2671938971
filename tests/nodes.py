"""Real nodes over real HTTP (mutual TLS between them), on SQLite or PostgreSQL.

Imported by the integration tests. PostgreSQL comes from ``GSOMIA_TEST_PG``
(default: the local server, trust auth); each pair gets two fresh databases.
"""

from __future__ import annotations

import json
import os
import ssl
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

from gsomia.cli.demo import terms_only
from gsomia.node.process import NodeProcess, start_all, stop_all
from gsomia.node.setup.provision import Provisioned, provision

ROOT = Path(__file__).resolve().parents[1]
AGREEMENT = ROOT / "agreements" / "jp-kr-gsomia-2016.toml"
PG_ADMIN = os.environ.get("GSOMIA_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def pg_url(name: str) -> str:
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"


@contextmanager
def pg_databases(count: int) -> Iterator[list[str]]:
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    names = [f"gsomia_t_{uuid.uuid4().hex[:10]}" for _ in range(count)]
    try:
        with admin.connect() as conn:
            for name in names:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        yield [pg_url(n) for n in names]
    finally:
        with admin.connect() as conn:
            for name in names:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@dataclass
class User:
    base: str
    token: str
    trust: ssl.SSLContext | None = None  # the node's certificate, where its user API serves HTTPS

    def __post_init__(self) -> None:
        self.http = httpx.Client(
            base_url=self.base, headers={"Authorization": f"Bearer {self.token}"}, timeout=30, verify=self.trust or True
        )

    def post(self, path: str, body: Any) -> httpx.Response:
        return self.http.post(path, json=body)

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.http.get(path, params=params)


@dataclass
class Pair:
    nodes: dict[str, Provisioned]
    procs: dict[str, NodeProcess]

    def user(self, party: str, role: str, flash: bool = False) -> User:
        """``party``'s user API; with ``flash``, its flash process's where it runs one."""
        node = self.nodes[party]
        return User(node.alerts_url if flash else node.user_url, node.tokens[role], node.trust())

    def share(self, frm: str, to: str, classification: str, n: int, batch: int = 100, **extra: Any) -> list[str]:
        ids: list[str] = []
        analyst = self.user(frm, "analyst")
        for start in range(0, n, batch):
            body = {
                "items": [
                    {
                        "to": to,
                        "classification": classification,
                        "text": f"item {start + i}",
                        "purposes": ["nk-missile"],
                        **extra,
                    }
                    for i in range(min(batch, n - start))
                ]
            }
            r = analyst.post("/items", body)
            assert r.status_code == 201, r.text
            ids.extend(i["item_id"] for i in r.json()["items"])
        return ids

    def received(self, party: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        after = 0
        reader = self.user(party, "auditor")  # the inventory (R8) lists every item
        while True:
            page = reader.get("/items", after=after, limit=1000).json()
            rows.extend(page["items"])
            if page["next"] == after:
                return [r for r in rows if r["direction"] == "in"]
            after = page["next"]

    def pending(self, party: str) -> int:
        return int(self.user(party, "analyst").get("/outbox").json()["pending"])

    def wait(self, check: Any, what: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if check():
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}")

    def set_clock(self, at: str) -> None:
        for party in self.nodes:
            r = self.user(party, "security_authority").post("/demo/clock", {"at": at})
            assert r.status_code == 200, r.text


@contextmanager
def node_pair(
    tmp: Path,
    backend: str,
    demo: bool = False,
    suite: str = "classic",
    flash_process: bool = False,
    user_tls: bool = False,
) -> Iterator[Pair]:
    """Two nodes on loopback; their user APIs serve plain HTTP (which a node permits on loopback
    only, with a warning in its log) unless ``user_tls``, when they serve HTTPS as deployed."""
    agreement = terms_only(AGREEMENT, tmp / "agreement-terms.toml")
    if suite != "classic":
        text = agreement.read_text(encoding="utf-8")
        agreement.write_text(text.replace('suite = "classic"', f'suite = "{suite}"', 1), encoding="utf-8")
    with node_group(tmp, backend, [agreement], ("KOR", "JPN"), demo, suite, flash_process, user_tls) as group:
        yield group


@contextmanager
def node_group(
    tmp: Path,
    backend: str,
    agreements: Sequence[Path],
    parties: Sequence[str],
    demo: bool = False,
    suite: str = "classic",
    flash_process: bool = False,
    user_tls: bool = False,
) -> Iterator[Pair]:
    """A node for each of ``parties``, each party to the ``agreements`` that name it."""
    with _databases(backend, parties) as (urls, flash_urls):
        nodes = provision(
            tmp,
            agreements,
            parties,
            database_urls=urls,
            demo=demo,
            suite=suite,
            flash_process=flash_process,
            flash_database_urls=flash_urls,
            user_tls=user_tls,
        )
        procs = {
            p: NodeProcess(n.config, n.user_url, n.root / "node.log", n.flash_user_url, n.trust())
            for p, n in nodes.items()
        }
        try:
            start_all(list(procs.values()))
            yield Pair(nodes, procs)
        finally:
            stop_all(list(procs.values()))


@contextmanager
def _databases(backend: str, parties: Sequence[str]) -> Iterator[tuple[dict[str, str] | None, dict[str, str] | None]]:
    """Each party's database URL, and its flash lane's (``postgresql+flash``: a database of its own)."""
    if backend == "sqlite":
        yield None, None
        return
    n = len(parties)
    with pg_databases(2 * n if backend == "postgresql+flash" else n) as urls:
        flash = dict(zip(parties, urls[n:], strict=True)) if backend == "postgresql+flash" else None
        yield dict(zip(parties, urls[:n], strict=True)), flash


class FlashListener(threading.Thread):
    def __init__(
        self, base: str, token: str, last_event_id: str | None = None, trust: ssl.SSLContext | None = None
    ) -> None:
        super().__init__(daemon=True)
        self.base, self.token, self.last, self.trust = base, token, last_event_id, trust
        self.events: list[tuple[str, dict[str, Any]]] = []
        self.ready = threading.Event()
        self.done = threading.Event()

    def run(self) -> None:
        try:
            self._listen()
        except httpx.HTTPError:
            if not self.done.is_set():  # the node closing a stream the test has finished with is fine
                raise

    def _listen(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        if self.last:
            headers["Last-Event-ID"] = self.last
        with httpx.stream(
            "GET",
            f"{self.base}/alerts/stream",
            headers=headers,
            timeout=httpx.Timeout(20, connect=5),
            verify=self.trust or True,
        ) as r:
            self.ready.set()
            event_id, data = "", ""
            for line in r.iter_lines():
                if self.done.is_set():
                    return
                if line.startswith("id:"):
                    event_id = line[3:].strip()
                elif line.startswith("data:"):
                    data = line[5:].strip()
                elif not line and data:
                    self.events.append((event_id, json.loads(data)))
                    data = ""
