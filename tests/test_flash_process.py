"""A node's flash process (``flash_listen``): flash work on ports and in a process of its own (R17).

Real nodes over real HTTP on SQLite and PostgreSQL: reports, notes and bulk items cross
between the two processes of each node, the flash process goes when its node goes (also on
``kill -9``), a flash process that dies is started again, and bad configurations are refused.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from gsomia.cli.demo import terms_only
from gsomia.core.errors import AgreementFileError
from gsomia.node.process import NodeProcess, answers
from gsomia.node.runtime import config as node_config
from gsomia.node.setup.provision import provision_pair
from nodes import AGREEMENT, PG_ADMIN, FlashListener, Pair, node_pair

GSOMIA = str(Path(sys.executable).parent / "gsomia")
LAUNCH = {"to": "KOR", "classification": "極秘", "purposes": ["nk-missile"]}


@pytest.fixture(params=["sqlite", "postgresql", "postgresql+flash"])
def split_pair(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Pair]:
    """Each node with its flash process; ``postgresql+flash``: its flash lane in a database of its own."""
    with node_pair(tmp_path, request.param, flash_process=True) as p:
        yield p


def flash_pids(config: Path) -> list[int]:
    """The flash processes running for the node configured at ``config``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--flash-link" in argv and str(config).encode() in argv:
            found.append(int(entry.name))
    return found


