"""The store's state per database (``store.engines``): made with the engine, one per database
opened, shared by the engine's copies, and never found for an engine the store did not make."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from gsomia.store import db, flash, gate
from nodes import pg_databases


@contextlib.contextmanager
def _two_databases(backend: str, tmp_path: Path) -> Iterator[tuple[Engine, Engine]]:
    """Two nodes' databases, each with a flash store of its own (a file; a PostgreSQL database)."""
    if backend == "sqlite":
        engines = (db.open_database(f"sqlite:///{tmp_path}/a.db"), db.open_database(f"sqlite:///{tmp_path}/b.db"))
        yield engines
        _dispose(*engines)
        return
    with pg_databases(4) as [a, b, a_flash, b_flash]:
        engines = (db.open_database(a, flash_url=a_flash), db.open_database(b, flash_url=b_flash))
        yield engines
        _dispose(*engines)


def _dispose(*engines: Engine) -> None:
    for engine in engines:
        flash.flash_store(engine).engine.dispose()
        engine.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_two_databases_have_a_state_each_and_an_engines_copy_shares_its_engines(backend: str, tmp_path: Path) -> None:
    with _two_databases(backend, tmp_path) as (a, b):
        copy = a.execution_options(logging_token="copy")  # a new Engine object over a's pool
        assert copy is not a

        if backend == "sqlite":
            assert gate.gate_of(a) is not None
            assert gate.gate_of(a) is not gate.gate_of(b)
        else:  # PostgreSQL's server orders writers; the flash databases are named
            assert gate.gate_of(a) is gate.gate_of(b) is None
            assert db.flash_url_of(a) is not None
            assert db.flash_url_of(a) != db.flash_url_of(b)
        assert gate.gate_of(copy) is gate.gate_of(a)
        assert db.flash_url_of(copy) == db.flash_url_of(a)

        a_flash, b_flash = flash.flash_store(a), flash.flash_store(b)
        assert a_flash.separate
        assert b_flash.separate
        assert a_flash is not b_flash
        assert a_flash.path != b_flash.path
        assert flash.flash_store(copy) is a_flash  # one store per database opened: no second file or pool
        assert flash.flash_store(a) is a_flash


def test_two_opens_of_one_database_have_a_state_each(tmp_path: Path) -> None:
    """Two engines on one file (two ``Node``s in one process): each has its own gate, as two
    processes have (the gate's lock files order them), and its own flash engine on the one file."""
    url = f"sqlite:///{tmp_path}/n.db"
    first, second = db.open_database(url), db.open_database(url)
    assert gate.gate_of(first) is not gate.gate_of(second)
    assert flash.flash_store(first) is not flash.flash_store(second)
    assert flash.flash_store(first).path == flash.flash_store(second).path
    _dispose(first, second)


def test_checkpointing_is_the_engines_own_and_its_copies(tmp_path: Path) -> None:
    plain = db.make_engine(f"sqlite:///{tmp_path}/a.db")
    own = db.make_engine(f"sqlite:///{tmp_path}/b.db", own_checkpoints=True)
    assert not db.owns_checkpoints(plain)
    assert db.owns_checkpoints(own)
    assert db.owns_checkpoints(own.execution_options(logging_token="copy"))
    plain.dispose()
    own.dispose()


def test_an_engine_the_store_did_not_make_is_refused_with_a_reason(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/x.db")
    with pytest.raises(LookupError, match=r"made without gsomia\.store\.db\.make_engine"), gate.begin(engine) as conn:
        conn.execute(text("SELECT 1"))
    with pytest.raises(LookupError, match=r"make_engine"):
        flash.flash_store(engine)
    assert not Path(f"{tmp_path}/x.db-flash").exists()  # refused before a flash file was made
    engine.dispose()
