"""Benchmark: the ledger: appends, inclusion proofs, full verification.

Three figures, each printed with its target:

1. Appends per second through ``ledger_store.append_rows`` in realistic transactions
   (100 and 1,000 entries per transaction; entries shaped like the node's audit
   records: ``at``/``kind``/``actor``/``item_id``/``detail`` dict) on SQLite, and on
   PostgreSQL with ``--postgres`` (a fresh database on 127.0.0.1:5432 as user postgres,
   dropped afterwards). Target: at least 20,000 entries a second. Peer, in the same
   run: the same rows in the same transactions inserted into a plain audit table
   (an audit trail without the ledger: no body, no hashes, no tree) with the raw
   driver, sqlite3's ``executemany`` or on PostgreSQL one ``INSERT … SELECT FROM
   unnest(…)`` of binary arrays (as the ledger's own inserts), so the ratio is the
   cost of the Merkle log. Each figure is the best of ``--runs`` runs, the ledger and
   its peer alternating (other work on the machine hits them alike).
2. One inclusion proof (``ledger_store.inclusion`` plus ``merkle.verify_inclusion``
   against the root) in a 10-million-entry log, warm: median and p99 over 1,000
   random leaves (the best of three passes, alternating with the peer). Target: under
   2 ms. Peer: raw sqlite3 primary-key lookups of the very nodes the proof reads (the
   database's floor).
3. ``ledger_store.verify_all`` of a 1-million-entry log. Target: under 30 s. Peer: a
   raw sqlite3 scan that only hashes every entry body (the floor for recomputing the
   leaves).

The big logs are built by a bulk path, not through ``append_rows`` (that would take
too long): entry bodies from ``ledger_store.entry_body``, leaf hashes, and the tree
nodes from ``ledger.append_many`` over aligned chunks of 2**17 leaves in worker
processes (a chunk's root is then appended to the tree of chunk roots), inserted
with sqlite3's ``executemany`` in one transaction. Before any timing the script
builds a small log both ways and stops unless the rows are identical; after building
it checks the stored root against the one computed while building, and a few proofs
against entry bodies. Built logs are cached under a temporary directory which is
deleted at the end unless ``--keep`` is given (a kept cache is reused).

Run: ``.venv/bin/python bench/ledger.py [--postgres] [--keep] [--only appends,proofs,verify]``.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import platform
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.dialects import sqlite as sqlite_dialect

from gsomia.core import ledger, merkle
from gsomia.store import ledger_store
from gsomia.store import schema as t
from gsomia.store.db import open_database

TARGET_APPENDS = 20_000  # entries a second
TARGET_PROOF_MS = 2.0  # per inclusion proof, median and p99
TARGET_VERIFY_S = 30.0  # verify_all of VERIFY_SIZE entries
PROOF_SIZE = 10_000_000
VERIFY_SIZE = 1_000_000
PROOF_PASSES = 3  # timed passes over the same leaves; the pass with the best p99 is reported
CHUNK_BITS = 17  # bulk build: aligned chunks of 2**17 leaves
BUILD_FORMAT = "gsomia-bench-ledger/1"  # bump when entry_row changes: invalidates kept caches
CACHE = Path(tempfile.gettempdir()) / "gsomia-bench-ledger"
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"

BASE_AT = datetime(2019, 11, 22, 0, 0, tzinfo=UTC)
LANES = ("routine", "routine", "routine", "flash")
PERMIT = {
    "decision": "permit",
    "reasons": [
        {"rule": "R3", "text": "clearance 極秘 ranks at or above 군사II급비밀 (秘)", "cite": "Article 4(a)"},
        {"rule": "R5", "text": "JPN is among the releasable parties", "cite": "Article 4(b)"},
    ],
    "obligations": ["no further release without the originator's consent"],
}
DENY = {
    "decision": "deny",
    "reasons": [
        {"rule": "R7", "text": "compartment NK-MISSILE is not in the reader's need-to-know", "cite": "Article 4(c)"}
    ],
    "obligations": [],
}


def entry_row(i: int) -> dict[str, Any]:
    """Entry number ``i`` of the synthetic log, shaped like the node's audit records (deterministic)."""
    h = (i * 0x9E3779B97F4A7C15) & 0xFFFF_FFFF_FFFF_FFFF
    at = BASE_AT + timedelta(microseconds=i * 1_237)
    item = str(uuid.UUID(int=(h * 0xD1B54A32D192ED03 + i) & ((1 << 128) - 1)))
    user = f"{'kor' if h & 1 else 'jpn'}-analyst-{h % 97}"
    pick = (h >> 8) % 20
    if pick < 7:
        return {
            "at": at,
            "kind": "provide",
            "actor": user,
            "item_id": item,
            "detail": {"to": "JPN", "lane": LANES[h % 4]},
        }
    if pick < 13:
        return {
            "at": at,
            "kind": "receipt",
            "actor": "JPN",
            "item_id": item,
            "detail": {"from": "JPN", "lane": LANES[h % 4]},
        }
    if pick < 18:
        return {"at": at, "kind": "read", "actor": user, "item_id": item, "detail": PERMIT}
    if pick < 19:
        return {"at": at, "kind": "read_denied", "actor": user, "item_id": item, "detail": DENY}
    return {
        "at": at,
        "kind": "user_added",
        "actor": "cli",
        "item_id": None,
        "detail": {"user": user, "role": "analyst"},
    }


