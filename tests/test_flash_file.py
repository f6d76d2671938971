"""The flash lane's own persistence (R17, ``store.flash``): on SQLite a file of its own, on
PostgreSQL a database of its own where the node names one (``flash_database_url``).

A flash report is committed, received and acknowledged while a bulk transaction holds the
main database's write lock; its rows move into the main tables later, each once, even
when the move is cut short; and nothing a user sees of it changes when it moves. The
outbox claim that reads both files is tested here too, on both backends: what a stopping
worker gives back, and what a pipelined bulk worker skips and gives back.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, func, select, text

from gsomia.cli.demo import terms_only
from gsomia.core.policy import Subject
from gsomia.node import audit
from gsomia.node.runtime import config as node_config
from gsomia.node.runtime.clock import SystemClock
from gsomia.node.service import ItemSpec, Node
from gsomia.node.setup.provision import provision_pair
from gsomia.node.workers import heads
from gsomia.node.workers.delivery import Delivery
from gsomia.store import flash
from gsomia.store import schema as t
from gsomia.store.db import open_database
from nodes import AGREEMENT, pg_databases

LAUNCH = ItemSpec("JPN", "군사II급비밀", b"launch", purposes=("nk-missile",))


@contextlib.contextmanager
def _pair(tmp_path: Path, backend: str) -> Iterator[dict[str, Node]]:
    """KOR's and JPN's nodes in this process, on the backend, with each one's users by role.

    ``postgresql+flash``: each node's flash lane in a PostgreSQL database of its own."""
    wanted = {"sqlite": 0, "postgresql": 2, "postgresql+flash": 4}[backend]
    with pg_databases(wanted) if wanted else contextlib.nullcontext([]) as urls:
        database_urls = dict(zip(("KOR", "JPN"), urls[:2], strict=True)) if urls else None
        flash_urls = dict(zip(("KOR", "JPN"), urls[2:], strict=True)) if wanted == 4 else None
        nodes = provision_pair(
            tmp_path, terms_only(AGREEMENT, tmp_path / "terms.toml"), database_urls, flash_database_urls=flash_urls
        )
        made = {}
        for party, p in nodes.items():
            cfg = node_config.load(p.config)
            node = Node(cfg, open_database(cfg.database_url, flash_url=cfg.flash_database_url), SystemClock())
            node.tokens = p.tokens  # type: ignore[attr-defined]
            made[party] = node
        try:
            yield made
        finally:
            for node in made.values():
                node.dispose()


@pytest.fixture(params=["sqlite", "postgresql", "postgresql+flash"])
def two(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Node]]:
    with _pair(tmp_path, request.param) as made:
        yield made


def user(node: Node, role: str) -> Subject:
    subject = node.authenticate(node.tokens[role])  # type: ignore[attr-defined]
    assert subject is not None
    return subject


def count(engine: Engine, table: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())


def holding_the_bulk_lock(engine: Engine, work: Callable[[], Any]) -> Any:
    """Run ``work`` in a thread while another connection holds what a bulk transaction holds:
    SQLite's write lock on the main file; on PostgreSQL, the log's counter row."""
    result: dict[str, Any] = {}
    with engine.connect() as holder:
        if engine.dialect.name == "sqlite":
            holder.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            holder.begin()
            holder.execute(text("UPDATE ledger_state SET size = size WHERE id = 1"))

        def run() -> None:
            try:
                result["value"] = work()
            except Exception as exc:  # reported below
                result["error"] = exc

        thread = threading.Thread(target=run)
        thread.start()
        thread.join(timeout=8.0)  # the busy timeout is 10 s: a write that waited for the holder would still wait
        finished = not thread.is_alive()
        holder.rollback()
    thread.join()
    assert finished, "the flash write waited for the bulk transaction"
    if "error" in result:
        raise result["error"]
    return result["value"]


