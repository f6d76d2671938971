"""Every stored value the audit relies on is bound to the hashed entries (principle 6).

A real node's database is populated through the node's own API (items provided and read,
an alarm, a key rotation, its own and its partner's signed heads), then one value of one
row is changed behind the node's back, and `gsomia audit verify` must exit 2 naming the
entry. The tables and their columns are read from the schema, so a column added later is
tampered with here without a new test.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Connection, DateTime, Integer, LargeBinary, String, Text, create_engine, select, text
from sqlalchemy import update as sql_update
from sqlalchemy.exc import DBAPIError

from gsomia.cli.demo import terms_only
from gsomia.core import ledger, merkle, records
from gsomia.node import audit
from gsomia.node.runtime import config as node_config
from gsomia.node.runtime import keychain
from gsomia.node.runtime.clock import SystemClock
from gsomia.node.service import ItemSpec, Node
from gsomia.node.setup.provision import provision_pair
from gsomia.store import bindings, ledger_store
from gsomia.store import schema as t
from gsomia.store.db import open_database
from gsomia.store.files import load_private
from nodes import AGREEMENT, PG_ADMIN, pg_databases, pg_url

GSOMIA = str(Path(sys.executable).parent / "gsomia")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([GSOMIA, *args], capture_output=True, text=True, timeout=120, check=False)


@dataclass(frozen=True)
class Built:
    """A populated KOR node, kept as a template each test copies."""

    home: Path
    url: str | None  # PostgreSQL: the template database; SQLite: None (the file is in ``home``)
    items: list[str]


def _populate(root: Path, url: str | None) -> list[str]:
    nodes = provision_pair(
        root, terms_only(AGREEMENT, root / "terms.toml"), database_urls={"KOR": url} if url else None
    )
    kor = nodes["KOR"]
    cfg = node_config.load(kor.config)
    node = Node(cfg, open_database(cfg.database_url), SystemClock())
    analyst = node.authenticate(kor.tokens["analyst"])
    assert analyst is not None
    specs = [ItemSpec("JPN", "군사II급비밀", f"report {i}".encode(), purposes=("nk-missile",)) for i in range(5)]
    items = [r["item_id"] for r in node.provide(analyst, specs)]
    node.read_item(analyst, items[0], purpose="nk-missile")  # a `read` entry, the finding's row
    node.raise_alarm("fork", "JPN", "a head that does not extend the last one")
    node.engine.dispose()

    engine = open_database(cfg.database_url)
    keychain.rotate(cfg, engine)  # a key rotation: its statement, its row, its entry
    cfg = keychain.resolve(cfg, engine)[0]
    node = Node(cfg, engine, SystemClock())
    analyst = node.authenticate(kor.tokens["analyst"])
    assert analyst is not None
    items += [r["item_id"] for r in node.provide(analyst, specs[:2])]
    jpn = load_private(nodes["JPN"].root / "keys" / "JPN.key")
    _records_notes_users(node, kor.tokens["security_authority"], jpn, items)
    node.own_head(max_age=0)  # the node's own signed head
    with engine.begin() as conn:  # and one of its partner's, as the witness keeps them
        audit.store_head(conn, ledger.sign_head(jpn, "JPN", 3, b"\x07" * 32, datetime.now(UTC)))
    engine.dispose()
    return items


def _records_notes_users(node: Node, authority_token: str, jpn: Any, items: list[str]) -> None:
    """Rows of every table a decision reads beside the items: records made here and received from
    the partner (one answering another, so ``ref`` is set), a note with a reference and conditions,
    and a revoked user."""
    authority = node.authenticate(authority_token)
    assert authority is not None
    node.make_record(authority, "reclassification", items[1], {"classification": "군사III급비밀"})
    now = datetime.now(UTC)
    request = records.make(jpn, "consent_request", "JPN", "jpn.authority", items[2], now, recipient="USA")
    node.receive_record("JPN", request.as_dict())
    decision = records.make(
        jpn, "consent_decision", "JPN", "jpn.authority", items[2], now, request_id=request.id, grant=False
    )
    node.receive_record("JPN", decision.as_dict())
    node.record_note(authority, "JPN", "termination_notice", now + timedelta(days=3650), ["c1"], "MOFA-1")
    node.add_user("kor.gone", "analyst", "군사II급비밀", ["nk-missile"])
    node.revoke_user("kor.gone")


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Built]:
    root = tmp_path_factory.mktemp(f"binding-{request.param}")
    if request.param == "sqlite":
        yield Built(root / "KOR", None, _populate(root, None))
        return
    with pg_databases(1) as [url]:
        yield Built(root / "KOR", url, _populate(root, url))


@dataclass
class Copy:
    config: Path
    url: str
    items: list[str]

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        engine = create_engine(self.url)
        try:
            with engine.begin() as conn:
                yield conn
        finally:
            engine.dispose()

    def verify(self) -> subprocess.CompletedProcess[str]:
        return run("audit", "verify", "--config", str(self.config))


@pytest.fixture
def node(built: Built, tmp_path: Path) -> Iterator[Copy]:
    """A copy of the populated node: its files, and its database (a copy of the template on PostgreSQL)."""
    home = tmp_path / "KOR"
    shutil.copytree(built.home, home)
    config = home / "node.toml"
    if built.url is None:
        yield Copy(config, node_config.load(config).database_url, built.items)
        return
    name = f"gsomia_t_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    template = built.url.rsplit("/", 1)[1]
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    url = pg_url(name)
    config.write_text(config.read_text(encoding="utf-8").replace(built.url, url), encoding="utf-8")
    try:
        yield Copy(config, url, built.items)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def one(copy: Copy, sql: str, **params: Any) -> Any:
    with copy.connect() as conn:
        return conn.execute(text(sql), params).one()


def execute(copy: Copy, statement: Any, **params: Any) -> None:
    with copy.connect() as conn:
        conn.execute(text(statement) if isinstance(statement, str) else statement, params)


def refused(r: subprocess.CompletedProcess[str], named: str) -> None:
    """`audit verify` refused in one line, no traceback, naming ``named`` as a whole word."""
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1, r.stderr
    assert re.search(rf"{re.escape(named)}(?![0-9])", r.stderr), (named, r.stderr)


# --- every column of every table the audit relies on ----------------------------------------


def _columns() -> list[tuple[str, str]]:
    return [(name, c.name) for name in audit.CHECKED_TABLES for c in t.metadata.tables[name].c]


def test_the_checked_tables_are_the_ledgers_and_every_one_is_in_the_schema() -> None:
    """The tables ``audit verify`` binds are real tables, and every ledger table is among them
    (``ledger_queue`` holds entries not yet in the log; it is checked on its own below)."""
    ledgerish = {n for n in t.metadata.tables if n.startswith(("ledger_", "tree_heads"))} - {"ledger_queue"}
    assert ledgerish <= set(audit.CHECKED_TABLES)
    assert set(audit.CHECKED_TABLES) <= set(t.metadata.tables)
    assert {table for table, _ in bindings.UNBOUND} <= set(audit.CHECKED_TABLES)


def _changed(column: Column[Any], value: Any, other_item: str | None) -> Any:
    """Another value of the column's type, of the same length where the type has one."""
    if column.name == "item_id" and other_item is not None:
        return other_item  # the finding: the entry now seems to be about another item
    kind = column.type
    if isinstance(kind, DateTime) or isinstance(value, datetime):
        return value + timedelta(seconds=1)
    if isinstance(kind, LargeBinary):
        raw = bytes(value)
        return bytes([raw[0] ^ 1]) + raw[1:]
    if isinstance(kind, Integer) or isinstance(value, int):
        return value + 1000
    if isinstance(kind, String | Text):
        if value and value[-1] not in "}]":
            return value[:-1] + ("A" if value[-1] != "A" else "B")
        return value[:-1] + " " + value[-1:]  # JSON stays JSON, its bytes change
    raise AssertionError(f"no way to change a {kind!r} column yet: teach _changed")