# --- helpers --------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database on the local server, dropped afterwards."""
    name = f"gsomia_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


# --- 1. appends -----------------------------------------------------------------------------

PLAIN_SQLITE = """CREATE TABLE audit_plain (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, at DATETIME NOT NULL, kind VARCHAR(32) NOT NULL,
    actor VARCHAR(128) NOT NULL, item_id VARCHAR(64), detail TEXT NOT NULL)"""
PLAIN_PG = """CREATE TABLE audit_plain (
    seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, at TIMESTAMPTZ NOT NULL, kind VARCHAR(32) NOT NULL,
    actor VARCHAR(128) NOT NULL, item_id VARCHAR(64), detail TEXT NOT NULL)"""
PLAIN_INDEX = "CREATE INDEX ix_audit_plain_item ON audit_plain (item_id)"


def time_append_rows(engine: Engine, batches: list[list[dict[str, Any]]]) -> float:
    with engine.begin() as conn:  # warm-up, untimed: statement caches, pool
        ledger_store.append_rows(conn, [entry_row(-1 - i) for i in range(10)])
    start = time.perf_counter()
    for batch in batches:
        with engine.begin() as conn:
            ledger_store.append_rows(conn, batch)
    return time.perf_counter() - start


def time_plain_sqlite(path: Path, batches: list[list[dict[str, Any]]]) -> float:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(PLAIN_SQLITE)
    db.execute(PLAIN_INDEX)
    sql = "INSERT INTO audit_plain (at, kind, actor, item_id, detail) VALUES (?, ?, ?, ?, ?)"
    start = time.perf_counter()
    for batch in batches:
        db.execute("BEGIN")
        db.executemany(
            sql,
            [
                (
                    r["at"].astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f"),
                    r["kind"],
                    r["actor"],
                    r["item_id"],
                    json.dumps(r["detail"]),
                )
                for r in batch
            ],
        )
        db.execute("COMMIT")
    elapsed = time.perf_counter() - start
    db.close()
    return elapsed


def time_plain_postgres(url: str, batches: list[list[dict[str, Any]]]) -> float:
    """The same rows in one statement per transaction (binary arrays, as the ledger's own inserts)."""
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as db:
        db.execute(PLAIN_PG)
        db.execute(PLAIN_INDEX)
        db.commit()
        sql = (
            "INSERT INTO audit_plain (at, kind, actor, item_id, detail) "
            "SELECT * FROM unnest(%b::TIMESTAMPTZ[], %b::VARCHAR[], %b::VARCHAR[], %b::VARCHAR[], %b::TEXT[])"
        )
        start = time.perf_counter()
        for batch in batches:
            with db.transaction():
                db.execute(
                    sql,
                    (
                        [r["at"] for r in batch],
                        [r["kind"] for r in batch],
                        [r["actor"] for r in batch],
                        [r["item_id"] for r in batch],
                        [json.dumps(r["detail"]) for r in batch],
                    ),
                )
        return time.perf_counter() - start