def test_a_flash_report_is_committed_received_and_acknowledged_while_bulk_holds_the_write_lock(
    two: dict[str, Node],
) -> None:
    kor, jpn = two["KOR"], two["JPN"]
    result, [row], [_fresh] = holding_the_bulk_lock(
        kor.engine, lambda: kor.provide_alert(user(kor, "duty_officer"), LAUNCH, "w1")
    )
    receipt, [arrived] = holding_the_bulk_lock(jpn.engine, lambda: jpn.receive_alerts("KOR", [row["body"]], "flash"))
    assert receipt["received"] == [result["item_id"]]
    assert arrived.alert_id == result["item_id"]
    holding_the_bulk_lock(kor.engine, lambda: kor.delivered([row["key"]], receipt, "signature", {}, "flash"))
    assert kor.pending("JPN") == 0
    # The reader on the stream sees it at once, before anything has moved.
    assert [r["alert_id"] for r in jpn.alerts_after(0)] == [result["item_id"]]
    assert jpn.read_item(user(jpn, "analyst"), result["item_id"])["payload_b64"] == "bGF1bmNo"


def test_a_receipt_or_a_request_never_waits_for_a_tree_head_while_bulk_holds_the_write_lock(
    two: dict[str, Node],
) -> None:
    """Each peer request and receipt carries the node's signed tree head; signing a new one
    is a write on the main file. A head older than a second is used as it is while a new
    one is signed in the background, so a flash receipt does not wait for bulk (R17)."""
    kor = two["KOR"]
    assert asyncio.run(heads.for_peer(kor)) == kor.own_head()  # none cached yet: signed at once
    old = kor.own_head()
    kor.partner.head_cache = (time.monotonic() - 60, old)  # a minute old
    kor.provide_alert(user(kor, "duty_officer"), LAUNCH, "w1")
    kor.sequence_ledger()  # the log has grown: a new head is stored as it is signed
    assert kor.cached_head() is None
    loop = asyncio.new_event_loop()
    try:
        assert holding_the_bulk_lock(kor.engine, lambda: loop.run_until_complete(heads.for_peer(kor))) == old

        async def signed_meanwhile() -> None:  # in the background, once bulk let go
            while kor.cached_head() is None:
                await asyncio.sleep(0.05)

        loop.run_until_complete(asyncio.wait_for(signed_meanwhile(), 20))
    finally:
        loop.close()


def test_flash_rows_move_into_the_main_tables_once_and_the_stream_sees_the_same_events(
    two: dict[str, Node],
) -> None:
    kor, jpn = two["KOR"], two["JPN"]
    sent = [kor.provide_alert(user(kor, "duty_officer"), LAUNCH, "w1") for _ in range(3)]
    for _result, [row], _ in sent:
        receipt, _ = jpn.receive_alerts("KOR", [row["body"]], "flash")
        kor.delivered([row["key"]], receipt, "signature", {}, "flash")
    before = [(r["seq"], r["alert_id"]) for r in jpn.alerts_after(0)]
    assert [a for _, a in before] == [r["item_id"] for r, _, _ in sent]

    for node in (kor, jpn):
        node.sequence_ledger()
    for node in (kor, jpn):
        assert [(r["seq"], r["alert_id"]) for r in node.alerts_after(0)] == before  # Last-Event-ID still holds
        assert count(node.engine, t.items) == 3
        assert count(node.engine, t.alerts) == 3
        assert count(node.engine, t.ledger_queue) == 0
        if node.flash.separate:  # the flash file holds nothing once moved
            assert all(count(node.flash.engine, getattr(node.flash, n)) == 0 for n in ("items", "alerts", "queue"))
    assert count(kor.engine, t.receipts) == 3
    assert kor.pending("JPN") == 0
    with kor.engine.connect() as conn:  # the outbox's history too, delivered
        assert conn.execute(select(func.count()).where(t.outbox.c.delivered_at.is_not(None))).scalar_one() == 3
    peers = {p: c.current for p, c in jpn.peer_chains.items()}
    assert audit.verify_node(jpn.engine, jpn.public, peers)["queued"] == 0
    kinds = _ledger_kinds(jpn.engine)
    assert kinds.count("receipt") == 3  # one entry per report received, no more
    listed, _ = jpn.list_items(user(jpn, "analyst"), 0, 10)
    assert {i["item_id"] for i in listed} == {r["item_id"] for r, _, _ in sent}


