"""The flash lane's own persistence (R17): on SQLite, a second database file beside the node's.

SQLite has one write lock per database file. Each flash report's transactions (the
sender's commit, the receiver's store, the sender's record of the receipt) waited for
whichever bulk transaction held it: a 500-item provision or a 256-item receipt, tens to
hundreds of milliseconds under load. The write gate (``store.gate``) orders waiters; it
cannot shorten a holder. So on SQLite the flash lane writes to ``<db>-flash``, a file
with a write lock of its own and copies of the five tables it writes: ``items``,
``outbox``, ``alerts``, ``receipts`` and ``ledger_queue``.

The node's main process moves committed rows into the tables of the same name in the main
file a moment later (``move``, run by the ledger's sequencer), so listings, proofs and the
ledger see one store. Until then, the readers that must see a report at once (alert
streams, ``read_item``, the outbox count, the claim) look in both files.

Moving survives a crash at any point: the main file's ``flash_moved`` row per table,
written in the moving transaction, says how far rows have been moved, and only after that
commit are they deleted here. The tables here count with AUTOINCREMENT, and a new flash
file starts counting above those marks, so a seq is never used twice.

On PostgreSQL the flash store is the node's own engine and tables (PostgreSQL's row
locks do not make one writer wait for another's unrelated rows), unless the node names
a ``flash_database_url``: a second PostgreSQL database, best on a server of its own. A
commit waits until the write-ahead log is on disk up to its commit record, and a
server's log is one stream: a flash report's commit flushed whatever the bulk lane had
written before it, megabytes at 1,000 items/s (IO:WALSync and LWLock:WALWrite waits of
up to 66 ms). A server of its own gives the flash lane a log of its own, and the same
five tables, moved the same way. An in-memory SQLite database has no second file.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import Callable
from typing import Any

from sqlalchemy import Column, Connection, Engine, MetaData, String, Table, Text, func, insert, inspect, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.schema import CreateTable

from gsomia.core.errors import GsomiaError
from gsomia.core.words import count
from gsomia.store import db, gate
from gsomia.store import schema as t
from gsomia.store.engines import state_of
from gsomia.store.lane import Store, main_store, where

MIRRORED = ("items", "outbox", "alerts", "receipts", "ledger_queue")
_metadata = MetaData()
_TABLES: dict[str, Table] = {}
for _name in MIRRORED:
    _copy = getattr(t, _name).to_metadata(_metadata)
    _copy.dialect_kwargs["sqlite_autoincrement"] = True  # a seq deleted here is never handed out again
    _TABLES[_name] = _copy
_meta = Table(
    "flash_meta", _metadata, Column("name", String(32), primary_key=True), Column("value", Text, nullable=False)
)
# What the file's tables look like: a file made by a version with other columns is not written to.
SCHEMA = hashlib.sha256(
    "".join(str(CreateTable(tbl).compile(dialect=sqlite.dialect())) for tbl in _TABLES.values()).encode()
).hexdigest()[:16]


class FlashFileError(GsomiaError):
    """The flash file cannot be used as it is (made by another version, with rows not yet moved)."""


def flash_path(engine: Engine) -> str | None:
    """The flash file of a SQLite database file; None where there is no file to make."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return None
    return f"{database}-flash"


def _flash_url(engine: Engine) -> str | None:
    """Where the flash lane of the node whose main engine this is writes; None: the main tables."""
    path = flash_path(engine)
    return f"sqlite:///{path}" if path is not None else db.flash_url_of(engine)


def flash_store(engine: Engine) -> Store:
    """The flash store of the node whose main engine this is (made on first use; one per database
    opened, kept with the engine and reached from its copies too: ``store.engines``)."""
    return state_of(engine).flash.get(lambda: _open(engine))


def existing(engine: Engine) -> Store | None:
    """The flash store, if the node has one already (for tools that must not make the file)."""
    path = flash_path(engine)  # a flash database on PostgreSQL is there to be opened: it was named
    return flash_store(engine) if path is None or os.path.exists(path) else None


def _open(main: Engine) -> Store:
    url = _flash_url(main)
    if url is None:
        return main_store(main)
    # Checkpointed like the main file: by the node's checkpointer where it runs one (``db.checkpoint``).
    engine = db.make_engine(url, own_checkpoints=db.owns_checkpoints(main))
    try:
        with gate.begin(engine) as conn:  # the gate's lock file: one process makes the file, the other waits
            if engine.dialect.name == "postgresql":  # and on PostgreSQL, a lock of the transaction's
                conn.execute(select(func.pg_advisory_xact_lock(_PREPARING)))
            _prepare(conn, main)
    except BaseException:
        engine.dispose()
        raise
    tb = _TABLES
    return Store(engine, tb["items"], tb["outbox"], tb["alerts"], tb["receipts"], tb["ledger_queue"], separate=True)


