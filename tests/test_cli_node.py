"""The node's command line: users, node configuration errors, and the demo end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from gsomia.cli.demo import terms_only
from gsomia.node.runtime import config as node_config
from gsomia.node.runtime.clock import SystemClock
from gsomia.node.service import Node
from gsomia.node.setup.provision import provision_pair
from gsomia.store.db import open_database
from nodes import AGREEMENT

GSOMIA = str(Path(sys.executable).parent / "gsomia")


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([GSOMIA, *args], capture_output=True, text=True, timeout=300, cwd=cwd, check=False)


@pytest.fixture
def kor_config(tmp_path: Path) -> Path:
    return provision_pair(tmp_path, terms_only(AGREEMENT, tmp_path / "terms.toml"))["KOR"].config


def test_user_add_list_revoke(kor_config: Path) -> None:
    added = run(
        "user",
        "add",
        "--config",
        str(kor_config),
        "park.analyst",
        "--role",
        "analyst",
        "--clearance",
        "군사II급비밀",
        "--need-to-know",
        "nk-missile",
    )
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip().splitlines()[-1]
    assert token.startswith("gsk_")
    cfg = node_config.load(kor_config)
    node = Node(cfg, open_database(cfg.database_url), SystemClock())
    subject = node.authenticate(token)
    assert subject is not None
    assert (subject.id, subject.role.value, subject.clearance) == ("park.analyst", "analyst", "군사II급비밀")
    listed = json.loads(run("user", "list", "--config", str(kor_config), "--json").stdout)
    assert "park.analyst" in {u["user_id"] for u in listed}
    assert token not in json.dumps(listed)  # only a hash is stored
    assert run("user", "revoke", "--config", str(kor_config), "park.analyst").returncode == 0
    assert node.authenticate(token) is None
    again = run("user", "revoke", "--config", str(kor_config), "park.analyst")
    assert again.returncode == 2
    assert again.stderr.count("\n") == 1
    node.engine.dispose()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("user", "add", "--config", "{cfg}", "dup", "--role", "wizard"), "role 'wizard'"),
        (("user", "add", "--config", "{cfg}", "kor.analyst", "--role", "analyst"), "already exists"),
        (("user", "list", "--config", "{missing}"), "no such node configuration"),
    ],
)
def test_user_errors_are_one_line(kor_config: Path, args: tuple[str, ...], needle: str) -> None:
    filled = [a.format(cfg=kor_config, missing=kor_config.parent / "nope.toml") for a in args]
    r = run(*filled)
    assert r.returncode == 2
    assert needle in r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.count("\n") == 1


def test_bad_node_configuration_names_the_key(kor_config: Path) -> None:
    bad = kor_config.parent / "bad.toml"
    bad.write_text(kor_config.read_text().replace('listen = "127.0.0.1:', 'listen = "127.0.0.1:x'))
    r = run("node", "serve", "--config", str(bad))
    assert r.returncode == 2
    assert "listen" in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("suspension", [True, False])
def test_demo_headless_json(tmp_path: Path, suspension: bool) -> None:
    args = [
        "demo",
        "--headless",
        "--json",
        "--items",
        "30",
        "--flash",
        "3",
        "--root",
        str(tmp_path / ".demo"),
        "--agreement",
        str(AGREEMENT),
    ]
    if not suspension:
        args.append("--no-suspension")
    r = run(*args)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert set(result) == {
        "sent",
        "delivered",
        "flash",
        "agreement",
        "state_at_end",
        "in_force",
        "notice_at",
        "suspended_at",
        "deadline",
        "terminated_at",
        "refused_after_termination",
    }
    assert result["sent"] == result["delivered"]
    assert result["agreement"] == "jp-kr-gsomia-2016"
    assert result["in_force"] is suspension
    # Each instant in ISO 8601 with its offset (the agreement's, +09:00), at the file's recorded notes.
    kst = timedelta(hours=9)
    notice, deadline = datetime.fromisoformat(result["notice_at"]), datetime.fromisoformat(result["deadline"])
    assert notice.utcoffset() == deadline.utcoffset() == kst
    assert f"{notice:%Y-%m-%d %H:%M}" == "2019-08-23 00:00"
    assert deadline.isoformat() == "2019-11-23T00:00:00+09:00"
    if suspension:
        suspended = datetime.fromisoformat(result["suspended_at"])
        assert (suspended.utcoffset(), f"{suspended:%Y-%m-%d %H:%M}") == (kst, "2019-11-22 18:00")
        assert result["terminated_at"] is None
    else:
        assert result["suspended_at"] is None
        assert result["terminated_at"] == "2019-11-23T00:00:00+09:00"
    assert result["flash"]["count"] == 3
    assert 0 < result["flash"]["p50_ms"] <= result["flash"]["p99_ms"]
    if suspension:
        assert result["state_at_end"] == "termination_suspended"
        assert result["refused_after_termination"] == 0
        assert result["sent"] == 30 * 2 + 3 + 20 * 2
    else:
        assert result["state_at_end"] == "terminated"
        assert result["refused_after_termination"] == 40
        assert result["sent"] == 30 * 2 + 3
    tokens = json.loads((tmp_path / ".demo" / "KOR" / "tokens.json").read_text())
    assert set(tokens) == {"analyst", "duty_officer", "security_authority", "auditor"}
    assert (tmp_path / ".demo" / "JPN" / "node.toml").exists()


def test_demo_trilateral_headless_json(tmp_path: Path) -> None:
    """Both routes of R18 on three nodes, counted from what each node lists."""
    root = tmp_path / ".demo"
    r = run("demo", "--trilateral", "--headless", "--json", "--items", "3", "--root", str(root))
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    assert result == {
        "direct": 3,
        "usa_saw_direct": 0,
        "via_USA": 3,
        "forwarded_without_consent": 0,
        "held_at_USA_without_approval": 1,
        "out_of_scope_refused": 3,
        "state_at_end": "terminated",
    }
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["JPN", "KOR", "USA"]
    text = run("demo", "--trilateral", "--headless", "--items", "1", "--root", str(root))
    assert text.returncode == 0, text.stderr
    assert "1 through the USA with KOR's approval, 0 without it, 1 held unapproved" in text.stdout
    assert "outside the arrangement's scope: 1 refused (R18)" in text.stdout