def wait_until(check: object, what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_reports_notes_and_items_cross_between_the_two_processes_of_each_node(split_pair: Pair) -> None:
    pair = split_pair
    kor = pair.nodes["KOR"]
    assert kor.flash_user_url
    assert kor.flash_user_url != kor.user_url
    on_flash = FlashListener(kor.alerts_url, kor.tokens["duty_officer"])
    on_main = FlashListener(kor.user_url, kor.tokens["duty_officer"])
    for listener in (on_flash, on_main):
        listener.start()
        assert listener.ready.wait(10)
    duty_flash = pair.user("JPN", "duty_officer", flash=True)
    duty_main = pair.user("JPN", "duty_officer")
    ids = pair.share("JPN", "KOR", "秘", 50)  # bulk, through the main processes
    for n, duty in enumerate([duty_flash, duty_main, duty_flash]):  # the main one hands its report over
        r = duty.post("/alerts", {**LAUNCH, "text": f"launch {n}"})
        assert r.status_code == 201, r.text
    want = ["launch 0", "launch 1", "launch 2"]
    pair.wait(lambda: len(on_flash.events) >= 3 and len(on_main.events) >= 3, "the reports on both streams", 30)
    for listener in (on_flash, on_main):
        listener.done.set()
        assert [e["text"] for _, e in listener.events] == want  # in order, once, on either port
    pair.wait(lambda: pair.pending("JPN") == 0, "bulk delivery")
    assert [r["item_id"] for r in pair.received("KOR") if r["item_id"] in set(ids)] == ids
    # Items posted to the flash port are still delivered, by the main process.
    r = pair.user("JPN", "analyst", flash=True).post(
        "/items", {"items": [{"to": "KOR", "classification": "秘", "text": "via the flash port"}]}
    )
    assert r.status_code == 201, r.text
    pair.wait(lambda: r.json()["items"][0]["item_id"] in {x["item_id"] for x in pair.received("KOR")}, "that item")
    # A note recorded on KOR's main process goes out through its flash process and binds both nodes.
    note = pair.user("KOR", "security_authority").post("/notes", {"to": "JPN", "type": "termination_notice"})
    assert note.status_code == 201, note.text
    for party, other in (("KOR", "JPN"), ("JPN", "KOR")):
        for flash in (False, True):
            user = pair.user(party, "analyst", flash=flash)
            pair.wait(lambda u=user, o=other: u.get("/status").json()[o]["state"] == "termination_pending", "status")
    # What the flash processes queued for the ledger, the main processes sequence: nothing stays queued.
    for node in pair.nodes.values():

        def audit(config: Path = node.config) -> dict[str, Any]:
            r = subprocess.run(
                [GSOMIA, "audit", "verify", "--config", str(config), "--json"],
                capture_output=True,
                text=True,
                timeout=120,
                check=True,
            )
            return dict(json.loads(r.stdout))

        pair.wait(lambda a=audit: a()["queued"] == 0, "the flash processes' ledger entries to be sequenced")
        assert audit()["size"] > 0
        # On SQLite the main process moves the reports out of the flash file; the flash process,
        # which alone writes that file, deletes them there.
        database = node_config.load(node.config).database_url.removeprefix("sqlite:///")
        if database != node_config.load(node.config).database_url:

            def left(path: str = f"{database}-flash") -> int:
                with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
                    return int(conn.execute("SELECT count(*) FROM items").fetchone()[0])

            pair.wait(lambda f=left: f() == 0, "the flash process to trim its file")


def test_the_flash_process_goes_with_its_node_even_on_kill_9(tmp_path: Path) -> None:
    with node_pair(tmp_path, "sqlite", flash_process=True) as pair:
        kor = pair.nodes["KOR"]
        [child] = flash_pids(kor.config)
        pair.procs["KOR"].kill()  # no chance to stop it
        wait_until(lambda: not flash_pids(kor.config), "KOR's flash process to go")
        assert kor.flash_user_url
        assert not answers(kor.flash_user_url)
        # Reports sent meanwhile wait in JPN's outbox, and arrive once KOR is back.
        duty = pair.user("JPN", "duty_officer", flash=True)
        assert duty.post("/alerts", {**LAUNCH, "text": "while KOR was down"}).status_code == 201
        pair.procs["KOR"].start()
        [again] = flash_pids(kor.config)
        assert again != child
        listener = FlashListener(kor.alerts_url, kor.tokens["duty_officer"])
        listener.start()
        pair.wait(lambda: listener.events, "the report held while KOR was down", 30)
        listener.done.set()
        assert listener.events[0][1]["text"] == "while KOR was down"


def test_a_flash_process_that_dies_is_started_again(tmp_path: Path) -> None:
    with node_pair(tmp_path, "sqlite", flash_process=True) as pair:
        kor = pair.nodes["KOR"]
        [child] = flash_pids(kor.config)
        os.kill(child, signal.SIGKILL)
        wait_until(lambda: flash_pids(kor.config) not in ([], [child]), "a new flash process")
        assert kor.flash_user_url is not None
        wait_until(lambda: answers(kor.flash_user_url or ""), "the new flash process to answer")
        listener = FlashListener(kor.alerts_url, kor.tokens["duty_officer"])
        listener.start()
        assert listener.ready.wait(10)
        r = pair.user("JPN", "duty_officer", flash=True).post("/alerts", {**LAUNCH, "text": "after the restart"})
        assert r.status_code == 201, r.text
        pair.wait(lambda: listener.events, "a report through the new flash process", 30)
        listener.done.set()
        # KOR's own reports go out through it as well (its main process hands them over).
        r = pair.user("KOR", "duty_officer").post(
            "/alerts", {"to": "JPN", "classification": "군사II급비밀", "text": "from KOR", "purposes": ["nk-missile"]}
        )
        assert r.status_code == 201, r.text
        pair.wait(lambda: pair.pending("KOR") == 0, "KOR's report to be acknowledged")


def test_the_demo_clock_is_one_clock_for_both_processes(tmp_path: Path) -> None:
    with node_pair(tmp_path, "sqlite", demo=True, flash_process=True) as pair:
        main = pair.user("KOR", "security_authority")
        flash = pair.user("KOR", "security_authority", flash=True)

        def now(user: object) -> datetime:
            return datetime.fromisoformat(user.get("/health").json()["now"])  # type: ignore[attr-defined]

        assert main.post("/demo/clock", {"at": "2019-11-22T17:59:00+09:00"}).status_code == 200
        pair.wait(lambda: now(flash).year == 2019, "the flash process to follow the main one")
        assert abs((now(flash) - now(main)).total_seconds()) < 5
        assert flash.post("/demo/clock", {"at": "2019-08-23T10:00:00+09:00"}).status_code == 200
        pair.wait(lambda: now(main).month == 8, "the main process to follow the flash one")


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda t: t + 'flash_listen = "127.0.0.1:9"\n', "flash_peer_listen"),
        (lambda t: t + 'flash_listen = "127.0.0.1:9"\nflash_peer_listen = "127.0.0.1:9"\n', "flash_peer_listen"),
        (lambda t: t + "bulk_nice = 40\n", "bulk_nice"),
        (lambda t: t + 'bulk_nice = "10"\n', "bulk_nice"),
        (lambda t: t + 'bulk_idle = "yes"\n', "bulk_idle"),
        (lambda t: t + "flash_realtime = 1\n", "flash_realtime"),
        (lambda t: t.replace("public_key =", 'flash_url = "http://127.0.0.1:9"\npublic_key ='), "flash_url"),
        (lambda t: t + 'flash_database_url = "postgresql+psycopg://localhost/f"\n', "flash_database_url"),
        (lambda t: t + 'flash_database_url = "sqlite:///flash.db"\n', "flash_database_url"),
    ],
)
def test_a_bad_flash_configuration_names_the_key(tmp_path: Path, change: object, needle: str) -> None:
    config = provision_pair(tmp_path, terms_only(AGREEMENT, tmp_path / "terms.toml"))["KOR"].config
    text = config.read_text()
    top, _, peers = text.partition("[peers.")
    bad = change(top) + "[peers." + peers if needle != "flash_url" else change(text)  # type: ignore[operator]
    config.write_text(bad)
    with pytest.raises(AgreementFileError, match=needle):
        node_config.load(config)
    r = subprocess.run(
        [GSOMIA, "node", "serve", "--config", str(config)], capture_output=True, text=True, timeout=60, check=False
    )
    assert r.returncode == 2
    assert needle in r.stderr
    assert "Traceback" not in r.stderr


