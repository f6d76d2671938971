"""The SQLite write gate: urgent writers pass before waiting bulk ones; it never deadlocks.

Ordering is observed with events, never with timings.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import text

from gsomia.store import gate
from gsomia.store.db import make_engine


def test_urgent_waiter_goes_before_bulk_waiters_that_came_first() -> None:
    g = gate.WriteGate()
    order: list[str] = []
    release = threading.Event()
    holding = threading.Event()

    def holder() -> None:
        with g.hold(False):
            holding.set()
            release.wait()
            order.append("holder")

    def writer(name: str, urgent: bool) -> None:
        with g.hold(urgent):
            order.append(name)

    first = threading.Thread(target=holder)
    first.start()
    holding.wait()
    bulk = [threading.Thread(target=writer, args=(f"bulk{i}", False)) for i in range(3)]
    for t in bulk:
        t.start()
    _wait_until(lambda: _waiters(g) == 3)
    flash = threading.Thread(target=writer, args=("flash", True))
    flash.start()
    _wait_until(lambda: g._urgent_waiting == 1)
    release.set()
    for t in (first, *bulk, flash):
        t.join()
    assert order[:2] == ["holder", "flash"]
    assert sorted(order[2:]) == ["bulk0", "bulk1", "bulk2"]


def test_a_write_inside_the_holders_own_passes() -> None:
    g = gate.WriteGate()
    with g.hold(False), g.hold(True):
        pass
    with g.hold(True):  # released
        pass


def test_a_gated_writer_goes_ahead_after_the_wait_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    g = gate.WriteGate()
    monkeypatch.setattr(gate, "WAIT", 0.01)
    done = threading.Event()

    def writer() -> None:
        with g.hold(False):
            done.set()

    with g.hold(False):
        t = threading.Thread(target=writer)
        t.start()
        t.join()  # returns although the gate is held: it went ahead ungated (SQLite's own lock still orders it)
    assert done.is_set()
    with g.hold(True):  # and the gate is free again afterwards
        pass


def test_begin_gates_sqlite_only_and_commits(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/g.db")
    assert gate.gate_of(engine) is gate.gate_of(engine) is not None
    with gate.begin(engine) as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
        conn.execute(text("INSERT INTO t VALUES (1)"))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT x FROM t")).scalar_one() == 1
    engine.dispose()


def _waiters(g: gate.WriteGate) -> int:
    # Threads blocked in Condition.wait: the condition's waiter list (CPython).
    return len(g._cond._waiters)  # type: ignore[attr-defined]


def _wait_until(ready: Callable[[], bool]) -> None:
    event = threading.Event()
    while not ready():
        event.wait(0.001)


# --- across processes: lock files beside the database ---------------------------------------
# Two gates on one database file stand for two processes: flock locks belong to open files,
# so they exclude each other within one process just as across processes.


def _blocked_flocks() -> int:
    # Requests blocked on a lock, as the kernel lists them ("N: -> FLOCK ...").
    return sum(1 for line in Path("/proc/locks").read_text().splitlines() if "-> FLOCK" in line)


def test_across_processes_an_urgent_writer_goes_before_a_bulk_writer_that_came_first(tmp_path: Path) -> None:
    db = str(tmp_path / "node.db")
    main, flash, other = gate.WriteGate(db), gate.WriteGate(db), gate.WriteGate(db)
    order: list[str] = []
    release = threading.Event()
    holding = threading.Event()
    baseline = _blocked_flocks()

    def holder() -> None:
        with main.hold(False):
            holding.set()
            release.wait()
            order.append("holder")

    def writer(g: gate.WriteGate, name: str, urgent: bool) -> None:
        with g.hold(urgent):
            order.append(name)

    first = threading.Thread(target=holder)
    first.start()
    holding.wait()
    bulk = threading.Thread(target=writer, args=(other, "bulk", False))
    bulk.start()
    _wait_until(lambda: _blocked_flocks() == baseline + 1)  # the bulk writer queues for the gate
    urgent = threading.Thread(target=writer, args=(flash, "flash", True))
    urgent.start()
    _wait_until(lambda: _blocked_flocks() == baseline + 2)  # then the flash writer
    release.set()
    for t in (first, urgent, bulk):
        t.join()
    assert order == ["holder", "flash", "bulk"]


def test_a_process_killed_holding_the_gate_leaves_it_free(tmp_path: Path) -> None:
    import subprocess
    import sys

    db = str(tmp_path / "node.db")
    code = (
        "import sys, time\nfrom gsomia.store import gate\n"
        f"with gate.WriteGate({db!r}).hold(False):\n    print('held', flush=True)\n    time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "held"
        proc.kill()  # kill -9: no clean-up
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    with gate.WriteGate(db).hold(True):  # would block forever if the lock had outlived the process
        pass


# --- checkpoints: not inside a commit ----------------------------------------------------------


def test_a_server_process_checkpoints_the_wal_itself_and_its_commits_never_do(tmp_path: Path) -> None:
    from gsomia.store.db import open_database

    plain = open_database(f"sqlite:///{tmp_path}/a.db")
    own = open_database(f"sqlite:///{tmp_path}/b.db", own_checkpoints=True)
    with plain.connect() as a, own.connect() as b:
        assert a.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one() == 1000  # SQLite's default
        assert b.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one() == 0
    plain.dispose()
    own.dispose()
