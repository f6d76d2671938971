"""Two real nodes under the pq-hybrid suite: every signature the nodes make is Ed25519 and ML-DSA-65."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gsomia.core import ledger
from nodes import FlashListener, Pair, node_pair

GSOMIA = str(Path(sys.executable).parent / "gsomia")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([GSOMIA, *args], capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def pq_pair(tmp_path: Path, backend: str) -> Iterator[Pair]:
    with node_pair(tmp_path, backend, suite="pq-hybrid") as p:
        yield p


def test_a_pq_hybrid_pair_shares_alerts_rotates_and_proves(pq_pair: Pair, tmp_path: Path) -> None:
    pair = pq_pair
    kor_cfg = pair.nodes["KOR"].config
    listener = FlashListener(pair.nodes["KOR"].user_url, pair.nodes["KOR"].tokens["duty_officer"])
    listener.start()
    assert listener.ready.wait(10)
    items = pair.share("KOR", "JPN", "군사II급비밀", 5)
    back = pair.share("JPN", "KOR", "極秘", 3)
    alert = {"to": "KOR", "classification": "極秘", "text": "launch", "purposes": ["nk-missile"]}
    assert pair.user("JPN", "duty_officer").post("/alerts", alert).status_code == 201
    pair.wait(lambda: pair.pending("KOR") == 0 and pair.pending("JPN") == 0, "delivery")
    pair.wait(lambda: len(listener.events) == 1, "the flash report")
    listener.done.set()
    assert listener.events[0][1]["text"] == "launch"

    head = ledger.TreeHead.from_dict(pair.user("KOR", "auditor").get("/ledger/head").json())
    assert len(head.signature) == 64 + 3309  # Ed25519 ‖ ML-DSA-65

    pair.procs["KOR"].stop()
    rotated = run("keys", "rotate", "--config", str(kor_cfg))
    assert rotated.returncode == 0, rotated.stderr
    pair.procs["KOR"].start()
    more = pair.share("KOR", "JPN", "군사II급비밀", 2)
    pair.wait(lambda: pair.pending("KOR") == 0, "delivery after the rotation")
    reader = pair.user("JPN", "analyst")
    for item_id in items + more:
        assert reader.get(f"/items/{item_id}", purpose="nk-missile").status_code == 200
    assert {r["item_id"] for r in pair.received("KOR")} == set(back) | {listener.events[0][1]["alert_id"]}

    for party in ("KOR", "JPN"):
        verified = run("audit", "verify", "--config", str(pair.nodes[party].config), "--json")
        assert verified.returncode == 0, verified.stderr
        r = pair.user(party, "security_authority").get("/ledger/alarms")
        assert r.json()["alarms"] == [], r.text
    proof = run("audit", "prove", more[0], "--config", str(kor_cfg))
    assert proof.returncode == 0, proof.stderr
    signature = base64.b64decode(json.loads(proof.stdout)["tree_head"]["signature"])
    assert len(signature) == 64 + 3309
    path = tmp_path / "proof.json"
    path.write_text(proof.stdout)
    checked = run(
        "audit", "check-proof", str(path), "--trust", str(pair.nodes["JPN"].config.parent / "keys" / "KOR.pub")
    )
    assert checked.returncode == 0, checked.stderr