def test_a_repeat_of_a_report_already_moved_is_acknowledged_and_stored_nowhere_again(two: dict[str, Node]) -> None:
    kor, jpn = two["KOR"], two["JPN"]
    result, [row], _ = kor.provide_alert(user(kor, "duty_officer"), LAUNCH, "w1")
    jpn.receive_alerts("KOR", [row["body"]], "flash")
    jpn.sequence_ledger()
    receipt, fresh = jpn.receive_alerts("KOR", [row["body"]], "flash")  # the sender never saw the receipt
    assert receipt["received"] == [result["item_id"]]
    assert fresh == []
    jpn.sequence_ledger()
    assert count(jpn.engine, t.items) == 1
    assert count(jpn.engine, t.alerts) == 1
    assert _ledger_kinds(jpn.engine).count("receipt") == 1


@pytest.fixture(params=["sqlite", "postgresql+flash"])
def kor_on_sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Node]:
    """KOR's node with a flash store of its own: a file (SQLite), a database (PostgreSQL)."""
    with _pair(tmp_path, request.param) as made:
        yield made["KOR"]


def _reopen(node: Node, main_url: str | None = None) -> Node:
    """The node opened again, as a restarted process opens it."""
    return Node(
        node.config,
        open_database(
            main_url or node.engine.url.render_as_string(hide_password=False), flash_url=node.config.flash_database_url
        ),
        SystemClock(),
    )


def _remove_flash_store(node: Node) -> None:
    """The flash store lost (a file deleted, a database emptied); the main one kept."""
    path = str(node.flash.path)
    if node.flash.engine.dialect.name == "sqlite":
        node.flash.engine.dispose()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    with node.flash.engine.begin() as conn:
        for name in [*flash.MIRRORED, "flash_meta"]:
            conn.execute(text(f'DROP TABLE "{name}"'))
    node.flash.engine.dispose()


def test_rows_a_stopping_worker_holds_go_to_the_next_worker_at_once(two: dict[str, Node]) -> None:
    """``Delivery.stop`` gives back what it claimed and did not send: a restarted node sends it
    at once instead of waiting out the 30-second lease."""
    kor = two["KOR"]
    kor.provide(user(kor, "analyst"), [ItemSpec("JPN", "군사II급비밀", b"bulk", purposes=("nk-missile",))])
    report, handed, _ = kor.provide_alert(user(kor, "duty_officer"), LAUNCH, "w1")
    assert [r["ref"] for r in handed] == [report["item_id"]]  # committed already claimed by w1
    assert len(kor.claim("JPN", "bulk", "w1", 10)) == 1
    assert kor.claim("JPN", "bulk", "w2", 10) == []
    assert kor.claim("JPN", "flash", "w2", 10) == []

    kor.release("w1")

    assert len(kor.claim("JPN", "bulk", "w2", 10)) == 1
    assert [r["ref"] for r in kor.claim("JPN", "flash", "w2", 10)] == [report["item_id"]]
    assert kor.pending("JPN") == 2  # given back, not marked delivered


def test_a_claim_skips_the_rows_its_worker_has_in_hand_and_takes_what_follows(two: dict[str, Node]) -> None:
    node = two["KOR"]
    analyst = user(node, "analyst")
    node.provide(analyst, [ItemSpec("JPN", "군사II급비밀", f"item {i}".encode()) for i in range(3)])
    out = node.claim("JPN", "bulk", "w1", 2)  # with the partner
    ahead = node.claim("JPN", "bulk", "w1", 2, skip=[r["key"] for r in out])
    assert [r["seq"] for r in ahead] == [out[-1]["seq"] + 1]
    # No longer in hand (say its receipt failed to record): the worker's next claim sends it again, in order.
    assert [r["key"] for r in node.claim("JPN", "bulk", "w1", 10)] == [r["key"] for r in out + ahead]
    assert node.claim("JPN", "bulk", "w2", 10) == []  # all still w1's