def _row_of(conn: Connection, table: str, column: str) -> dict[str, Any]:
    """The row to tamper with: a `read` entry for the entries (the finding), else the first row
    whose value is not null; for the nodes, one above the leaves (the leaves have their test)."""
    tab = t.metadata.tables[table]
    q = select(tab).where(tab.c[column].is_not(None))
    if table == "ledger_entries":
        q = q.where(tab.c.kind == "read")
    if table == "ledger_nodes":
        q = q.where(tab.c.level == 1)
    if table == "tree_heads":
        q = q.where(tab.c.party == "KOR")
    row = conn.execute(q.limit(1)).mappings().first()
    assert row is not None, f"the populated node has no row of {table} with {column}"
    return dict(row)


def _named(conn: Connection, table: str, row: dict[str, Any]) -> str:
    """How `audit verify` must name the row: its entry, or the entries under it."""
    if table == "ledger_entries":
        return f"entry {row['idx']}"
    if table == "ledger_nodes":
        first = row["idx"] << row["level"]
        return f"entries {first}…{first + (1 << row['level']) - 1}"
    if table == "ledger_state":
        return f"entry {row['size'] - 1}"
    if table == "tree_heads":
        return f"#{row['seq']}"
    if table == "key_rotations":
        kinds = ("key_rotation", "key_rotation_received")
    elif table == "alarms":
        kinds = ("alarm", "alarm_received")
    elif table in _BY_FIELD:
        return f"entry {_entry_of(conn, table, row)}"
    else:
        raise AssertionError(f"say how `audit verify` names a row of {table}")
    e = t.ledger_entries
    found = conn.execute(select(e.c.idx).where(e.c.kind.in_(kinds)).order_by(e.c.idx)).scalars().first()
    return f"entry {found}"


