"""The trilateral route on three real nodes (R18): KOR shares with JPN through the USA while
the KOR–JPN agreement is not in force, and the USA passes an item on only with KOR's approval.

The four agreement files as shipped, except that the 2016 KOR–JPN agreement keeps only KOR's
termination notice (no suspension): from 2019-11-23 00:00 KST it is terminated.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from gsomia.core import records
from gsomia.node.runtime import config as node_config
from gsomia.node.runtime.clock import SystemClock
from gsomia.node.service import Node
from gsomia.store import gate
from gsomia.store import schema as t
from gsomia.store.db import open_node_database
from gsomia.store.files import load_private
from nodes import Pair, User, node_group

ROOT = Path(__file__).resolve().parent.parent / "agreements"
GSOMIA = "jp-kr-gsomia-2016"
TISA = "us-kr-jp-tisa-2014"
TERMINATED = "2019-12-02T10:00:00+09:00"  # after the expiry of 2019-11-23 00:00 KST
IN_FORCE = "2019-10-01T10:00:00+09:00"


def termination_only(out: Path) -> Path:
    """The KOR–JPN file with its termination notice alone: its other notes dropped."""
    head, *blocks = (ROOT / f"{GSOMIA}.toml").read_text(encoding="utf-8").split("\n[[notes]]")
    kept = [b for b in blocks if 'type = "termination_notice"' in b]
    assert len(kept) == 1
    out.write_text(head + "".join("\n[[notes]]" + b for b in kept), encoding="utf-8")
    return out


@pytest.fixture
def three(tmp_path: Path, backend: str) -> Iterator[Pair]:
    files = [
        termination_only(tmp_path / f"{GSOMIA}.toml"),
        ROOT / "kr-us-gsomia-1987.toml",
        ROOT / "jp-us-gsomia-2007.toml",
        ROOT / f"{TISA}.toml",
    ]
    with node_group(tmp_path, backend, files, ("KOR", "JPN", "USA"), demo=True) as group:
        yield group


def listed(pair: Pair, party: str) -> dict[str, dict[str, Any]]:
    page = pair.user(party, "auditor").get("/items", after=0, limit=1000).json()
    return {r["item_id"]: r for r in page["items"]}


def approve(pair: Pair, item: str, recipient: str) -> Any:
    return pair.user("KOR", "security_authority").post(
        "/records", {"kind": "forward_approval", "item_id": item, "recipient": recipient}
    )


def ledger(pair: Pair, party: str, kind: str) -> list[dict[str, Any]]:
    cfg = node_config.load(pair.nodes[party].config)
    node = Node(cfg, open_node_database(cfg), SystemClock())
    try:
        with node.engine.connect() as conn:
            rows = conn.execute(select(t.ledger_entries.c.body).where(t.ledger_entries.c.kind == kind)).scalars()
            return [json.loads(b) for b in rows]
    finally:
        node.dispose()


def test_an_item_in_scope_goes_to_the_hub_and_is_held_there(three: Pair) -> None:
    three.set_clock(TERMINATED)
    [item] = three.share("KOR", "JPN", "군사II급비밀", 1)
    three.wait(lambda: item in listed(three, "USA"), "the USA to hold the item")
    held = listed(three, "USA")[item]
    assert (held["route"], held["agreement"], held["originator"], held["peer"]) == ("trilateral", TISA, "KOR", "KOR")
    sent = listed(three, "KOR")[item]
    assert (sent["route"], sent["peer"]) == ("trilateral", "USA")
    three.wait(lambda: three.pending("KOR") == 0, "KOR's outbox to empty")
    assert item not in listed(three, "JPN")
    assert three.user("JPN", "auditor").get(f"/items/{item}").status_code == 404


def test_after_the_originators_approval_the_hub_passes_it_on(three: Pair) -> None:
    three.set_clock(TERMINATED)
    [item, other] = three.share("KOR", "JPN", "군사II급비밀", 2)
    three.wait(lambda: {item, other} <= set(listed(three, "USA")), "the USA to hold both items")
    r = approve(three, item, "JPN")
    assert r.status_code == 201, r.text
    assert r.json()["record"]["hub"] == "USA"
    three.wait(lambda: item in listed(three, "JPN"), "JPN to receive the approved item")
    got = listed(three, "JPN")[item]
    assert (got["route"], got["agreement"], got["originator"], got["peer"]) == ("trilateral", TISA, "KOR", "USA")
    assert got["marking"] == "極秘"  # KOR's level II, in JPN's scheme under the arrangement
    three.wait(lambda: three.pending("USA") == 0, "the USA's outbox to empty")
    # The approval names one item: the other stays with the USA.
    assert other not in listed(three, "JPN")
    [forwarded] = ledger(three, "USA", "forward")
    assert forwarded["item_id"] == item
    assert forwarded["detail"]["recipient"] == "JPN"
    assert forwarded["detail"]["approval"] == r.json()["record"]["record_id"]


def test_an_item_outside_the_arrangements_scope_is_refused(three: Pair) -> None:
    three.set_clock(TERMINATED)
    body = {"items": [{"to": "JPN", "classification": "군사II급비밀", "text": "x", "purposes": ["trade"]}]}
    r = three.user("KOR", "analyst").post("/items", body)
    assert r.status_code == 403, r.text
    assert "R18" in r.text
    assert "R14" in r.text
    assert listed(three, "KOR") == {}


def test_an_approval_only_by_the_originator_for_a_third_party(three: Pair) -> None:
    three.set_clock(TERMINATED)
    [item] = three.share("KOR", "JPN", "군사II급비밀", 1)
    three.wait(lambda: item in listed(three, "USA"), "the USA to hold the item")
    for recipient in ("USA", "KOR"):
        r = approve(three, item, recipient)
        assert r.status_code == 403, r.text
        assert "R18" in r.text
    r = three.user("KOR", "analyst").post("/records", {"kind": "forward_approval", "item_id": item, "recipient": "JPN"})
    assert r.status_code == 403, r.text
    # The USA cannot approve for KOR.
    r = three.user("USA", "security_authority").post(
        "/records", {"kind": "forward_approval", "item_id": item, "recipient": "JPN"}
    )
    assert r.status_code == 403, r.text


def test_an_approval_for_another_recipient_does_not_make_the_hub_forward(three: Pair) -> None:
    three.set_clock(TERMINATED)
    [item] = three.share("KOR", "JPN", "군사II급비밀", 1)
    three.wait(lambda: item in listed(three, "USA"), "the USA to hold the item")
    kor_key = load_private(three.nodes["KOR"].root / "keys" / "KOR.key")
    # Signed by KOR's node, delivered as KOR would: naming the hub itself as recipient.
    wrong = records.make(kor_key, "forward_approval", "KOR", "kor.authority", item, datetime.now(UTC), recipient="USA")
    cfg = node_config.load(three.nodes["USA"].config)
    node = Node(cfg, open_node_database(cfg), SystemClock())
    try:
        assert node.receive_record("KOR", wrong.as_dict())
    finally:
        node.dispose()
    [denied] = ledger(three, "USA", "forward_denied")
    assert denied["item_id"] == item
    assert denied["detail"]["decision"]["decision"] == "deny"
    assert any(r["rule"] == "R18" for r in denied["detail"]["decision"]["reasons"])
    assert ledger(three, "USA", "forward") == []
    assert three.pending("USA") == 0
    assert item not in listed(three, "JPN")


def test_while_the_bilateral_agreement_is_in_force_the_item_goes_direct(three: Pair) -> None:
    three.set_clock(IN_FORCE)
    [item] = three.share("KOR", "JPN", "군사II급비밀", 1)
    three.wait(lambda: item in listed(three, "JPN"), "JPN to receive the item")
    got = listed(three, "JPN")[item]
    assert (got["route"], got["agreement"], got["peer"]) == ("direct", GSOMIA, "KOR")
    assert three.user("USA", "auditor").get(f"/items/{item}").status_code == 404
    assert item not in listed(three, "USA")


def test_each_node_proves_the_hops_it_saw_with_public_keys_only(three: Pair, tmp_path: Path) -> None:
    three.set_clock(TERMINATED)
    [item] = three.share("KOR", "JPN", "군사II급비밀", 1)
    three.wait(lambda: item in listed(three, "USA"), "the USA to hold the item")
    assert approve(three, item, "JPN").status_code == 201
    three.wait(lambda: item in listed(three, "JPN"), "JPN to receive the approved item")
    gsomia = str(Path(sys.executable).parent / "gsomia")
    seen: dict[str, set[str]] = {}
    for party, node in three.nodes.items():
        proof = subprocess.run(
            [gsomia, "audit", "prove", item, "--config", str(node.config)], capture_output=True, text=True, check=False
        )
        assert proof.returncode == 0, proof.stderr
        path = tmp_path / f"{party}.proof.json"
        path.write_text(proof.stdout, encoding="utf-8")
        pub = node.root / "keys" / f"{party}.pub"  # the node's public key: nothing else
        checked = subprocess.run(
            [gsomia, "audit", "check-proof", str(path), "--trust", str(pub), "--json"],
            capture_output=True,
            text=True,
            check=False,
        )
        assert checked.returncode == 0, checked.stderr
        seen[party] = {e.rsplit(":", 1)[1] for e in json.loads(checked.stdout)["entries"]}
    assert {"provide", "forward_approval"} <= seen["KOR"]  # sent to the hub, and approved
    assert {"receipt", "forward_approval_received", "forward"} <= seen["USA"]  # held, approved, passed on
    assert {"forward_approval_received", "receipt"} <= seen["JPN"]  # KOR's approval, then the item, from the hub
    assert "provide" not in seen["USA"] | seen["JPN"]


def test_the_hubs_egress_guard_alone_stops_a_forward_without_approval(three: Pair) -> None:
    """An insider at the USA queues a held item for JPN behind the node's back (no approval, no
    decision): the delivery's guard refuses it on its own, and JPN never gets it (R18)."""
    three.set_clock(TERMINATED)
    [item] = three.share("KOR", "JPN", "군사II급비밀", 1)
    three.wait(lambda: item in listed(three, "USA"), "the USA to hold the item")
    cfg = node_config.load(three.nodes["USA"].config)
    node = Node(cfg, open_node_database(cfg), SystemClock())
    try:
        with gate.begin(node.engine) as conn:
            node.outbox.enqueue(conn, "JPN", "bulk", "item", item, b"")
    finally:
        node.dispose()
    three.wait(lambda: any(e["item_id"] == item for e in ledger(three, "USA", "delivery_refused")), "the guard")
    [refused] = [e for e in ledger(three, "USA", "delivery_refused") if e["item_id"] == item]
    assert refused["detail"]["reason"] == f"egress guard: R18: no approval by KOR to pass {item} on to JPN"
    assert item not in listed(three, "JPN")


