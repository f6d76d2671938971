"""Provable history across two real nodes: tree heads, consistency checks, fork alarms."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, delete, insert, select, update

from gsomia.core import ledger, merkle
from gsomia.node.runtime import config as node_config
from gsomia.store import schema as t
from nodes import Pair

GSOMIA = str(Path(sys.executable).parent / "gsomia")


def database(pair: Pair, party: str) -> str:
    return node_config.load(pair.nodes[party].config).database_url


def rewrite_history(url: str, index: int) -> None:
    """What a node that rewrites its past would do: change an entry (its bytes, its leaf hash and the
    column that copies the changed field, so the entry is consistent) and rebuild every tree node."""
    engine = create_engine(url)
    with engine.begin() as conn:
        body = conn.execute(select(t.ledger_entries.c.body).where(t.ledger_entries.c.idx == index)).scalar_one()
        entry = json.loads(body)
        entry["actor"] = "someone-else"
        new_body = ledger.entry_bytes(entry)
        conn.execute(
            update(t.ledger_entries)
            .where(t.ledger_entries.c.idx == index)
            .values(body=new_body.decode(), leaf_hash=merkle.leaf_hash(new_body), actor=entry["actor"])
        )
        leaves = [
            bytes(h) for (h,) in conn.execute(select(t.ledger_entries.c.leaf_hash).order_by(t.ledger_entries.c.idx))
        ]
        nodes: dict[tuple[int, int], bytes] = {}
        for level, idx, h in ledger.append_many(0, leaves, lambda lv, ix: nodes[(lv, ix)]):
            nodes[(level, idx)] = h
        conn.execute(delete(t.ledger_nodes))
        conn.execute(insert(t.ledger_nodes), [{"level": lv, "idx": ix, "hash": h} for (lv, ix), h in nodes.items()])
    engine.dispose()


def alarms(pair: Pair, party: str) -> list[dict[str, object]]:
    r = pair.user(party, "security_authority").get("/ledger/alarms")
    assert r.status_code == 200, r.text
    return r.json()["alarms"]  # type: ignore[no-any-return]


def test_a_node_that_rewrites_its_history_is_caught_by_its_partner(pair: Pair) -> None:
    pair.share("KOR", "JPN", "군사II급비밀", 5)
    pair.share("JPN", "KOR", "秘", 3)
    pair.wait(lambda: pair.pending("KOR") == 0 and pair.pending("JPN") == 0, "delivery")
    pair.share("KOR", "JPN", "군사II급비밀", 2)  # the partner has seen and verified heads by now
    pair.wait(lambda: pair.pending("KOR") == 0, "delivery")
    assert alarms(pair, "KOR") == alarms(pair, "JPN") == []
    ok = subprocess.run(
        [GSOMIA, "audit", "verify", "--config", str(pair.nodes["KOR"].config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr

    rewrite_history(database(pair, "KOR"), 2)
    pair.share("KOR", "JPN", "군사II급비밀", 1)  # the next delivery carries a head of the rewritten log

    def forked() -> bool:
        return any(a["kind"] == "fork" and a["about"] == "KOR" for a in alarms(pair, "JPN"))

    pair.wait(forked, "JPN's witness to raise a fork alarm about KOR")
    pair.wait(
        lambda: any(a["kind"] == "fork" for a in alarms(pair, "KOR")), "the alarm to reach KOR's security authority"
    )
    alarm = next(a for a in alarms(pair, "KOR") if a["kind"] == "fork")
    assert alarm["raised_by"] == "JPN"
    assert "rewritten" in str(alarm["detail"])
    # KOR's own audit catches it too: the heads it signed before no longer match its log.
    bad = subprocess.run(
        [GSOMIA, "audit", "verify", "--config", str(pair.nodes["KOR"].config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2
    assert "was rewritten" in bad.stderr
    assert bad.stderr.count("\n") == 1
    assert (
        pair.user("KOR", "analyst").get("/ledger/alarms").status_code == 403
    )  # for the security authority and auditors


def test_heads_are_exchanged_and_verified_both_ways(pair: Pair) -> None:
    pair.share("KOR", "JPN", "군사II급비밀", 3)
    pair.wait(lambda: pair.pending("KOR") == 0, "delivery")
    kor_head = pair.user("KOR", "auditor").get("/ledger/head").json()
    assert kor_head["party"] == "KOR"
    assert kor_head["size"] >= 3

    def partner_heads(party: str, about: str) -> int:
        engine = create_engine(database(pair, party))
        with engine.connect() as conn:
            n = len(conn.execute(select(t.tree_heads.c.seq).where(t.tree_heads.c.party == about)).all())
        engine.dispose()
        return n

    pair.wait(
        lambda: partner_heads("JPN", "KOR") > 0 and partner_heads("KOR", "JPN") > 0,
        "each side to keep the other's head",
    )