# How the entry recording a row of these tables names it: (entry kinds, detail field, row column).
_BY_FIELD = {
    "records": (bindings.RECORD_KINDS, "record_id", "record_id"),
    "notes": (bindings.NOTE_KINDS, "note_id", "note_id"),
    "users": (("user_added",), "user", "user_id"),
}


def _entry_of(conn: Connection, table: str, row: dict[str, Any]) -> int:
    """The index of the entry whose detail names ``row``, read from the hashed bytes."""
    kinds, field, column = _BY_FIELD[table]
    e = t.ledger_entries
    for idx, body in conn.execute(select(e.c.idx, e.c.body).where(e.c.kind.in_(list(kinds))).order_by(e.c.idx)):
        if json.loads(body)["detail"].get(field) == row[column]:
            return int(idx)
    raise AssertionError(f"no entry records {table} row {row[column]}")


@pytest.mark.parametrize(("table", "column"), _columns(), ids=[f"{a}.{b}" for a, b in _columns()])
def test_an_edit_to_any_column_is_reported_with_the_entry(node: Copy, table: str, column: str) -> None:
    tab = t.metadata.tables[table]
    with node.connect() as conn:
        row = _row_of(conn, table, column)
        named = _named(conn, table, row)
        other = node.items[3] if row.get("item_id") != node.items[3] else node.items[4]
        keys = [c for c in tab.primary_key.columns]
        changed = _changed(tab.c[column], row[column], other if table == "ledger_entries" else None)
        conn.execute(
            sql_update(tab).where(*(c == row[c.name] for c in keys)).values({column: changed}),
        )
    r = node.verify()
    if (table, column) in bindings.UNBOUND:
        # Bookkeeping nothing decides on: the audit reads it for nothing, and says so by passing.
        assert r.returncode == 0, r.stderr
        return
    refused(r, named)


@pytest.mark.parametrize("table", audit.CHECKED_TABLES)
def test_a_row_deleted_from_any_checked_table_is_reported_with_the_entry(node: Copy, table: str) -> None:
    tab = t.metadata.tables[table]
    first_key = next(iter(tab.primary_key.columns)).name
    with node.connect() as conn:
        row = _row_of(conn, table, first_key)
        named = _named(conn, table, row)
        conn.execute(tab.delete().where(*(c == row[c.name] for c in tab.primary_key.columns)))
    r = node.verify()
    if table in audit.UNCOUNTED:
        assert r.returncode == 0, r.stderr
        return
    refused(r, named)


_NAMED_BY = {"records": "record_id", "notes": "note_id", "users": "user_id"}


@pytest.mark.parametrize("table", sorted(_NAMED_BY))
def test_a_row_inserted_into_records_notes_or_users_is_reported(node: Copy, table: str) -> None:
    """A copy of a genuine row under a new name (and token): no entry records it."""
    tab = t.metadata.tables[table]
    with node.connect() as conn:
        row = _row_of(conn, table, _NAMED_BY[table])
        forged = {k: v for k, v in row.items() if k != "seq"}
        forged[_NAMED_BY[table]] = str(uuid.uuid4()) if table != "users" else "kor.forged"
        if table == "users":
            forged["token_hash"] = "0" * 64
        conn.execute(tab.insert().values(forged))
        seq = conn.execute(select(tab.c.seq).where(tab.c[_NAMED_BY[table]] == forged[_NAMED_BY[table]])).scalar_one()
    r = node.verify()
    refused(r, f"row #{seq} of {table}")