def bench_appends(
    entries: int, sizes: list[int], postgres: bool, runs: int, workdir: Path
) -> list[tuple[str, float, float]]:
    """Best of ``runs`` for each backend and transaction size; the ledger and its peer alternate."""
    backends = ["SQLite"] + (["PostgreSQL"] if postgres else [])
    results: list[tuple[str, float, float]] = []
    print(
        f"1. appends through ledger_store.append_rows: {entries:,} entries per run into a fresh log, "
        f"one transaction per batch, best of {runs}"
    )
    print(f"  {'backend, entries per transaction':<38} {'entries/s':>11} {'plain audit/s':>14} {'plain ÷ ledger':>15}")
    rows = [entry_row(i) for i in range(entries)]
    for backend in backends:
        for per_tx in sizes:
            batches = [rows[i : i + per_tx] for i in range(0, entries, per_tx)]
            ledger_s, plain_s = float("inf"), float("inf")
            for run in range(runs):
                if backend == "SQLite":
                    path = workdir / f"appends-{per_tx}-{run}.db"
                    engine = open_database(sqlite_url(path))
                    ledger_s = min(ledger_s, time_append_rows(engine, batches))
                    if run == 0:
                        with engine.connect() as conn:
                            check_log(conn)
                    engine.dispose()
                    plain_s = min(plain_s, time_plain_sqlite(workdir / f"plain-{per_tx}-{run}.db", batches))
                    for old in workdir.glob(f"*-{per_tx}-{run}.db*"):
                        old.unlink()
                else:
                    with postgres_database() as url:
                        engine = open_database(url)
                        ledger_s = min(ledger_s, time_append_rows(engine, batches))
                        if run == 0:
                            with engine.connect() as conn:
                                check_log(conn)
                        engine.dispose()
                        plain_s = min(plain_s, time_plain_postgres(url, batches))
            rate, plain = entries / ledger_s, entries / plain_s
            name = f"{backend}, {per_tx:,}/tx"
            results.append((name, rate, plain))
            print(f"  {name:<38} {rate:>11,.0f} {plain:>14,.0f} {plain / rate:>14.1f}x")
    return results


def check_log(conn: Any) -> None:
    """The appended log is whole: verify_all passes and its root is the direct computation's."""
    result = ledger_store.verify_all(conn)
    leaves = [bytes(h) for (h,) in conn.execute(select(t.ledger_entries.c.leaf_hash).order_by(t.ledger_entries.c.idx))]
    if result.size != len(leaves) or result.root != merkle.root(leaves):
        sys.exit("the appended log does not verify")


# --- bulk build -----------------------------------------------------------------------------

_AT_TO_DB: Callable[[Any], Any] | None = None


def _at_to_db(at: datetime) -> str:
    """How SQLAlchemy stores ``ledger_entries.at`` on SQLite (the column type's own bind processor)."""
    global _AT_TO_DB
    if _AT_TO_DB is None:
        dialect = sqlite_dialect.dialect()
        _AT_TO_DB = t.ledger_entries.c.at.type.dialect_impl(dialect).bind_processor(dialect)
        assert _AT_TO_DB is not None
    return _AT_TO_DB(at)  # type: ignore[no-any-return]


def build_chunk(start: int, count: int) -> tuple[list[tuple[Any, ...]], list[tuple[int, int, bytes]]]:
    """Entry rows and tree nodes of leaves ``start … start + count - 1`` (start aligned to the chunk)."""
    entries: list[tuple[Any, ...]] = []
    leaves: list[bytes] = []
    for i in range(start, start + count):
        row = entry_row(i)
        body = ledger_store.entry_body(i, row["at"], row["kind"], row["actor"], row["item_id"], row["detail"])
        leaf = merkle.leaf_hash(body)
        leaves.append(leaf)
        entries.append((i, _at_to_db(row["at"]), row["kind"], row["actor"], row["item_id"], body.decode(), leaf))

    def outside(level: int, index: int) -> bytes:
        raise AssertionError("a chunk built from leaf 0 reads nothing outside itself")

    # The chunk's subtrees are the subtrees of a log of its own leaves, shifted.
    nodes = [(lv, (start >> lv) + ix, h) for lv, ix, h in ledger.append_many(0, leaves, outside)]
    nodes.sort()  # inserted in key order: appends to each level's end of the B-tree
    return entries, nodes