def test_a_failed_bulk_send_gives_back_the_batch_claimed_ahead_of_it_in_order(two: dict[str, Node]) -> None:
    node = two["KOR"]
    analyst = user(node, "analyst")
    node.provide(analyst, [ItemSpec("JPN", "군사II급비밀", f"item {i}".encode()) for i in range(300)])
    delivery = Delivery(node)
    delivery.worker_id = "w1"
    delivery.stopping = True  # no back-off sleep in the test
    delivery.clients["JPN"] = httpx.AsyncClient(
        base_url="https://jpn.invalid", transport=httpx.MockTransport(lambda _: httpx.Response(503))
    )
    out = node.claim("JPN", "bulk", "w1", 256)
    assert not asyncio.run(delivery._deliver("JPN", "bulk", out))
    again = node.claim("JPN", "bulk", "w2", 500)  # another worker: all 300, the first batch first
    assert [r["seq"] for r in again] == sorted(r["seq"] for r in again)
    assert [r["key"] for r in again[:256]] == [r["key"] for r in out]
    assert [r["attempts"] for r in again] == [1] * 256 + [0] * 44  # the batch claimed ahead was not sent


def test_a_move_cut_short_before_the_flash_file_is_trimmed_moves_nothing_twice(kor_on_sqlite: Node) -> None:
    node = kor_on_sqlite
    assert node.flash.separate
    if node.engine.dialect.name == "sqlite":
        assert node.flash.path == f"{node.engine.url.database}-flash"
    else:
        assert node.flash.path == node.config.flash_database_url
    for _ in range(2):
        node.provide_alert(user(node, "duty_officer"), LAUNCH, None)
    moved, _marks = flash.copy_rows(node.engine, node.flash)  # ... and the process dies here
    assert moved == 6
    assert count(node.flash.engine, node.flash.items) == 2
    node.provide_alert(user(node, "duty_officer"), LAUNCH, None)  # one more after the restart
    node.sequence_ledger()
    assert count(node.engine, t.items) == 3
    assert count(node.engine, t.alerts) == 3
    assert _ledger_kinds(node.engine).count("provide") == 3
    assert count(node.flash.engine, node.flash.items) == 0


def test_rows_moved_but_not_yet_trimmed_are_moved_once_and_trimmed_by_the_flash_files_writer(
    kor_on_sqlite: Node,
) -> None:
    """A main process with a flash process only copies; the flash process trims (``trim_moved``)."""
    node = kor_on_sqlite
    node.provide_alert(user(node, "duty_officer"), LAUNCH, None)
    assert (
        flash.move(node.engine, node.flash, trim_here=False) == 3
    )  # the report, its alert, its ledger entry (its outbox row waits) ...
    assert count(node.flash.engine, node.flash.items) == 1  # ... still in the flash file
    assert flash.queued(node.engine, node.flash) == 0  # its ledger entry counts once, in the main file's queue
    assert flash.move(node.engine, node.flash, trim_here=False) == 0  # nothing twice
    node.provide_alert(user(node, "duty_officer"), LAUNCH, None)
    assert flash.move(node.engine, node.flash, trim_here=False) == 3  # the next report, past the lingering one
    [first, second] = node.alerts_after(0)
    assert first["seq"] < second["seq"]
    node.trim_flash()
    assert all(count(node.flash.engine, getattr(node.flash, n)) == 0 for n in ("items", "alerts", "queue"))
    node.sequence_ledger()
    assert count(node.engine, t.items) == 2
    assert _ledger_kinds(node.engine).count("provide") == 2


