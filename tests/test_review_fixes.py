"""What a hostile reading of the node found, each held shut: the peer signature covers the
query, need-to-know tags are of a safe alphabet, a login token file must be private, the
people's client sends its token to the node alone, and a partner-file import is all or nothing.
"""

from __future__ import annotations

import http.server
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from gsomia import client, users
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


# --- the people's client: the token to the node alone, from a private file ------------------------


class FakeNode(http.server.BaseHTTPRequestHandler):
    """A node's user API as far as `gsomia login` asks: /health and /status. Records what came."""

    seen: ClassVar[list[tuple[str, str | None]]] = []

    def do_GET(self) -> None:
        FakeNode.seen.append((self.path, self.headers.get("Authorization")))
        body = json.dumps({"party": "KOR"} if self.path == "/health" else {}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture
def fake_node() -> Iterator[str]:
    FakeNode.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeNode)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def proxy() -> Iterator[tuple[str, list[bytes]]]:
    """A TCP listener posing as the HTTP proxy: every byte any connection sends to it is kept."""
    received: list[bytes] = []
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                try:
                    received.append(conn.recv(65536) or b"(connected)")
                except OSError:
                    received.append(b"(connected)")

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", received
    finally:
        stop.set()
        thread.join()
        listener.close()


def login_env(home: Path, proxy_url: str | None = None) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k.lower() not in {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
    }
    env["GSOMIA_HOME"] = str(home)
    if proxy_url:
        env.update(HTTP_PROXY=proxy_url, HTTPS_PROXY=proxy_url, ALL_PROXY=proxy_url)
    return env


def test_login_sends_its_token_to_the_node_alone_never_to_a_proxy_of_the_environment(
    tmp_path: Path, fake_node: str, proxy: tuple[str, list[bytes]]
) -> None:
    proxy_url, received = proxy
    token = "gsk_" + "t" * 43
    token_file = tmp_path / "token"
    token_file.write_text(token + "\n")
    token_file.chmod(0o600)
    ran = run(
        "login", "--node", fake_node, "--token-file", str(token_file), env=login_env(tmp_path / "home", proxy_url)
    )
    assert ran.returncode == 0, ran.stderr
    assert received == []  # nothing reached the "proxy": not the token, not a connection
    assert ("/status", f"Bearer {token}") in FakeNode.seen
    assert ("/health", None) in FakeNode.seen  # open to anyone: it needs no token and gets none


def test_the_client_takes_no_proxy_netrc_or_ca_file_from_the_environment(
    tmp_path: Path, fake_node: str, proxy: tuple[str, list[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy_url, received = proxy
    (tmp_path / ".netrc").write_text("machine 127.0.0.1 login someone password secret\n")
    monkeypatch.setenv("NETRC", str(tmp_path / ".netrc"))
    monkeypatch.setenv("HTTP_PROXY", proxy_url)
    monkeypatch.setenv("ALL_PROXY", proxy_url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with client.NodeClient(fake_node, "gsk_secret") as node:
        assert node.http.trust_env is False
        assert "authorization" not in node.http.headers
        assert node.health() == {"party": "KOR"}
        node.status()
    assert received == []
    assert FakeNode.seen == [("/health", None), ("/status", "Bearer gsk_secret")]


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_login_refuses_a_token_file_others_may_read(tmp_path: Path, fake_node: str, mode: int) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("gsk_" + "t" * 43 + "\n")
    token_file.chmod(mode)
    home = tmp_path / "home"
    ran = run("login", "--node", fake_node, "--token-file", str(token_file), env=login_env(home))
    assert ran.returncode == 2, ran.stdout + ran.stderr
    assert ran.stderr.strip().splitlines() == [
        f"gsomia: error: --token-file: {token_file}: others may read it (mode {mode:04o}); chmod 600 it"
    ]
    assert FakeNode.seen == []  # refused before the node is asked
    assert not (home / "profile.toml").exists()
