"""gsomia audit verify | prove | check-proof, including tampering with the database directly."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, insert, select, text

from gsomia.cli.demo import terms_only
from gsomia.node.runtime import config as node_config
from gsomia.node.runtime.clock import SystemClock
from gsomia.node.service import ItemSpec, Node
from gsomia.node.setup.provision import provision_pair
from gsomia.store import schema as t
from gsomia.store.db import alembic_config, make_engine, open_database
from nodes import AGREEMENT

GSOMIA = str(Path(sys.executable).parent / "gsomia")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([GSOMIA, *args], capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def kor(tmp_path: Path) -> tuple[Path, list[str], str]:
    nodes = provision_pair(tmp_path, terms_only(AGREEMENT, tmp_path / "terms.toml"))
    cfg = node_config.load(nodes["KOR"].config)
    node = Node(cfg, open_database(cfg.database_url), SystemClock())
    analyst = node.authenticate(nodes["KOR"].tokens["analyst"])
    assert analyst is not None
    ids = [
        r["item_id"]
        for r in node.provide(analyst, [ItemSpec("JPN", "군사II급비밀", f"{i}".encode()) for i in range(7)])
    ]
    node.own_head()  # the node signs a head, as it does with every delivery
    node.engine.dispose()
    return nodes["KOR"].config, ids, cfg.database_url


def test_verify_prove_and_check(kor: tuple[Path, list[str], str], tmp_path: Path) -> None:
    config, ids, _ = kor
    ok = run("audit", "verify", "--config", str(config), "--json")
    assert ok.returncode == 0, ok.stderr
    summary = json.loads(ok.stdout)
    assert summary["size"] >= 7 + 4  # four users added, seven items provided
    assert summary["tree_heads_checked"] >= 1
    proof = run("audit", "prove", ids[3], "--config", str(config))
    assert proof.returncode == 0, proof.stderr
    path = tmp_path / "proof.json"
    path.write_text(proof.stdout)
    pub = config.parent / "keys" / "KOR.pub"
    checked = run("audit", "check-proof", str(path), "--trust", str(pub), "--json")
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["entries"][0].endswith(":provide")
    # Public keys only: the proof checks without the node's database or private key.
    data = json.loads(proof.stdout)
    forged = dict(
        data, entries=[dict(data["entries"][0], entry=data["entries"][0]["entry"].replace("provide", "destroy"))]
    )
    path.write_text(json.dumps(forged))
    bad = run("audit", "check-proof", str(path), "--trust", str(pub))
    assert bad.returncode == 2
    assert "is not in KOR's log" in bad.stderr
    other = config.parent.parent / "JPN" / "keys" / "JPN.pub"
    path.write_text(proof.stdout)
    assert run("audit", "check-proof", str(path), "--trust", str(other)).returncode == 2
    assert run("audit", "prove", "00000000-0000-4000-8000-000000000000", "--config", str(config)).returncode == 2


@pytest.mark.parametrize(
    ("tamper", "needle"),
    [
        (
            "UPDATE ledger_entries SET body = replace(body, 'provide', 'destroy') WHERE idx = 6",
            "entry 6 (destroy) was altered",
        ),
        ("DELETE FROM ledger_entries WHERE idx = 5", "entry 5 is missing"),
        ("UPDATE ledger_nodes SET hash = zeroblob(32) WHERE level = 1 AND idx = 1", "tree node (1, 1)"),
        ("UPDATE tree_heads SET signature = zeroblob(64)", "bad signature"),
        ("UPDATE tree_heads SET size = size + 5", "bad signature"),  # the size is signed
    ],
)
def test_verify_names_the_first_bad_record(kor: tuple[Path, list[str], str], tamper: str, needle: str) -> None:
    config, _, url = kor
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(tamper))
    engine.dispose()
    r = run("audit", "verify", "--config", str(config))
    assert r.returncode == 2
    assert needle in r.stderr, r.stderr
    assert r.stderr.count("\n") == 1
    assert "Traceback" not in r.stderr


def test_migration_carries_the_old_audit_trail_into_the_ledger(tmp_path: Path) -> None:
    from alembic import command

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = make_engine(url)
    with engine.begin() as conn:
        cfg = alembic_config(url)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        audit = t.metadata.tables.get("audit")
        assert audit is None  # the current schema no longer has it
        conn.execute(
            text("INSERT INTO audit (at, kind, actor, item_id, detail) VALUES (:at, :kind, :actor, :item, :detail)"),
            [
                {
                    "at": "2019-08-23 01:00:00.000000",
                    "kind": "provide",
                    "actor": "kim",
                    "item": "a",
                    "detail": '{"to": "JPN"}',
                },
                {"at": "2019-08-23 02:00:00.000000", "kind": "read", "actor": "sato", "item": "a", "detail": "{}"},
            ],
        )
    engine.dispose()
    upgraded = open_database(url)
    with upgraded.connect() as conn:
        rows = conn.execute(select(t.ledger_entries.c.idx, t.ledger_entries.c.kind, t.ledger_entries.c.body)).all()
        assert [(i, k) for i, k, _ in rows] == [(0, "provide"), (1, "read")]
        assert json.loads(rows[0][2])["detail"] == {"to": "JPN"}
        from gsomia.store import ledger_store

        assert ledger_store.verify_all(conn).size == 2
    with upgraded.begin() as conn:  # and the log goes on from there
        ledger_store.append_rows(conn, [{"at": "2020-01-01T00:00:00+00:00", "kind": "x", "actor": "y"}])
    with upgraded.connect() as conn:
        assert ledger_store.verify_all(conn).size == 3
    upgraded.dispose()


def test_appends_are_refused_outside_a_counted_index(kor: tuple[Path, list[str], str]) -> None:
    """An entry slipped in without the counter is caught by verify (gapless, counted log)."""
    config, _, url = kor
    engine = create_engine(url)
    with engine.begin() as conn:
        size = conn.execute(select(t.ledger_state.c.size)).scalar_one()
        conn.execute(
            insert(t.ledger_entries).values(
                idx=size, at=datetime(2020, 1, 1, tzinfo=UTC), kind="x", actor="y", body="{}", leaf_hash=b"0" * 32
            )
        )
    engine.dispose()
    r = run("audit", "verify", "--config", str(config))
    assert r.returncode == 2
    assert f"entry {size}" in r.stderr
