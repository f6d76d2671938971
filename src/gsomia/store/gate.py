"""A priority write gate for SQLite: urgent writers (flash reports) go before bulk ones.

SQLite has one write lock per database. A writer that finds it taken polls: its busy
handler sleeps 1, 2, 5, 10 … up to 100 ms between tries, so a flash report's one-row
write queued behind a 500-item bulk transaction sleeps far longer than that
transaction lasts, and behind several of them it may wait for all of them. Inside one
node process the gate serialises write transactions itself, in Python, before SQLite
is asked: waiters are woken the moment the holder commits, and urgent waiters are
woken before any bulk waiter.

It only orders; SQLite still does the locking. Other processes on the same database
(another node process, the CLI) are not gated and meet the busy handler as before, and
a writer that waits longer than ``WAIT`` goes ahead ungated, so a mistake here can
slow a writer but never deadlock or corrupt one. PostgreSQL needs no gate: its lock
waiters are woken by the server.

Which writers are urgent is a property of the thread: the flash and control lanes'
threads mark themselves with ``mark_urgent`` (``node.lanes``).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine

WAIT = 10.0  # seconds; SQLite's busy_timeout, after which a gated writer goes ahead anyway

_local = threading.local()


def mark_urgent() -> None:
    """Mark the calling thread's writes urgent (a pool initializer for the flash lane)."""
    _local.urgent = True


def urgent() -> bool:
    return bool(getattr(_local, "urgent", False))


class WriteGate:
    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._held = False
        self._holder: int | None = None
        self._urgent_waiting = 0

    @contextmanager
    def hold(self, is_urgent: bool) -> Iterator[None]:
        if self._holder == threading.get_ident():  # a write inside this thread's own: it holds the gate already
            yield
            return
        got = self._acquire(is_urgent)
        try:
            yield
        finally:
            if got:
                with self._cond:
                    self._held = False
                    self._holder = None
                    self._cond.notify_all()

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


_GATES: weakref.WeakKeyDictionary[Engine, WriteGate] = weakref.WeakKeyDictionary()
_GATES_LOCK = threading.Lock()


def gate_of(engine: Engine) -> WriteGate | None:
    if engine.dialect.name != "sqlite":
        return None
    with _GATES_LOCK:
        found = _GATES.get(engine)
        if found is None:
            found = _GATES[engine] = WriteGate()
        return found


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