def bulk_build(path: Path, n: int, bits: int = CHUNK_BITS, workers: int | None = None) -> bytes:
    """A log of entries ``entry_row(0 … n-1)`` in a fresh database; returns its root (computed while building)."""
    engine = open_database(sqlite_url(path))  # the schema, by the migrations
    engine.dispose()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=DELETE")  # no WAL copy of a multi-gigabyte transaction
    db.execute("PRAGMA synchronous=OFF")
    db.execute("PRAGMA cache_size=-1000000")
    indexes = db.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'ledger_entries' AND sql IS NOT NULL"
    ).fetchall()
    db.execute("BEGIN")
    for name, _ in indexes:  # rebuilt once at the end, from their own DDL
        db.execute(f'DROP INDEX "{name}"')
    put_entry = (
        "INSERT INTO ledger_entries (idx, at, kind, actor, item_id, body, leaf_hash) VALUES (?, ?, ?, ?, ?, ?, ?)"
    )
    put_node = "INSERT INTO ledger_nodes (level, idx, hash) VALUES (?, ?, ?)"
    chunk = 1 << bits
    top: dict[tuple[int, int], bytes] = {}  # the tree over chunk roots: level L here is level bits + L
    last: dict[tuple[int, int], bytes] = {}
    done = 0
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        pending: deque[tuple[int, int, Future[Any]]] = deque()
        starts = iter(range(0, n, chunk))
        while True:
            while len(pending) < (workers or os.cpu_count() or 1) + 1:
                s = next(starts, None)
                if s is None:
                    break
                pending.append((s, min(chunk, n - s), pool.submit(build_chunk, s, min(chunk, n - s))))
            if not pending:
                break
            s, count, future = pending.popleft()
            entries, nodes = future.result()
            db.executemany(put_entry, entries)
            if count == chunk:
                chunk_root = next(h for lv, _, h in nodes if lv == bits)
                for lv, ix, h in ledger.append_nodes(s >> bits, chunk_root, lambda lv, ix: top[(lv, ix)]):
                    top[(lv, ix)] = h
                    if lv:
                        nodes.append((lv + bits, ix, h))
            else:
                last = {(lv, ix): h for lv, ix, h in nodes}
            db.executemany(put_node, nodes)
            done += count
            if sys.stdout.isatty():
                rate = done / (time.perf_counter() - started)
                print(f"\r  building {path.name}: {done:,}/{n:,} entries ({rate:,.0f}/s)", end="", flush=True)
    if sys.stdout.isatty():
        print("\r" + " " * 78 + "\r", end="", flush=True)
    db.execute("UPDATE ledger_state SET size = ? WHERE id = 1", (n,))
    for _, sql in indexes:
        db.execute(sql)
    db.execute("COMMIT")
    db.execute("PRAGMA journal_mode=WAL")
    db.close()

    def get(level: int, index: int) -> bytes:
        return top[(level - bits, index)] if level >= bits else last[(level, index)]

    return ledger.root(n, get)


def dump(path: Path) -> tuple[list[Any], ...]:
    db = sqlite3.connect(path)
    out = (
        db.execute("SELECT * FROM ledger_entries ORDER BY idx").fetchall(),
        db.execute("SELECT * FROM ledger_nodes ORDER BY level, idx").fetchall(),
        db.execute("SELECT * FROM ledger_state").fetchall(),
        db.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall(),
    )
    db.close()
    return out


def check_bulk_path(workdir: Path) -> None:
    """The bulk path writes exactly the rows append_rows writes (small log, small chunks)."""
    n, rng = 3_001, random.Random(9162)
    bulk = workdir / "bulk-check.db"
    root = bulk_build(bulk, n, bits=4, workers=1)
    slow = workdir / "append-check.db"
    engine = open_database(sqlite_url(slow))
    i = 0
    while i < n:
        k = min(n - i, rng.choice((1, 2, 3, 7, 16, 100, 333)))
        with engine.begin() as conn:
            ledger_store.append_rows(conn, [entry_row(j) for j in range(i, i + k)])
        i += k
    with engine.connect() as conn:
        stored_root = ledger_store.root(conn, n)
    engine.dispose()
    if dump(bulk) != dump(slow) or root != stored_root:
        sys.exit("the bulk build does not write the rows append_rows writes: no figures")
    print(f"bulk build checked: {n:,} entries, rows identical to append_rows in random batches, same root")
    bulk.unlink()
    slow.unlink()