# --- the finding, step by step ---------------------------------------------------------------


def _read_entry(copy: Copy) -> tuple[int, str]:
    idx, item = one(copy, "SELECT idx, item_id FROM ledger_entries WHERE kind = 'read' ORDER BY idx LIMIT 1")
    return int(idx), str(item)


def test_an_entry_moved_to_another_item_is_caught_and_still_proved_for_its_own(node: Copy, tmp_path: Path) -> None:
    idx, item = _read_entry(node)
    execute(node, "UPDATE ledger_entries SET item_id = :other WHERE idx = :idx", other=node.items[3], idx=idx)
    refused(node.verify(), f"entry {idx}")
    # The proof of the item is made from what the hashed bytes say: it is refused outright for
    # the item the column now names, and for the item the entry is about it still holds the entry.
    wrongly = run("audit", "prove", node.items[3], "--config", str(node.config))
    assert wrongly.returncode == 2, wrongly.stdout
    assert f"entry {idx}" in wrongly.stderr, wrongly.stderr
    assert "Traceback" not in wrongly.stderr
    proof = run("audit", "prove", item, "--config", str(node.config))
    assert proof.returncode == 0, proof.stderr
    data = json.loads(proof.stdout)
    assert idx in [e["index"] for e in data["entries"]]
    assert data["covers"]["entries"] == [e["index"] for e in data["entries"]]


@pytest.mark.parametrize("column", ["kind", "actor", "at"])
def test_kind_actor_or_time_edited_alone_is_caught(node: Copy, column: str) -> None:
    idx, _ = _read_entry(node)
    values = {"kind": "read_denied", "actor": "somebody.else", "at": datetime(2019, 8, 22, tzinfo=UTC)}
    execute(node, sql_update(t.ledger_entries).where(t.ledger_entries.c.idx == idx).values({column: values[column]}))
    refused(node.verify(), f"entry {idx}")


@pytest.mark.parametrize(
    "body",
    [
        "not json at all",
        '["a", "list"]',
        '{"index": ',
    ],
)
def test_a_body_that_is_not_an_entry_is_named_not_a_traceback(node: Copy, body: str) -> None:
    idx, _ = _read_entry(node)
    execute(node, "UPDATE ledger_entries SET body = :body WHERE idx = :idx", body=body, idx=idx)
    r = node.verify()
    refused(r, f"entry {idx}")
    assert "not a ledger entry" in r.stderr


def test_a_body_of_bytes_that_are_not_utf8_is_named(node: Copy) -> None:
    idx, _ = _read_entry(node)
    if not node.url.startswith("sqlite"):  # PostgreSQL itself refuses such bytes in a text column
        with pytest.raises(DBAPIError, match="UTF8"):
            execute(
                node, "UPDATE ledger_entries SET body = convert_from('\\x7bff7d'::bytea, 'UTF8') WHERE idx = :i", i=idx
            )
        return
    execute(node, "UPDATE ledger_entries SET body = CAST(X'7B22FF22FE7D' AS TEXT) WHERE idx = :idx", idx=idx)
    r = node.verify()
    refused(r, f"entry {idx}")
    assert "not a ledger entry" in r.stderr


# --- rows deleted, inserted, reordered -------------------------------------------------------


def test_a_deleted_entry_is_named(node: Copy) -> None:
    idx, _ = _read_entry(node)
    execute(node, "DELETE FROM ledger_entries WHERE idx = :idx", idx=idx)
    refused(node.verify(), f"entry {idx}")


def test_the_last_entry_deleted_is_named(node: Copy) -> None:
    (last,) = one(node, "SELECT max(idx) FROM ledger_entries")
    execute(node, "DELETE FROM ledger_entries WHERE idx = :idx", idx=last)
    refused(node.verify(), f"entry {last}")


