"""Key rotation across two real nodes: the partner learns the new key, nothing old is lost."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select

from gsomia.cli.demo import terms_only
from gsomia.core import keys
from gsomia.node.process import start_all
from gsomia.node.runtime import config as node_config
from gsomia.node.runtime import keychain
from gsomia.node.runtime.clock import SystemClock
from gsomia.node.service import Node
from gsomia.node.setup.provision import provision_pair
from gsomia.store import schema as t
from gsomia.store.db import open_database
from nodes import AGREEMENT, Pair

GSOMIA = str(Path(sys.executable).parent / "gsomia")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([GSOMIA, *args], capture_output=True, text=True, timeout=120, check=False)


def ledger_kinds(url: str) -> list[str]:
    engine = create_engine(url)
    with engine.connect() as conn:
        kinds = list(conn.execute(select(t.ledger_entries.c.kind).order_by(t.ledger_entries.c.idx)).scalars())
    engine.dispose()
    return kinds


def partner_heads(url: str, party: str) -> list[int]:
    engine = create_engine(url)
    with engine.connect() as conn:
        sizes = list(conn.execute(select(t.tree_heads.c.size).where(t.tree_heads.c.party == party)).scalars())
    engine.dispose()
    return sizes


def test_a_rotated_key_is_learned_by_the_partner_and_old_items_stay_readable(pair: Pair, tmp_path: Path) -> None:
    kor_cfg, jpn_cfg = pair.nodes["KOR"].config, pair.nodes["JPN"].config
    old_kor_pub = tmp_path / "KOR-old.pub"
    shutil.copy(kor_cfg.parent / "keys" / "KOR.pub", old_kor_pub)
    before = pair.share("KOR", "JPN", "군사II급비밀", 3)
    from_jpn = pair.share("JPN", "KOR", "極秘", 2)
    pair.wait(lambda: pair.pending("KOR") == 0 and pair.pending("JPN") == 0, "delivery before the rotation")

    running = run("keys", "rotate", "--config", str(kor_cfg))
    assert running.returncode == 2
    assert "stop it before rotating" in running.stderr
    pair.procs["KOR"].stop()
    rotated = run("keys", "rotate", "--config", str(kor_cfg))
    assert rotated.returncode == 0, rotated.stderr
    assert "rotation 1" in rotated.stdout
    retired = list((kor_cfg.parent / "keys" / "retired").glob("KOR-*.key"))
    assert len(retired) == 1
    assert retired[0].stat().st_mode & 0o777 == 0o600
    pair.procs["KOR"].start()

    after = pair.share("KOR", "JPN", "군사II급비밀", 3)  # signed with the new key, which JPN must learn
    more_from_jpn = pair.share("JPN", "KOR", "極秘", 2)
    pair.wait(lambda: pair.pending("KOR") == 0 and pair.pending("JPN") == 0, "delivery after the rotation")
    assert {r["item_id"] for r in pair.received("JPN")} == set(before + after)
    assert {r["item_id"] for r in pair.received("KOR")} == set(from_jpn + more_from_jpn)

    # Every item opens, on both sides: sealed by the old key, by the new, to the old, to the new.
    for party, ids in (("JPN", before + after), ("KOR", from_jpn + more_from_jpn + before)):
        reader = pair.user(party, "analyst")
        for item_id in ids:
            r = reader.get(f"/items/{item_id}", purpose="nk-missile")
            assert r.status_code == 200, (party, item_id, r.text)

    history = run("keys", "history", "--config", str(jpn_cfg), "--json")
    assert history.returncode == 0, history.stderr
    kor_keys = [row for row in json.loads(history.stdout) if row["party"] == "KOR"]
    assert len(kor_keys) == 2
    assert kor_keys[0]["retired_at"]
    assert kor_keys[1]["retired_at"] is None

    seen = pair.user("JPN", "auditor").get("/keys").json()["keys"]
    assert [k["kid"] for k in seen if k["party"] == "KOR"] == [k["kid"] for k in kor_keys]
    assert pair.user("JPN", "analyst").get("/keys").status_code == 403

    kor_db, jpn_db = (node_config.load(c).database_url for c in (kor_cfg, jpn_cfg))
    assert "key_rotation" in ledger_kinds(kor_db)
    assert "key_rotation_received" in ledger_kinds(jpn_db)
    tree_size = kor_keys[1]["heads_from_size"]
    # JPN's witness verified (and kept) a head of KOR's that the new key signed; no alarm anywhere.
    pair.share("KOR", "JPN", "군사II급비밀", 1)
    pair.wait(lambda: max(partner_heads(jpn_db, "KOR")) >= tree_size, "a post-rotation head verified by JPN")
    for party in ("KOR", "JPN"):
        r = pair.user(party, "security_authority").get("/ledger/alarms")
        assert r.json()["alarms"] == [], r.text

    for cfg in (kor_cfg, jpn_cfg):
        verified = run("audit", "verify", "--config", str(cfg), "--json")
        assert verified.returncode == 0, verified.stderr
    proof = run("audit", "prove", after[0], "--config", str(kor_cfg))
    assert proof.returncode == 0, proof.stderr
    proof_file = tmp_path / "proof.json"
    proof_file.write_text(proof.stdout)
    for trusted in (old_kor_pub, kor_cfg.parent / "keys" / "KOR.pub"):  # an auditor holding either key
        checked = run("audit", "check-proof", str(proof_file), "--trust", str(trusted), "--json")
        assert checked.returncode == 0, checked.stderr


@pytest.fixture
def kor(tmp_path: Path) -> node_config.NodeConfig:
    nodes = provision_pair(tmp_path, terms_only(AGREEMENT, tmp_path / "terms.toml"))
    return node_config.load(nodes["KOR"].config)


def test_a_retired_key_file_in_place_of_the_current_one_is_refused(kor: node_config.NodeConfig) -> None:
    engine = open_database(kor.database_url)
    old = kor.key_path.read_bytes()
    rotation = keychain.rotate(kor, engine)
    kor.key_path.write_bytes(old)  # an operator restores the old key file
    with pytest.raises(keychain.KeyChainError, match="is a retired key"):
        Node(node_config.load(kor.path), engine, SystemClock())
    result = run("user", "list", "--config", str(kor.path))
    assert result.returncode == 2
    assert "retired key" in result.stderr
    assert "Traceback" not in result.stderr
    assert rotation.old.kid in result.stderr


def test_a_missing_retired_key_is_refused_by_name(kor: node_config.NodeConfig) -> None:
    engine = open_database(kor.database_url)
    rotation = keychain.rotate(kor, engine)
    (keychain.retired_dir(kor) / f"KOR-{rotation.old.kid}.key").unlink()
    with pytest.raises(keychain.KeyChainError, match="missing; the items sealed to retired key"):
        Node(node_config.load(kor.path), engine, SystemClock())


def test_an_interrupted_rotation_is_finished_or_discarded_at_the_next_start(kor: node_config.NodeConfig) -> None:
    engine = open_database(kor.database_url)
    pending = kor.key_path.with_name("KOR.key.new")
    # Crashed after writing KOR.key.new, before the transaction: the old key stays current.
    pending.write_bytes(keys.generate("KOR", "classic").to_bytes())
    node = Node(node_config.load(kor.path), engine, SystemClock())
    assert node.public.kid == kor.key.public().kid
    assert not pending.exists()
    # Crashed after the transaction, before the rename: the new key becomes current.
    rotation = keychain.rotate(kor, engine)
    shutil.copy(kor.key_path, pending)
    shutil.copy(keychain.retired_dir(kor) / f"KOR-{rotation.old.kid}.key", kor.key_path)
    node = Node(node_config.load(kor.path), engine, SystemClock())
    assert node.public.kid == rotation.new.kid
    assert not pending.exists()
    assert (
        json.loads(kor.key_path.with_suffix(".pub").read_bytes())["ed25519"]
        == json.loads(rotation.new.to_bytes())["ed25519"]
    )


def test_both_partners_rotating_at_once_still_learn_each_others_keys(pair: Pair) -> None:
    pair.share("KOR", "JPN", "군사II급비밀", 2)
    pair.share("JPN", "KOR", "極秘", 2)
    pair.wait(lambda: pair.pending("KOR") == 0 and pair.pending("JPN") == 0, "delivery before the rotations")
    for party in ("KOR", "JPN"):
        pair.procs[party].stop()
        rotated = run("keys", "rotate", "--config", str(pair.nodes[party].config))
        assert rotated.returncode == 0, rotated.stderr
    start_all(list(pair.procs.values()))
    # Each side's first request names a key the other does not know, and so does each receipt.
    to_jpn = pair.share("KOR", "JPN", "군사II급비밀", 2)
    to_kor = pair.share("JPN", "KOR", "極秘", 2)
    pair.wait(lambda: pair.pending("KOR") == 0 and pair.pending("JPN") == 0, "delivery after both rotations")
    assert set(to_jpn) <= {r["item_id"] for r in pair.received("JPN")}
    assert set(to_kor) <= {r["item_id"] for r in pair.received("KOR")}
    for party, other in (("KOR", "JPN"), ("JPN", "KOR")):
        history = run("keys", "history", "--config", str(pair.nodes[party].config), "--json")
        assert history.returncode == 0, history.stderr
        assert len([row for row in json.loads(history.stdout) if row["party"] == other]) == 2


def test_a_proof_across_a_rotation_checks_with_either_key_and_not_with_a_forged_chain(
    kor: node_config.NodeConfig, tmp_path: Path
) -> None:
    from gsomia.node.service import ItemSpec

    engine = open_database(kor.database_url)
    old_pub = tmp_path / "KOR-old.pub"
    old_pub.write_bytes(kor.key.public().to_bytes())
    node = Node(kor, engine, SystemClock())
    analyst = node.authenticate(json.loads((kor.path.parent / "tokens.json").read_text())["analyst"])
    assert analyst is not None
    item = node.provide(analyst, [ItemSpec("JPN", "군사II급비밀", b"before")])[0]["item_id"]
    node.own_head()
    keychain.rotate(kor, engine)
    proof = run("audit", "prove", item, "--config", str(kor.path))
    assert proof.returncode == 0, proof.stderr
    data = json.loads(proof.stdout)
    assert len(data["keys"]) == 1
    good = tmp_path / "proof.json"
    good.write_text(proof.stdout)
    for trusted in (old_pub, kor.key_path.with_suffix(".pub")):
        checked = run("audit", "check-proof", str(good), "--trust", str(trusted))
        assert checked.returncode == 0, checked.stderr
    # Without the chain the new key's head does not verify with the old key; a forged chain is named.
    no_chain = tmp_path / "no-chain.json"
    no_chain.write_text(json.dumps({**data, "keys": []}))
    refused = run("audit", "check-proof", str(no_chain), "--trust", str(old_pub))
    assert refused.returncode == 2
    assert "does not verify" in refused.stderr
    forged = json.loads(proof.stdout)
    forged["keys"][0]["statement"]["tree_size"] += 1
    forged_file = tmp_path / "forged.json"
    forged_file.write_text(json.dumps(forged))
    refused = run("audit", "check-proof", str(forged_file), "--trust", str(old_pub))
    assert refused.returncode == 2
    assert "key chain" in refused.stderr
    assert "Traceback" not in refused.stderr
    # The auditor's full verification walks the chain too: every head, old key and new.
    verified = run("audit", "verify", "--config", str(kor.path), "--json")
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["tree_heads_checked"] >= 2
