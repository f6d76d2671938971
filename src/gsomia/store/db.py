"""Engines and migrations: one function to open a node's database, schema current."""

from __future__ import annotations

import contextlib
import os
import select
import stat
from pathlib import Path
from typing import Any, Protocol

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlalchemy.exc import DisconnectionError

from gsomia.core.errors import InvalidInput
from gsomia.store.engines import OPTION, EngineState, state_of
from gsomia.store.gate import WriteGate

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _sqlite_pragmas(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    # WAL lets readers run beside the writer; synchronous=NORMAL is durable in WAL
    # mode against process crashes (kill -9), which is what the node must survive.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _no_autocheckpoint(dbapi_connection: object, _record: object) -> None:
    # A commit that takes the WAL past 1,000 pages copies it into the database file while
    # it still holds SQLite's one write lock, and every flash write waits for it (R17). A
    # node's server process checkpoints from a task of its own instead (``checkpoint``).
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.close()


def owns_checkpoints(engine: Engine) -> bool:
    """Whether ``engine`` was made with ``own_checkpoints`` (its commits never checkpoint)."""
    return state_of(engine).own_checkpoints


def checkpoint(engine: Engine) -> None:
    """Copy the SQLite WAL into the database file without taking the write lock (PASSIVE)."""
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")


def reading(engine: Engine) -> Connection:
    """A connection for one read statement. On PostgreSQL it runs in autocommit: the read
    is one round trip to the server instead of three (BEGIN, the read, ROLLBACK), and a
    flash report's path reads the database three to five times (R17). SQLite reads take
    no round trips and keep the usual deferred transaction."""
    conn = engine.connect()
    if engine.dialect.name == "postgresql":
        conn.execution_options(isolation_level="AUTOCOMMIT")
    return conn


def make_engine(url: str, own_checkpoints: bool = False, flash_url: str | None = None) -> Engine:
    """``own_checkpoints``: the caller runs ``checkpoint`` itself; commits never do (SQLite).
    ``flash_url``: the flash lane's own PostgreSQL database (``store.flash``).

    The engine carries the store's state for its database (``store.engines``), made here with it."""
    if not url.startswith(("sqlite", "postgresql")):
        raise InvalidInput(
            f"database_url: {url.split(':', 1)[0]!r} is not supported (sqlite:/// or postgresql+psycopg://)"
        )
    if url.startswith("sqlite"):
        database = make_url(url).database
        on_disk = database if database and database != ":memory:" else None  # a file: a gate across processes
        state = EngineState(WriteGate(on_disk), flash_url, own_checkpoints)
        engine = create_engine(
            url, connect_args={"check_same_thread": False, "timeout": 10}, execution_options={OPTION: state}
        )
        _private_sqlite_files(engine.url.database)
        event.listen(engine, "connect", _sqlite_pragmas)
        if own_checkpoints:
            event.listen(engine, "connect", _no_autocheckpoint)
        return engine
    state = EngineState(None, flash_url, own_checkpoints=False)  # the server checkpoints its log
    engine = create_engine(url, pool_size=10, max_overflow=10, execution_options={OPTION: state})
    event.listen(engine, "checkout", _check_alive)
    return engine


SQLITE_COMPANIONS = ("", "-wal", "-shm", "-journal")


def _private_sqlite_files(database: str | None) -> None:
    """Make a SQLite database file, before SQLite does, readable by its owner alone (0600).

    SQLite would create it with the process's umask (0644: every local user could read
    the ledger, the tokens' hashes and the labels). It creates the write-ahead log and
    shared-memory files (``-wal``, ``-shm``) with the mode of the database file, so they
    follow. Files made by an earlier version are narrowed as well, where this user owns them."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    with contextlib.suppress(FileExistsError, FileNotFoundError):  # a missing directory: SQLite says so
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o600))
    for suffix in SQLITE_COMPANIONS:
        path = database + suffix
        with contextlib.suppress(OSError):  # missing, or another user's: left as it is
            if stat.S_IMODE(os.stat(path).st_mode) & 0o077:
                os.chmod(path, 0o600)


def _check_alive(dbapi_connection: Any, _record: object, _proxy: object) -> None:
    """A pooled PostgreSQL connection is checked at checkout without a round trip.

    An idle session has nothing to say: the server writes to it only to end it (a restart,
    a fail-over, ``pg_terminate_backend``: an error message, then the socket closes). So a
    connection whose socket has anything to read, or that psycopg knows is closed or
    broken, is replaced before use (``DisconnectionError``: the pool discards it and
    takes another). ``pool_pre_ping`` learnt the same with a ``SELECT 1``, a round trip per
    checkout, and a flash report checks out five connections on its way through two nodes
    (R17). Neither can tell a connection whose server vanished without closing it (a
    network partition): its next statement fails and is answered 503."""
    if dbapi_connection.closed or dbapi_connection.broken:
        raise DisconnectionError("the connection is closed")
    waiting = select.poll()
    waiting.register(dbapi_connection.pgconn.socket, select.POLLIN | select.POLLERR | select.POLLHUP)
    if waiting.poll(0):
        raise DisconnectionError("the server wrote to an idle connection: it is ending it")


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest migration (idempotent)."""
    with engine.begin() as connection:
        cfg = alembic_config(str(engine.url))
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")


class _NodeDatabases(Protocol):  # a NodeConfig, without the store importing the node
    @property
    def database_url(self) -> str: ...
    @property
    def flash_database_url(self) -> str | None: ...


def open_node_database(config: _NodeDatabases, own_checkpoints: bool = False) -> Engine:
    """``open_database`` for a node's configuration: its database and its flash lane's."""
    return open_database(config.database_url, own_checkpoints, config.flash_database_url)


def flash_url_of(engine: Engine) -> str | None:
    """The flash lane's own PostgreSQL database given to ``open_database`` (``store.flash``)."""
    return state_of(engine).flash_url


def open_database(url: str, own_checkpoints: bool = False, flash_url: str | None = None) -> Engine:
    """The node's database, schema current; ``flash_url``: its flash lane's own PostgreSQL
    database (``flash_database_url``), which the flash store opens when first used."""
    engine = make_engine(url, own_checkpoints, flash_url)
    upgrade(engine)
    return engine