def test_only_a_node_with_flash_ports_runs_a_flash_process(tmp_path: Path) -> None:
    config = provision_pair(tmp_path, terms_only(AGREEMENT, tmp_path / "terms.toml"))["KOR"].config
    r = subprocess.run(
        [GSOMIA, "node", "serve", "--config", str(config), "--flash-link", "3"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 2
    assert "flash_listen" in r.stderr
    assert "Traceback" not in r.stderr


def test_node_process_waits_for_the_flash_process(tmp_path: Path) -> None:
    nodes = provision_pair(tmp_path, terms_only(AGREEMENT, tmp_path / "terms.toml"), flash_process=True)
    kor = nodes["KOR"]
    with NodeProcess(kor.config, kor.user_url, kor.root / "node.log", kor.flash_user_url):
        assert kor.flash_user_url is not None
        assert answers(kor.flash_user_url)
        assert answers(kor.user_url)


def _threads(pid: int) -> list[tuple[int, int]]:  # (policy, nice) of each thread of process pid
    return [
        (os.sched_getscheduler(int(t.name)), os.getpriority(os.PRIO_PROCESS, int(t.name)))
        for t in Path(f"/proc/{pid}/task").iterdir()
    ]


def _may_be_realtime() -> bool:
    """Whether this user may take SCHED_RR, as the flash processes it starts ask to."""
    return os.geteuid() == 0 or resource.getrlimit(resource.RLIMIT_RTPRIO)[0] != 0


@pytest.mark.parametrize("realtime", [True, False])
def test_bulk_work_yields_the_cpu_to_the_flash_process(tmp_path: Path, realtime: bool) -> None:
    """The main process's threads run at nice 19 under SCHED_IDLE, but for the one that starts
    flash processes. Every thread of the flash process runs as real-time SCHED_RR where the
    user may (here: root or an RLIMIT_RTPRIO); with
    ``flash_realtime = false``, or where the user may not, the normal policy (R17)."""
    nodes = provision_pair(tmp_path, terms_only(AGREEMENT, tmp_path / "terms.toml"), flash_process=True)
    kor = nodes["KOR"]
    if not realtime:
        top, _, peers = kor.config.read_text().partition("[peers.")
        kor.config.write_text(f"{top}flash_realtime = false\n\n[peers.{peers}")
    log = kor.root / "node.log"
    with NodeProcess(kor.config, kor.user_url, log, kor.flash_user_url) as node:
        assert node.proc is not None
        main = _threads(node.proc.pid)
        [flash] = flash_pids(kor.config)
        normal = (os.SCHED_OTHER, 0)
        assert sorted(main).count(normal) == 1  # the spawner
        assert all(t == (os.SCHED_IDLE, 19) for t in main if t != normal)
        assert len(main) > 2
        threads = set(_threads(flash))
        if realtime and _may_be_realtime():
            assert threads == {(os.SCHED_RR, 0)}
            assert os.sched_getparam(flash).sched_priority == 1
        else:
            assert threads == {normal}
    warned = "keeps the normal scheduling policy" in log.read_text()
    assert warned == (realtime and not _may_be_realtime())


def _tcp_ports(pid: int) -> set[int]:
    """The local ports of process ``pid``'s TCP sockets."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


@pytest.mark.parametrize("backend", ["postgresql", "postgresql+flash"])
def test_the_flash_process_raises_its_own_postgresql_sessions(tmp_path: Path, backend: str) -> None:
    """On PostgreSQL on this host, the server processes of the flash process's sessions run
    as SCHED_RR too, where the node may change them (root here); the main process's keep
    their policy. Each is found by its client port, which no other process holds (R17).
    With a flash database of its own, its sessions there too."""
    with node_pair(tmp_path, backend, flash_process=True) as pair:
        kor = pair.nodes["KOR"]
        r = pair.user("KOR", "duty_officer", flash=True).post(
            "/alerts", {"to": "JPN", "classification": "군사II급비밀", "text": "a session", "purposes": ["nk-missile"]}
        )
        assert r.status_code == 201, r.text
        [flash] = flash_pids(kor.config)
        cfg = node_config.load(kor.config)
        databases = [url.rsplit("/", 1)[1] for url in (cfg.database_url, cfg.flash_database_url) if url]
        admin = create_engine(PG_ADMIN)
        try:
            with admin.connect() as conn:
                sessions = conn.execute(
                    text("SELECT pid, client_port, datname FROM pg_stat_activity WHERE datname = ANY(:d)"),
                    {"d": databases},
                ).all()
        finally:
            admin.dispose()
        assert {d for _, _, d in sessions} == set(databases)  # the flash process uses its own, where it has one
        ours = _tcp_ports(flash)
        policies: dict[bool, set[int]] = {True: set(), False: set()}  # flash process's or not: policies
        for pid, port, _ in sessions:
            policies[port in ours].add(os.sched_getscheduler(pid))
        expected = os.SCHED_RR if os.geteuid() == 0 else os.SCHED_OTHER  # another user's processes
        assert policies[True] == {expected}
        assert policies[False] == {os.SCHED_OTHER}
        log = (kor.root / "node.log").read_text(errors="replace")
        # Here the flash database is on the same server: the node says that it gains nothing.
        assert ("on the same PostgreSQL server as database_url" in log) == (backend == "postgresql+flash")


def test_the_main_process_copies_the_wal_into_the_database_as_it_goes(tmp_path: Path) -> None:
    with node_pair(tmp_path, "sqlite", flash_process=True) as pair:
        db = pair.nodes["JPN"].root / "node.db"
        before = db.stat().st_size
        pair.share("KOR", "JPN", "군사II급비밀", 300)  # about 1 MiB of WAL: under SQLite's own 4 MiB threshold
        pair.wait(lambda: pair.pending("KOR") == 0, "delivery")
        # Only a checkpoint writes pages into the database file itself.
        pair.wait(lambda: db.stat().st_size > before, "a checkpoint by JPN's main process", timeout=30)
