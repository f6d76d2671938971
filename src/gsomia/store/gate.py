"""A priority write gate for SQLite: urgent writers (flash reports) go before bulk ones.

SQLite has one write lock per database. A writer that finds it taken polls: its busy
handler sleeps 1, 2, 5, 10 … up to 100 ms between tries, so a flash report's one-row
write queued behind a 500-item bulk transaction sleeps far longer than that
transaction lasts, and behind several of them it may wait for all of them. Inside one
node process the gate serialises write transactions itself, in Python, before SQLite
is asked: waiters are woken the moment the holder commits, and urgent waiters are
woken before any bulk waiter.

Across the processes of one node (its main and flash processes, ``node/link.py``) the
gate continues as two lock files beside the database, taken with ``flock`` so that the
kernel wakes a waiter the moment the holder lets go: ``<db>-gate``, held for the whole
write transaction, and ``<db>-urgent``, held shared by urgent writers while they queue.
A bulk writer that gets the gate while an urgent writer is queued hands it back and waits
until the urgent one has it. A process that dies
lets go of both with its last file descriptor, so ``kill -9`` leaves nothing locked.

It only orders; SQLite still does the locking. Processes that do not use the gate (the
CLI, another program) meet the busy handler as before, and a writer that waits longer
than ``WAIT`` for the in-process gate goes ahead ungated, so a mistake here can slow a
writer but never corrupt one. Locks are always taken in one order (in-process gate,
lock files, SQLite), so they cannot deadlock. PostgreSQL needs no gate: its lock waiters
are woken by the server.

Which writers are urgent is a property of the thread: the flash and control lanes'
threads mark themselves with ``mark_urgent`` (``node.lanes``).
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine

from gsomia.store.engines import state_of

WAIT = 10.0  # seconds; SQLite's busy_timeout, after which a gated writer goes ahead anyway

_local = threading.local()


def mark_urgent() -> None:
    """Mark the calling thread's writes urgent (a pool initializer for the flash lane)."""
    _local.urgent = True


def urgent() -> bool:
    return bool(getattr(_local, "urgent", False))


class WriteGate:
    def __init__(self, database: str | None = None) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._held = False
        self._holder: int | None = None
        self._urgent_waiting = 0
        self._files = (f"{database}-gate", f"{database}-urgent") if database else None

    @contextmanager
    def hold(self, is_urgent: bool) -> Iterator[None]:
        if self._holder == threading.get_ident():  # a write inside this thread's own: it holds the gate already
            yield
            return
        got = self._acquire(is_urgent)
        try:
            with self._across_processes(is_urgent):
                yield
        finally:
            if got:
                with self._cond:
                    self._held = False
                    self._holder = None
                    self._cond.notify_all()

    @contextmanager
    def _across_processes(self, is_urgent: bool) -> Iterator[None]:
        held: set[str] = _local.__dict__.setdefault("files_held", set())
        if self._files is None or self._files[0] in held:  # in memory, or held by this thread
            yield
            return
        gate = os.open(self._files[0], os.O_RDWR | os.O_CREAT, 0o600)
        try:
            mark = os.open(self._files[1], os.O_RDWR | os.O_CREAT, 0o600)
            try:
                if is_urgent:  # queued, and says so (shared) until it holds the gate
                    fcntl.flock(mark, fcntl.LOCK_SH)
                    fcntl.flock(gate, fcntl.LOCK_EX)
                else:
                    _take_behind_urgent(gate, mark)
            finally:
                os.close(mark)
            held.add(self._files[0])
            try:
                yield
            finally:
                held.discard(self._files[0])
        finally:
            os.close(gate)  # lets go of the flock

    def _acquire(self, is_urgent: bool) -> bool:
        with self._cond:
            if is_urgent:
                self._urgent_waiting += 1
            try:
                ok = self._cond.wait_for(
                    lambda: not self._held and (is_urgent or not self._urgent_waiting), timeout=WAIT
                )
            finally:
                if is_urgent:
                    self._urgent_waiting -= 1
                    if not self._urgent_waiting:
                        self._cond.notify_all()  # bulk waiters held back by this one may go
            if ok:
                self._held = True
                self._holder = threading.get_ident()
            return ok


def _take_behind_urgent(gate: int, mark: int) -> None:
    """A bulk writer's turn at the gate, stepping back whenever an urgent writer is queued."""
    while True:
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(mark, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # an urgent writer waits: let it have the gate, wait until it has
            fcntl.flock(gate, fcntl.LOCK_UN)
            fcntl.flock(mark, fcntl.LOCK_EX)
            fcntl.flock(mark, fcntl.LOCK_UN)
            continue
        fcntl.flock(mark, fcntl.LOCK_UN)
        return


def gate_of(engine: Engine) -> WriteGate | None:
    """The engine's write gate (SQLite; None on PostgreSQL): one per database opened, made with its
    engine by ``db.make_engine`` and shared by the engine's copies (``store.engines``)."""
    return state_of(engine).gate


@contextmanager
def begin(engine: Engine) -> Iterator[Connection]:
    """``engine.begin()``, through the engine's write gate when it has one (SQLite)."""
    gate = gate_of(engine)
    if gate is None:
        with engine.begin() as conn:
            yield conn
        return
    with gate.hold(urgent()), engine.begin() as conn:
        yield conn
