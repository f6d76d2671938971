"""What the store keeps per database: made with its engine, carried by the engine.

A node's database comes with state of its own beside the connection pool: the write gate
that orders its writers (SQLite, ``store.gate``), where its flash lane writes (``store.flash``),
and whether its commits checkpoint the WAL (``store.db``). ``db.make_engine`` makes it
together with the engine and hands it to ``create_engine`` as a user-defined execution
option, so it lives as long as the engine and its copies, two engines (two files, or two opens
of one file) never share it, and every copy the engine makes of itself
(``engine.execution_options(...)``, whose options start from the engine's) reaches the same
gate and flash store as the engine. Reading it costs a dictionary look-up; no module keeps
a registry of engines.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import Engine

if TYPE_CHECKING:
    from gsomia.store.gate import WriteGate
    from gsomia.store.lane import Store

OPTION = "gsomia"  # the execution option's key


class FlashSlot:
    """The database's flash store, made on first use (it may create a file) and once only."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # two threads' first flash reports open one store
        self._store: Store | None = None

    def get(self, make: Callable[[], Store]) -> Store:
        with self._lock:
            if self._store is None:
                self._store = make()
            return self._store


@dataclass(frozen=True, eq=False)  # eq=False: two databases' states are two, whatever they hold
class EngineState:
    gate: WriteGate | None  # SQLite's write gate; None on PostgreSQL, whose server orders writers
    flash_url: str | None  # the flash lane's own PostgreSQL database (``flash_database_url``)
    own_checkpoints: bool  # the process checkpoints the WAL itself; commits never do (SQLite)
    flash: FlashSlot = field(default_factory=FlashSlot)


def state_of(engine: Engine) -> EngineState:
    """The state made with ``engine`` by ``db.make_engine``. An engine made by other means has
    none and is refused: state made for it here would have to be kept in a registry of engines
    to be found again, and a copy of the engine would not find it."""
    found = engine.get_execution_options().get(OPTION)
    if not isinstance(found, EngineState):
        raise LookupError(
            f"{engine.url!r}: an engine made without gsomia.store.db.make_engine has no write gate or flash "
            "store; open the database with db.make_engine or db.open_database"
        )
    return found
