"""What a hostile reading of the node found, each held shut: the peer signature covers the
query, need-to-know tags are of a safe alphabet, a login token file must be private, the
people's client sends its token to the node alone, and a partner-file import is all or nothing.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gsomia import users
from gsomia.demo import terms_only
from gsomia.node import config as node_config
from gsomia.node import peer
from gsomia.node.clock import SystemClock
from gsomia.node.provision import provision_pair
from gsomia.node.service import Node
from gsomia.store.db import open_database
from inprocess import in_process_apps
from nodes import AGREEMENT

GSOMIA = str(Path(sys.executable).parent / "gsomia")


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([GSOMIA, *args], capture_output=True, text=True, timeout=300, check=False, env=env)


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with in_process_apps(tmp_path_factory.mktemp("review")) as found:
        yield found


# --- the peer request signature covers the query ------------------------------------------------


def consistency(apps: dict[str, Any], signed: str, sent: str) -> Any:
    headers = peer.sign_request(apps["jpn_key"], "GET", signed, b"")
    return apps["peer"].get(sent, headers=headers)


def test_a_consistency_request_is_answered_for_the_range_it_signed(apps: dict[str, Any]) -> None:
    target = peer.target("/peer/ledger/consistency", {"old": 0, "new": 0})
    assert target == "/peer/ledger/consistency?old=0&new=0"
    answer = consistency(apps, target, target)
    assert answer.status_code == 200, answer.text
    assert answer.json()["old"] == 0


@pytest.mark.parametrize(
    ("signed", "sent"),
    [
        ("/peer/ledger/consistency?old=0&new=0", "/peer/ledger/consistency?old=0&new=1"),
        ("/peer/ledger/consistency", "/peer/ledger/consistency?old=0&new=0"),
        ("/peer/ledger/consistency?old=0&new=0", "/peer/ledger/consistency?new=0&old=0"),
    ],
)
def test_a_consistency_request_whose_query_changed_after_signing_is_refused(
    apps: dict[str, Any], signed: str, sent: str
) -> None:
    answer = consistency(apps, signed, sent)
    assert answer.status_code == 401, answer.text
    assert answer.json()["detail"] == "the request signature does not verify"


# --- need-to-know tags ----------------------------------------------------------------------------


@pytest.mark.parametrize("tag", ["nk-missile", "nk-nuclear", "flash", "nk-0-l", "북한 탄도미사일 분석", "特定秘密保護"])
def test_need_to_know_tags_of_the_labels_alphabet_are_accepted(tag: str) -> None:
    assert users.check_need_to_know([tag]) == [tag]


@pytest.mark.parametrize(
    "tag", ["", "../../x", "..", "a/b", "a\\b", " nk", "nk ", "a  b", "-x", "a\nb", 'a"b', "x" * 65]
)
def test_need_to_know_tags_outside_the_alphabet_are_refused(tag: str) -> None:
    with pytest.raises(users.UserInvalid, match="need-to-know"):
        users.check_need_to_know([tag])


@pytest.fixture
def kor_config(tmp_path: Path) -> Path:
    return provision_pair(tmp_path, terms_only(AGREEMENT, tmp_path / "terms.toml"))["KOR"].config


@pytest.mark.parametrize("tag", ["", "../../x"])
def test_user_add_refuses_an_unsafe_need_to_know_in_one_line(kor_config: Path, tag: str) -> None:
    added = run("user", "add", "--config", str(kor_config), "lee.analyst", "--role", "analyst", "--need-to-know", tag)
    assert added.returncode == 2, added.stdout + added.stderr
    assert "need-to-know" in added.stderr
    assert len(added.stderr.strip().splitlines()) == 1
    cfg = node_config.load(kor_config)
    node = Node(cfg, open_database(cfg.database_url), SystemClock())
    try:
        assert "lee.analyst" not in {u["user_id"] for u in node.list_users()}
        with pytest.raises(users.UserInvalid):  # any other caller is held to the same
            node.add_user("lee.analyst", "analyst", None, ["../../x"])
    finally:
        node.engine.dispose()