def test_a_new_flash_file_counts_on_from_the_alerts_already_moved(kor_on_sqlite: Node, tmp_path: Path) -> None:
    node = kor_on_sqlite
    node.provide_alert(user(node, "duty_officer"), LAUNCH, None)
    node.sequence_ledger()
    [first] = node.alerts_after(0)
    path = node.flash.path
    _remove_flash_store(node)
    again = _reopen(node)
    assert again.flash.path == path
    assert again.flash.separate
    again.provide_alert(user(node, "duty_officer"), LAUNCH, None)
    seqs = [r["seq"] for r in again.alerts_after(0)]
    assert seqs[0] == first["seq"]
    assert seqs[1] > first["seq"]
    again.sequence_ledger()  # and its other rows count on too: the move takes every one of them
    assert count(again.engine, t.items) == 2
    assert _ledger_kinds(again.engine).count("provide") == 2
    again.dispose()


def test_a_flash_file_of_another_schema_is_remade_when_empty_and_refused_with_rows(kor_on_sqlite: Node) -> None:
    node = kor_on_sqlite
    _mark_older(node)
    remade = _reopen(node)  # empty: made again
    remade.provide_alert(user(node, "duty_officer"), LAUNCH, None)
    _mark_older(remade)
    with pytest.raises(flash.FlashFileError, match=r"made by another version of gsomia and holds 4 rows not yet"):
        _reopen(node)
    remade.dispose()


def _ledger_kinds(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(select(t.ledger_entries.c.kind).order_by(t.ledger_entries.c.idx)).scalars())


def _mark_older(node: Node) -> None:
    """The flash store as another version of gsomia left it (the tables' schema differs)."""
    node.flash.engine.dispose()
    if node.flash.engine.dialect.name == "sqlite":
        with contextlib.closing(sqlite3.connect(str(node.flash.path))) as conn, conn:
            conn.execute("UPDATE flash_meta SET value = 'older' WHERE name = 'schema'")
        return
    with node.flash.engine.begin() as conn:
        conn.execute(text("UPDATE flash_meta SET value = 'older' WHERE name = 'schema'"))
    node.flash.engine.dispose()


def test_a_flash_file_beside_another_database_is_refused_while_it_holds_rows(
    kor_on_sqlite: Node, tmp_path: Path
) -> None:
    node = kor_on_sqlite
    node.provide_alert(user(node, "duty_officer"), LAUNCH, None)  # waits in the flash store
    node.flash.engine.dispose()
    if node.engine.dialect.name == "sqlite":  # a copy of the file beside another database
        other = tmp_path / "other.db"
        for suffix in ("", "-wal", "-shm"):
            if Path(f"{node.flash.path}{suffix}").exists():
                Path(f"{other}-flash{suffix}").write_bytes(Path(f"{node.flash.path}{suffix}").read_bytes())
        with pytest.raises(flash.FlashFileError, match=r"belongs to another database than .*other\.db and holds 4 row"):
            Node(node.config, open_database(f"sqlite:///{other}"), SystemClock())
        return
    with pg_databases(1) as [other_url]:  # another main database named with the same flash database
        name = other_url.rsplit("/", 1)[1]
        with pytest.raises(flash.FlashFileError, match=rf"belongs to another database than {name} and holds 4 row"):
            _reopen(node, other_url)


def test_a_report_received_into_a_flash_database_waits_for_a_trim_in_progress(tmp_path: Path) -> None:
    """Between its look at the main database and its insert, a receipt holds trims off: a
    report copied to the main database and trimmed meanwhile would be stored a second time."""
    with _pair(tmp_path, "postgresql+flash") as two:
        kor, jpn = two["KOR"], two["JPN"]
        result, [row], _ = kor.provide_alert(user(kor, "duty_officer"), LAUNCH, "w1")
        done: list[Any] = []
        with jpn.flash.engine.connect() as trimming:
            trimming.begin()
            trimming.execute(select(func.pg_advisory_xact_lock(flash._TRIMMING)))  # as ``flash.trim`` does
            receiving = threading.Thread(target=lambda: done.append(jpn.receive_alerts("KOR", [row["body"]], "flash")))
            receiving.start()
            receiving.join(timeout=1.0)
            assert not done, "the receipt went ahead during a trim"
            trimming.rollback()
        receiving.join(timeout=20)
        [(receipt, [arrived])] = done
        assert receipt["received"] == [result["item_id"]]
        assert arrived.alert_id == result["item_id"]