def test_an_entry_inserted_past_the_counter_is_named_even_when_well_formed(node: Copy) -> None:
    """An entry with a correct body and leaf hash, slipped in without taking the counter."""
    (n,) = one(node, "SELECT size FROM ledger_state")
    at = datetime(2020, 1, 1, tzinfo=UTC)
    body = ledger_store.entry_body(n, at, "read", "kor.analyst", node.items[0], {})
    with node.connect() as conn:
        conn.execute(
            t.ledger_entries.insert().values(
                idx=n,
                at=at,
                kind="read",
                actor="kor.analyst",
                item_id=node.items[0],
                body=body.decode(),
                leaf_hash=merkle.leaf_hash(body),
            )
        )
    r = node.verify()
    refused(r, f"entry {n}")
    assert "beyond the log's counter" in r.stderr


def test_two_entries_swapped_are_named(node: Copy) -> None:
    idx, _ = _read_entry(node)
    other = idx - 1
    with node.connect() as conn:  # swap every column but the index: the rows change places
        e = t.ledger_entries
        rows = {r["idx"]: dict(r) for r in conn.execute(select(e).where(e.c.idx.in_([idx, other]))).mappings()}
        for a, b in ((idx, other), (other, idx)):
            conn.execute(sql_update(e).where(e.c.idx == a).values({k: v for k, v in rows[b].items() if k != "idx"}))
    r = node.verify()
    refused(r, f"entry {other}")
    assert f"entry {idx} is stored as entry {other}" in r.stderr


def test_a_leaf_node_moved_or_inserted_is_named(node: Copy) -> None:
    idx, _ = _read_entry(node)
    execute(node, "UPDATE ledger_nodes SET idx = -1 WHERE level = 0 AND idx = :idx", idx=idx)
    refused(node.verify(), f"entry {idx}")


def test_the_last_leaf_node_with_an_index_that_is_not_a_number_is_named(node: Copy) -> None:
    """SQLite sorts text after every number: the node is where the scan expects the last entry's."""
    (n,) = one(node, "SELECT size FROM ledger_state")
    change = "UPDATE ledger_nodes SET idx = 'x' WHERE level = 0 AND idx = :idx"
    if not node.url.startswith("sqlite"):
        with pytest.raises(DBAPIError):
            execute(node, change, idx=n - 1)
        return
    execute(node, change, idx=n - 1)
    refused(node.verify(), f"entry {n - 1}")


def test_a_node_outside_the_tree_is_reported(node: Copy) -> None:
    execute(node, "INSERT INTO ledger_nodes (level, idx, hash) VALUES (40, 0, :h)", h=b"\x00" * 32)
    r = node.verify()
    refused(r, "entries 0…1099511627775")


def test_a_node_row_whose_index_is_not_a_number_is_reported(node: Copy) -> None:
    """No level's scan reads such a row; the count of stored nodes does. PostgreSQL refuses the row."""
    (n,) = one(node, "SELECT size FROM ledger_state")
    insert = "INSERT INTO ledger_nodes (level, idx, hash) VALUES (0, 'x', :h)"
    if not node.url.startswith("sqlite"):
        with pytest.raises(DBAPIError):
            execute(node, insert, h=b"\x00" * 32)
        return
    execute(node, insert, h=b"\x00" * 32)
    r = node.verify()
    refused(r, f"(0…{n - 1})")
    assert "stored nodes" in r.stderr


def test_an_alarm_row_deleted_or_inserted_is_reported(node: Copy) -> None:
    (idx,) = one(node, "SELECT idx FROM ledger_entries WHERE kind = 'alarm'")
    (alarm,) = one(node, "SELECT alarm_id FROM alarms")
    execute(node, "DELETE FROM alarms")
    refused(node.verify(), f"entry {idx}")
    with node.connect() as conn:
        conn.execute(
            t.alarms.insert().values(
                alarm_id=alarm, at=datetime.now(UTC), kind="fork", about="JPN", raised_by="KOR", detail="forged"
            )
        )
    refused(node.verify(), f"entry {idx}")


def test_a_rotation_statement_replaced_is_reported(node: Copy) -> None:
    (idx,) = one(node, "SELECT idx FROM ledger_entries WHERE kind = 'key_rotation'")
    execute(node, "UPDATE key_rotations SET statement = 'not a statement'")
    refused(node.verify(), f"entry {idx}")


