"""Beyond one machine: two processes of one node share one PostgreSQL database."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from gsomia.cli.demo import terms_only
from gsomia.node.process import NodeProcess
from gsomia.node.setup.provision import free_port, provision_pair
from nodes import AGREEMENT, User, pg_databases


def test_two_delivery_workers_on_one_postgresql_deliver_each_item_once(tmp_path: Path) -> None:
    agreement = terms_only(AGREEMENT, tmp_path / "terms.toml")
    with pg_databases(2) as (kor_db, jpn_db):
        nodes = provision_pair(tmp_path, agreement, database_urls={"KOR": kor_db, "JPN": jpn_db})
        kor = nodes["KOR"]
        # A second process of the KOR node: same database, same keys, its own ports.
        second_port = free_port()
        second = kor.root / "node-2.toml"
        config = kor.config.read_text()
        config = re.sub(r'listen = "127.0.0.1:\d+"', f'listen = "127.0.0.1:{second_port}"', config, count=1)
        config = re.sub(r'peer_listen = "127.0.0.1:\d+"', f'peer_listen = "127.0.0.1:{free_port()}"', config)
        second.write_text(config)
        procs = [
            NodeProcess(kor.config, kor.user_url, kor.root / "node.log"),
            NodeProcess(second, f"http://127.0.0.1:{second_port}", kor.root / "node-2.log"),
            NodeProcess(nodes["JPN"].config, nodes["JPN"].user_url, nodes["JPN"].root / "node.log"),
        ]
        try:
            for p in procs:
                p.start()
            token = kor.tokens["analyst"]
            ids: list[str] = []
            lock = threading.Lock()

            def post(base: str) -> None:
                user = User(base, token)
                for start in range(0, 500, 50):
                    r = user.post(
                        "/items",
                        {
                            "items": [
                                {"to": "JPN", "classification": "군사II급비밀", "text": f"{base} {start + i}"}
                                for i in range(50)
                            ]
                        },
                    )
                    assert r.status_code == 201, r.text
                    with lock:
                        ids.extend(i["item_id"] for i in r.json()["items"])

            threads = [threading.Thread(target=post, args=(p.user_url,)) for p in procs[:2]]
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            assert len(ids) == 1000

            engine = create_engine(kor_db)
            jpn = create_engine(jpn_db)

            def drained() -> bool:
                with engine.connect() as c:
                    return c.execute(text("select count(*) from outbox where delivered_at is null")).scalar_one() == 0

            import time

            deadline = time.monotonic() + 120
            while not drained():
                assert time.monotonic() < deadline, "outbox not drained"
                time.sleep(0.2)
            with engine.connect() as c:
                workers = {r[0] for r in c.execute(text("select distinct claimed_by from outbox"))}
                receipts = [json.loads(r[0]) for r in c.execute(text("select body from receipts"))]
            sent = [i for receipt in receipts for i in receipt.get("received", [])]
            assert len(workers) == 2, f"both processes' workers should have delivered: {workers}"
            assert sorted(sent) == sorted(ids), "every item acknowledged exactly once: no worker sent a row another had"
            with jpn.connect() as c:
                stored = [r[0] for r in c.execute(text("select item_id from items"))]
            assert sorted(stored) == sorted(ids)
            engine.dispose()
            jpn.dispose()
        finally:
            for p in procs:
                p.stop()


pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")


def test_a_note_recorded_by_one_process_is_enforced_by_the_others_within_a_moment(tmp_path: Path) -> None:
    """Two processes of KOR's node (two ``Node``s, two engines, one database): the status is one."""
    import time
    from datetime import UTC, datetime

    from gsomia.core.agreement.lifecycle import State
    from gsomia.node.runtime import config as node_config
    from gsomia.node.runtime.clock import SimulatedClock
    from gsomia.node.service import NOTES_REFRESH, Node
    from gsomia.store.db import open_database

    nodes = provision_pair(tmp_path, terms_only(AGREEMENT, tmp_path / "terms.toml"))
    cfg = node_config.load(nodes["KOR"].config)
    after_expiry = datetime(2019, 12, 1, tzinfo=UTC)  # a termination notice of 2019-08-23 has taken effect by then
    first, second = (Node(cfg, open_database(cfg.database_url), SimulatedClock(after_expiry)) for _ in range(2))
    authority = first.authenticate(nodes["KOR"].tokens["security_authority"])
    assert authority is not None
    assert second.status("JPN").in_force

    first.record_note(authority, "JPN", "termination_notice", datetime(2019, 8, 23, 9, tzinfo=UTC), (), None)
    assert first.status("JPN").state is State.TERMINATED  # the recording process: at once
    time.sleep(NOTES_REFRESH + 0.1)
    assert second.status("JPN").state is State.TERMINATED  # another process: within NOTES_REFRESH
    for node in (first, second):
        node.engine.dispose()


def test_the_note_watch_applies_another_process_s_note_before_any_request_asks(tmp_path: Path) -> None:
    """``NoteWatch``: a note another process recorded is applied in the background, so a
    request (a flash report) finds the status fresh and reads nothing from the database."""
    import asyncio
    import time
    from datetime import UTC, datetime

    from sqlalchemy import event

    from gsomia.core.agreement.lifecycle import State
    from gsomia.node.runtime import config as node_config
    from gsomia.node.runtime.clock import SimulatedClock
    from gsomia.node.service import Node
    from gsomia.node.workers.notewatch import NoteWatch
    from gsomia.store.db import open_database

    nodes = provision_pair(tmp_path, terms_only(AGREEMENT, tmp_path / "terms.toml"))
    cfg = node_config.load(nodes["KOR"].config)
    after_expiry = datetime(2019, 12, 1, tzinfo=UTC)
    first, second = (Node(cfg, open_database(cfg.database_url), SimulatedClock(after_expiry)) for _ in range(2))
    authority = first.authenticate(nodes["KOR"].tokens["security_authority"])
    assert authority is not None

    async def watched() -> None:
        watch = NoteWatch(second, interval=0.05)
        await watch.start()
        first.record_note(authority, "JPN", "termination_notice", datetime(2019, 8, 23, 9, tzinfo=UTC), (), None)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            applied = second.applied_agreements().with_peer("JPN")  # no I/O: what a request would start from
            if len(applied.notes) > len(cfg.agreement_with("JPN").notes):
                break
            await asyncio.sleep(0.01)
        await watch.stop()

    asyncio.run(watched())
    reads: list[str] = []
    event.listen(second.engine, "before_cursor_execute", lambda *args: reads.append(args[2]))
    assert second.status("JPN").state is State.TERMINATED
    assert reads == []  # found fresh: the request read nothing
    for node in (first, second):
        node.engine.dispose()