def _prepare(conn: Connection, main: Engine) -> None:
    """Make the tables if missing, counting above what was moved; refuse a file that is not this
    database's (another schema, or another main file) while it holds rows."""
    pair = str(_pair_of(main))
    tables = set(inspect(conn).get_table_names())
    if "flash_meta" in tables:
        meta = {name: value for name, value in conn.execute(select(_meta.c.name, _meta.c.value))}
        if meta.get("schema") == SCHEMA and meta.get("pair") == pair:
            return
        left = sum(
            int(conn.exec_driver_sql(f'SELECT count(*) FROM "{name}"').scalar_one())  # noqa: S608 - our names
            for name in MIRRORED
            if name in tables
        )
        if left:
            path = where(conn.engine)
            if meta.get("schema") != SCHEMA:
                raise FlashFileError(
                    f"{path}: made by another version of gsomia and holds {count(left, 'row')} not yet moved into "
                    "the main database; start that version once to move them"
                )
            raise FlashFileError(
                f"{path}: belongs to another database than {main.url.database} and holds {count(left, 'row')} not yet "
                "moved; restore the database it belongs to, or move it away (its rows are then lost)"
            )
        for name in [*MIRRORED, "flash_meta"]:
            conn.exec_driver_sql(f'DROP TABLE IF EXISTS "{name}"')
    _metadata.create_all(conn)
    with main.connect() as mc:
        marks = {name: int(seq) for name, seq in mc.execute(select(t.flash_moved.c.name, t.flash_moved.c.seq))}
        top_alert = mc.execute(select(func.max(t.alerts.c.seq))).scalar_one() or 0
    # Alert seqs are the streams' event ids (``Last-Event-ID``): they go on from the main file's.
    marks["alerts"] = max(marks.get("alerts", 0), int(top_alert))
    for name in MIRRORED:
        _count_from(conn, name, marks.get(name, 0))
    conn.execute(insert(_meta), [{"name": "schema", "value": SCHEMA}, {"name": "pair", "value": pair}])