def test_a_tree_head_of_a_party_without_keys_is_reported(node: Copy) -> None:
    (seq,) = one(node, "SELECT seq FROM tree_heads WHERE party = 'JPN'")
    execute(node, "UPDATE tree_heads SET party = 'USA' WHERE seq = :seq", seq=seq)
    refused(node.verify(), f"#{seq}")


def test_a_queued_entry_that_cannot_join_the_log_is_reported(node: Copy) -> None:
    with node.connect() as conn:
        conn.execute(
            t.ledger_queue.insert().values(
                at=datetime.now(UTC), kind="read", actor="kor.analyst", item_id=node.items[0], detail="{not json"
            )
        )
        (seq,) = conn.execute(select(t.ledger_queue.c.seq)).one()
    refused(node.verify(), f"queued entry #{seq}")


# --- proofs leave nothing out ----------------------------------------------------------------


def _prove(copy: Copy, item: str, path: Path) -> dict[str, Any]:
    r = run("audit", "prove", item, "--config", str(copy.config))
    assert r.returncode == 0, r.stderr
    path.write_text(r.stdout)
    return dict(json.loads(r.stdout))


def _check(copy: Copy, path: Path) -> subprocess.CompletedProcess[str]:
    return run("audit", "check-proof", str(path), "--trust", str(copy.config.parent / "keys" / "KOR.pub"))


def test_a_proof_with_an_entry_left_out_is_refused(node: Copy, tmp_path: Path) -> None:
    idx, item = _read_entry(node)
    path = tmp_path / "proof.json"
    proof = _prove(node, item, path)
    assert [e["index"] for e in proof["entries"]] == proof["covers"]["entries"]
    assert idx in proof["covers"]["entries"]
    assert len(proof["entries"]) >= 2  # provided, then read
    assert _check(node, path).returncode == 0
    shorter = {**proof, "entries": [e for e in proof["entries"] if e["index"] != idx]}
    path.write_text(json.dumps(shorter))
    r = _check(node, path)
    assert r.returncode == 2
    assert f"leaves out entry {idx}" in r.stderr, r.stderr
    # ... nor can the signed list be shortened to match: it is signed with the head's key.
    trimmed = {**shorter, "covers": {**proof["covers"], "entries": [i for i in proof["covers"]["entries"] if i != idx]}}
    path.write_text(json.dumps(trimmed))
    r = _check(node, path)
    assert r.returncode == 2
    assert "not signed" in r.stderr, r.stderr


def test_a_proof_lists_every_entry_whose_bytes_name_the_item(node: Copy, tmp_path: Path) -> None:
    """Whatever the item_id column says, the proof holds exactly the entries whose bytes name the item."""
    for item in node.items[:2]:
        proof = _prove(node, item, tmp_path / f"{item}.json")
        with node.connect() as conn:
            expected = [
                idx
                for idx, body in conn.execute(select(t.ledger_entries.c.idx, t.ledger_entries.c.body))
                if json.loads(body)["item_id"] == item
            ]
        assert sorted(expected) == proof["covers"]["entries"] == [e["index"] for e in proof["entries"]]


def _typed_columns() -> list[tuple[str, str]]:
    return [(a, b) for a, b in _columns() if not isinstance(t.metadata.tables[a].c[b].type, String)]


@pytest.mark.parametrize(("table", "column"), _typed_columns(), ids=[f"{a}.{b}" for a, b in _typed_columns()])
def test_a_value_not_of_its_columns_type_is_named_or_refused_by_the_database(
    node: Copy, table: str, column: str
) -> None:
    """SQLite keeps text in an integer, instant or binary column; PostgreSQL refuses it."""
    tab = t.metadata.tables[table]
    with node.connect() as conn:
        row = _row_of(conn, table, column)
        named = _named(conn, table, row)
    try:
        with node.connect() as conn:
            conn.exec_driver_sql(
                f"UPDATE {table} SET {column} = 'not a value' WHERE "
                + " AND ".join(f"{c.name} = {row[c.name]!r}" for c in tab.primary_key.columns),
            )
    except DBAPIError:  # PostgreSQL keeps every column to its type; SQLite only an INTEGER PRIMARY KEY
        assert not node.url.startswith("sqlite") or tab.c[column].primary_key, column
        return
    r = node.verify()
    if (table, column) in bindings.UNBOUND:
        assert r.returncode == 0, r.stderr
        return
    refused(r, named)