def test_an_item_the_originator_released_to_the_recipient_alone_is_not_sent_through_the_hub(three: Pair) -> None:
    three.set_clock(TERMINATED)
    body = {"to": "JPN", "classification": "군사II급비밀", "text": "x", "purposes": ["nk-missile"]}
    r = three.user("KOR", "analyst").post("/items", {"items": [{**body, "releasable_to": ["JPN"]}]})
    assert r.status_code == 403, r.text
    assert r.json()["reasons"][-1]["rule"] == "R5"
    assert listed(three, "USA") == {}


def test_at_the_recipient_clearance_is_weighed_under_the_arrangements_levels(three: Pair) -> None:
    """KOR's 군사II급비밀 is SECRET under the arrangement: 極秘 at JPN. A JPN analyst cleared
    to 秘 (CONFIDENTIAL) does not learn of it; one cleared to 極秘 reads it (R3, R7)."""
    three.set_clock(TERMINATED)
    [item] = three.share("KOR", "JPN", "군사II급비밀", 1)
    three.wait(lambda: item in listed(three, "USA"), "the USA to hold the item")
    assert approve(three, item, "JPN").status_code == 201
    three.wait(lambda: item in listed(three, "JPN"), "JPN to receive the approved item")
    cfg = node_config.load(three.nodes["JPN"].config)
    node = Node(cfg, open_node_database(cfg), SystemClock())
    try:
        low = node.add_user("jpn.low", "analyst", "秘", ["nk-missile"])
    finally:
        node.dispose()
    jpn = three.nodes["JPN"]
    lower = User(jpn.user_url, low, jpn.trust())
    assert lower.get(f"/items/{item}").status_code == 404  # answered as an unknown id
    cleared = three.user("JPN", "analyst").get(f"/items/{item}")
    assert cleared.status_code == 200
    assert cleared.json()["marking"] == "極秘"