def _count_from(conn: Connection, name: str, mark: int) -> None:
    """The table's next seq is above ``mark``: a seq moved once is never handed out again."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("DELETE FROM sqlite_sequence WHERE name = ?", (name,))
        conn.exec_driver_sql("INSERT INTO sqlite_sequence (name, seq) VALUES (?, ?)", (name, mark))
    else:  # setval's third argument: whether ``mark`` itself was used (a sequence starts at 1)
        seq = func.pg_get_serial_sequence(name, "seq")
        conn.execute(select(func.setval(seq, max(mark, 1), mark > 0)))


_PREPARING = 0x6773_6F6D_6961  # "gsomia": the advisory lock two processes making the flash tables take
_TRIMMING = _PREPARING + 1


def hold_trims(conn: Connection) -> None:
    """No rows leave the flash store until this transaction ends.

    A writer that asks the main tables whether a row moved there already, then writes here,
    must not see the row in neither place: copied after its question and trimmed before its
    write. On SQLite the flash file's write lock, which this transaction holds, keeps the
    trim out; on PostgreSQL an advisory lock does, shared by writers, exclusive for a trim."""
    if conn.dialect.name == "postgresql":  # SQL written out: on a flash report's way (R17)
        conn.exec_driver_sql("SELECT pg_advisory_xact_lock_shared(%s)", (_TRIMMING,))


def _pair_of(main: Engine) -> int:
    """A number the main file draws once and its flash file keeps: a flash file restored or
    copied beside another database must not move its rows into that one."""
    with gate.begin(main) as conn:
        q = select(t.flash_moved.c.seq).where(t.flash_moved.c.name == PAIR)
        found = conn.execute(q).scalar_one_or_none()
        if found is None:
            found = secrets.randbits(62)
            conn.execute(insert(t.flash_moved).values(name=PAIR, seq=found))
        return int(found)


PAIR = "(pair)"  # the row of ``flash_moved`` that is no table's mark


# --- moving -------------------------------------------------------------------------------

_KEEP_SEQ = {"alerts"}  # seqs that are ids to someone (stream event ids); others get the main file's


def move(main: Engine, store: Store, limit: int = 1000, trim_here: bool = True) -> int:
    """Move committed rows of the flash file into the main tables; how many moved.

    Outbox rows move once delivered, and only in order (the first undelivered one stops
    them), so each mark stays "everything up to here". Queued ledger entries join the main
    queue, behind what is there, and the sequencer appends them. Without ``trim_here`` the
    rows moved stay in the flash file until ``trim_moved``: a node's main process leaves
    that to its flash process, which alone then writes the flash file (R17: a bulk process
    at low priority must not hold a lock that flash writes wait for)."""
    if not store.separate:
        return 0
    moved, marks = copy_rows(main, store, limit)
    if marks and trim_here:
        trim(store, marks)
    return moved


def trim_moved(main: Engine, store: Store) -> None:
    """Delete from the flash file what the main file's marks say was moved (the second half
    of ``move``, in the process that writes the flash file)."""
    if store.separate:
        marks = _marks(main)
        if marks:
            trim(store, marks)


def _marks(main: Engine) -> dict[str, int]:
    with main.connect() as conn:
        return {
            name: int(seq)
            for name, seq in conn.execute(select(t.flash_moved.c.name, t.flash_moved.c.seq))
            if name in _TABLES
        }


def copy_rows(main: Engine, store: Store, limit: int = 1000) -> tuple[int, dict[str, int]]:
    """The first half of ``move``: copy rows above the marks into the main file, raise the marks."""
    above = _marks(main)  # rows moved already may still be in the flash file, until it is trimmed
    with store.engine.connect() as fc, fc.begin():  # one snapshot: rows committed later move next time
        batches = {name: _unmoved(fc, name, limit, above.get(name, 0)) for name in MIRRORED}
        # An alert moves with or after its item: the streams read alerts joined to items.
        staying = _items_after(fc, batches["items"], above.get("items", 0))
        batches["alerts"] = _prefix(batches["alerts"], lambda r: r["alert_id"] not in staying)
    if not any(batches.values()):  # nothing to move: no turn at the main file's gate
        return 0, {}
    moved = 0
    with gate.begin(main) as conn:
        marks = {name: int(seq) for name, seq in conn.execute(select(t.flash_moved.c.name, t.flash_moved.c.seq))}
        for name, rows in batches.items():
            rows = [r for r in rows if r["seq"] > marks.get(name, 0)]  # copied by a turn that died before trim
            if not rows:
                continue
            _insert(conn, name, rows)
            top = max(r["seq"] for r in rows)
            if name in marks:
                conn.execute(update(t.flash_moved).where(t.flash_moved.c.name == name).values(seq=top))
            else:
                conn.execute(insert(t.flash_moved).values(name=name, seq=top))
            marks[name] = top
            moved += len(rows)
    return moved, marks


def trim(store: Store, marks: dict[str, int]) -> None:
    """The second half of ``move``: delete from the flash file what the main file now holds."""
    with gate.begin(store.engine) as fc:
        if fc.dialect.name == "postgresql":  # after the writers that read the main tables (``hold_trims``)
            fc.execute(select(func.pg_advisory_xact_lock(_TRIMMING)))
        for name, top in marks.items():
            if name in _TABLES:
                table = _TABLES[name]
                fc.execute(table.delete().where(table.c.seq <= top))


def _unmoved(conn: Connection, name: str, limit: int, above: int) -> list[dict[str, Any]]:
    table = _TABLES[name]
    q = select(table).where(table.c.seq > above).order_by(table.c.seq).limit(limit)
    rows = [dict(r) for r in conn.execute(q).mappings()]
    if name == "outbox":  # a row moves once delivered, and none after one that is not
        rows = _prefix(rows, lambda r: r["delivered_at"] is not None)
    return rows


def _items_after(conn: Connection, batch: list[dict[str, Any]], moved: int) -> set[str]:
    """The ids of the flash file's items after ``batch`` (its first rows not ``moved``): they stay this turn."""
    items = _TABLES["items"]
    after = batch[-1]["seq"] if batch else moved
    return set(conn.execute(select(items.c.item_id).where(items.c.seq > after)).scalars())


def _prefix(rows: list[dict[str, Any]], ok: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    for n, r in enumerate(rows):
        if not ok(r):
            return rows[:n]
    return rows


def _insert(conn: Connection, name: str, rows: list[dict[str, Any]]) -> None:
    table: Table = getattr(t, name)
    if name not in _KEEP_SEQ:
        rows = [{k: v for k, v in r.items() if k != "seq"} for r in rows]
    if name in ("items", "alerts"):  # a report stored here once already (a repeat), keep the first
        dialect: Any = postgresql if conn.dialect.name == "postgresql" else sqlite
        stmt: Any = dialect.insert(table).on_conflict_do_nothing()
    else:
        stmt = insert(table)
    conn.execute(stmt, rows)


def queued(main: Engine, store: Store) -> int:
    """Ledger entries waiting in the flash file (0 without one): not yet in the main file's queue."""
    if not store.separate:
        return 0
    above = _marks(main).get("ledger_queue", 0)  # moved, not yet trimmed: in the main file's queue now
    with store.engine.connect() as fc:
        q = select(func.count()).select_from(store.queue).where(store.queue.c.seq > above)
        return int(fc.execute(q).scalar_one())