def cached_log(n: int, cache: Path) -> tuple[Path, bytes]:
    """The n-entry log, built once and kept in ``cache`` while the marker says it is whole."""
    path, marker = cache / f"ledger-{n}.db", cache / f"ledger-{n}.ok"
    if path.exists() and marker.exists():
        stamp = json.loads(marker.read_text())
        if stamp.get("format") == BUILD_FORMAT and stamp.get("size") == n:
            print(f"reusing {path} ({path.stat().st_size / 1e9:.1f} GB)")
            return path, bytes.fromhex(stamp["root"])
    marker.unlink(missing_ok=True)
    for old in cache.glob(f"ledger-{n}.db*"):
        old.unlink()
    start = time.perf_counter()
    root = bulk_build(path, n)
    marker.write_text(json.dumps({"format": BUILD_FORMAT, "size": n, "root": root.hex()}))
    print(
        f"built {path} in {time.perf_counter() - start:,.0f} s "
        f"({n / (time.perf_counter() - start):,.0f} entries/s, {path.stat().st_size / 1e9:.1f} GB)"
    )
    return path, root


# --- 2. inclusion proofs --------------------------------------------------------------------


def bench_proofs(path: Path, built_root: bytes, proofs: int, seed: int) -> tuple[float, float]:
    engine = open_database(sqlite_url(path))
    rng = random.Random(seed)
    with engine.connect() as conn:
        n = ledger_store.size(conn)
        head = ledger_store.root(conn, n)
        if head != built_root:
            sys.exit("the stored root is not the root computed while building")
        picks = [rng.randrange(n) for _ in range(proofs)]
        leaves: dict[int, bytes] = {}
        for s in range(0, len(picks), 500):
            chunk = picks[s : s + 500]
            q = select(t.ledger_entries.c.idx, t.ledger_entries.c.leaf_hash).where(t.ledger_entries.c.idx.in_(chunk))
            leaves.update((int(i), bytes(h)) for i, h in conn.execute(q))
        # A few proofs from the entry bodies themselves, and the edges of the log.
        for i in [0, 1, n // 2, n - 2, n - 1, *picks[:5]]:
            body = conn.execute(select(t.ledger_entries.c.body).where(t.ledger_entries.c.idx == i)).scalar_one()
            leaf = merkle.leaf_hash(body.encode())
            proof = ledger_store.inclusion(conn, i, n)
            if not merkle.verify_inclusion(leaf, i, n, proof, built_root):
                sys.exit(f"the proof of entry {i} does not verify")
            if merkle.verify_inclusion(merkle.leaf_hash(b"other"), i, n, proof, built_root):
                sys.exit("a proof verifies a leaf it is not for")
        for i in picks:  # warm
            ledger_store.inclusion(conn, i, n)
        # Peer: the same stored nodes, one raw primary-key lookup each.
        keys = [sorted(ledger.plan(functools.partial(ledger.inclusion_proof, i, n))) for i in picks]
        db = sqlite3.connect(path)
        sql = "SELECT hash FROM ledger_nodes WHERE level = ? AND idx = ?"
        for ks in keys:
            for k in ks:
                db.execute(sql, k).fetchone()
        passes: list[list[float]] = []
        peer_passes: list[list[float]] = []
        for _ in range(PROOF_PASSES):  # alternating: other work on the machine hits both alike
            times: list[float] = []
            for i in picks:
                t0 = time.perf_counter()
                proof = ledger_store.inclusion(conn, i, n)
                ok = merkle.verify_inclusion(leaves[i], i, n, proof, head)
                times.append(time.perf_counter() - t0)
                if not ok:
                    sys.exit(f"the proof of entry {i} does not verify")
            passes.append(times)
            peer: list[float] = []
            for ks in keys:
                t0 = time.perf_counter()
                for k in ks:
                    db.execute(sql, k).fetchone()
                peer.append(time.perf_counter() - t0)
            peer_passes.append(peer)
        db.close()
    engine.dispose()

    times = min(passes, key=lambda ts: percentile(ts, 99))
    peer = min(peer_passes, key=lambda ts: percentile(ts, 99))
    all_p99 = ", ".join(f"{percentile(ts, 99) * 1e3:.3f}" for ts in passes)
    med, p99 = statistics.median(times) * 1e3, percentile(times, 99) * 1e3
    pmed, pp99 = statistics.median(peer) * 1e3, percentile(peer, 99) * 1e3
    avg_keys = sum(map(len, keys)) / len(keys)
    print(
        f"2. inclusion proof + verification in a log of {n:,} entries, {proofs:,} random leaves, warm, "
        f"best of {PROOF_PASSES} passes (p99 of each pass: {all_p99} ms)"
    )
    print(f"  {'':<38} {'median ms':>11} {'p99 ms':>9}")
    print(f"  {'ledger_store.inclusion + verify':<38} {med:>11.3f} {p99:>9.3f}")
    print(f"  {f'raw sqlite3: {avg_keys:.0f} node lookups (peer)':<38} {pmed:>11.3f} {pp99:>9.3f}")
    print(f"  ledger ÷ peer (median): {med / pmed:.1f}x")
    return med, p99


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


# --- 3. full verification -------------------------------------------------------------------


def bench_verify(path: Path, built_root: bytes) -> float:
    engine = open_database(sqlite_url(path))
    with engine.connect() as conn:  # warm the page cache the same way for both
        conn.execute(text("SELECT count(*), sum(length(body)) FROM ledger_entries")).one()
        start = time.perf_counter()
        result = ledger_store.verify_all(conn)
        elapsed = time.perf_counter() - start
    engine.dispose()
    if result.root != built_root:
        sys.exit("verify_all returned a root that is not the log's")

    db = sqlite3.connect(path)
    start = time.perf_counter()
    for (body,) in db.execute("SELECT body FROM ledger_entries ORDER BY idx"):
        hashlib.sha256(b"\x00" + body.encode()).digest()
    peer = time.perf_counter() - start
    db.close()
    print(f"3. ledger_store.verify_all of a log of {result.size:,} entries")
    print(f"  {'verify_all':<38} {elapsed:>9.2f} s")
    print(f"  {'raw sqlite3 scan hashing bodies (peer)':<38} {peer:>9.2f} s")
    print(f"  verify_all ÷ peer: {elapsed / peer:.1f}x")
    return elapsed


# --- main -----------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", action="store_true", help="also time appends on PostgreSQL (127.0.0.1:5432)")
    parser.add_argument("--keep", action="store_true", help=f"keep the built logs in {CACHE} for the next run")
    parser.add_argument("--only", default="appends,proofs,verify", help="comma-separated parts to run")
    parser.add_argument("--entries", type=int, default=100_000, help="entries appended per timed run")
    parser.add_argument("--per-tx", default="100,1000", help="entries per transaction, comma-separated")
    parser.add_argument("--runs", type=int, default=3, help="timed append runs per figure (best is kept)")
    parser.add_argument("--proof-size", type=int, default=PROOF_SIZE)
    parser.add_argument("--proofs", type=int, default=1_000)
    parser.add_argument("--verify-size", type=int, default=VERIFY_SIZE)
    parser.add_argument("--seed", type=int, default=2016)
    args = parser.parse_args()
    parts = {p.strip() for p in args.only.split(",") if p.strip()}

    print(
        f"gsomia ledger benchmark: Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs"
    )
    CACHE.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="gsomia-bench-ledger-"))
    verdicts: list[tuple[str, bool]] = []
    try:
        if parts & {"proofs", "verify"}:
            check_bulk_path(workdir)
        print()
        if "appends" in parts:
            results = bench_appends(
                args.entries, [int(x) for x in args.per_tx.split(",")], args.postgres, args.runs, workdir
            )
            for name, rate, _ in results:
                verdicts.append((f"appends ({name}): {rate:,.0f}/s ≥ {TARGET_APPENDS:,}/s", rate >= TARGET_APPENDS))
            print()
        if "proofs" in parts:
            path, root = cached_log(args.proof_size, CACHE)
            med, p99 = bench_proofs(path, root, args.proofs, args.seed)
            verdicts.append(
                (
                    f"inclusion proof in {args.proof_size:,}: median {med:.3f} ms, p99 {p99:.3f} ms < {TARGET_PROOF_MS} ms",
                    max(med, p99) < TARGET_PROOF_MS,
                )
            )
            print()
        if "verify" in parts:
            path, root = cached_log(args.verify_size, CACHE)
            elapsed = bench_verify(path, root)
            verdicts.append(
                (
                    f"verify_all of {args.verify_size:,}: {elapsed:.1f} s < {TARGET_VERIFY_S:.0f} s",
                    elapsed < TARGET_VERIFY_S,
                )
            )
            print()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(CACHE, ignore_errors=True)
    for line, ok in verdicts:
        print(f"target: {line}: {verdict(ok)}")


if __name__ == "__main__":
    main()
