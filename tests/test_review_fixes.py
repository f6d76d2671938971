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
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

import test_deploy as deploy
from gsomia.cli import client
from gsomia.cli.demo import terms_only
from gsomia.core import users
from gsomia.core.errors import GsomiaError
from gsomia.node import peer
from gsomia.node.runtime import config as node_config
from gsomia.node.runtime.clock import SystemClock
from gsomia.node.service import Node
from gsomia.node.setup import partner
from gsomia.node.setup.init import PeerEntry
from gsomia.node.setup.provision import provision_pair
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


# --- a partner-file import is all or nothing ---------------------------------------------------


def node_files(config: Path) -> dict[str, bytes | None]:
    keys_dir = config.parent / "keys"
    paths = [config, keys_dir / "JPN.pub", keys_dir / "JPN.crt", keys_dir / "JPN.partner.json"]
    return {p.name: p.read_bytes() if p.exists() else None for p in paths}


@pytest.fixture
def kor_with_partner(tmp_path: Path) -> tuple[Path, Path, Path]:
    """KOR's node with JPN's file imported; and a second JPN node's partner file (another
    certificate for JPN, well formed): (KOR's node.toml, JPN's file, the other file)."""
    kor, jpn = deploy.init(tmp_path, "KOR"), deploy.init(tmp_path, "JPN")
    (tmp_path / "other").mkdir()
    rogue = deploy.init(tmp_path / "other", "JPN")
    jpn_file, rogue_file = tmp_path / "JPN.partner.json", tmp_path / "rogue.json"
    deploy.export(jpn, jpn_file)
    deploy.export(rogue, rogue_file)
    done = deploy.gsomia("node", "import-partner-file", jpn_file, "--config", kor, "--yes", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    return kor, jpn_file, rogue_file


def test_a_partner_file_with_a_quote_in_its_url_is_refused_and_changes_nothing(
    kor_with_partner: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    kor, jpn_file, rogue_file = kor_with_partner
    before = node_files(kor)
    evil = json.loads(rogue_file.read_text())
    evil["peer_url"] = 'https://u"@127.0.0.1:30712'
    (tmp_path / "evil.json").write_text(json.dumps(evil))
    done = deploy.gsomia(
        "node", "import-partner-file", tmp_path / "evil.json", "--config", kor, "--yes", "--replace", cwd=tmp_path
    )
    deploy.refused(done, "peer_url")
    assert node_files(kor) == before
    again = deploy.gsomia("node", "import-partner-file", jpn_file, "--config", kor, "--yes", cwd=tmp_path)
    assert "nothing changed" in again.stdout


@pytest.mark.parametrize(
    "url",
    [
        'https://u"@127.0.0.1:30712',
        "https://u@127.0.0.1:30712",
        "https://127.0.0.1:30712\n[peers.USA]",
        "https://127.0.0.1:30712\n",
        "https://127.0.0.1:30712\t",
        "https://127.0.0.1:30712\x7f",
        "https://127.0.0.1:30712/\x00",
        "https://127.0.0.1:30712/?",
        "https://127.0.0.1:30712/#x",
        "https://127.0.0.1:30712/peer",
        "https://127.0.0.1:030712",
        "https://127.0.0.1",
        "http://127.0.0.1:30712",
        "https://bad_host:30712",
    ],
)
def test_a_peer_url_is_https_host_and_port_alone(url: str) -> None:
    with pytest.raises(partner.PartnerFileInvalid) as refused:
        partner._https_url(url, "peer_url")
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("url", ["https://127.0.0.1:8711", "https://jpn.example:8711/", "https://[::1]:8711"])
def test_a_peer_url_of_host_and_port_is_accepted(url: str) -> None:
    assert partner._https_url(url, "peer_url") == url.rstrip("/")


def test_every_value_of_a_peer_table_is_quoted_as_toml() -> None:
    """A value cannot end its string: what is read back is what was written, and nothing more."""
    entry = PeerEntry("JPN", 'https://u"@h:1\n[peers.USA]\nurl = "x', 'keys/"J\\PN.pub', "keys/\x7fJPN.crt", 'x"y\n')
    parsed = tomllib.loads(entry.toml())
    assert parsed == {
        "peers": {
            "JPN": {
                "url": entry.url,
                "flash_url": entry.flash_url,
                "public_key": entry.public_key,
                "tls_cert": entry.tls_cert,
            }
        }
    }


def fail_after_staging(monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    """Make the import fail once its new files are written under their temporary names."""
    if where == "reload":

        def load(path: Path) -> Any:
            assert list((path.parent / "keys").glob(".*.import")) == [], "the staged files are in place by now"
            raise GsomiaError(f"{path}: forced failure")

        monkeypatch.setattr(node_config, "load", load)
    else:
        real = os.replace

        def replace(src: Any, dst: Any) -> None:
            if str(src).endswith(".partner.json.import"):  # the keys are renamed, the record is next
                raise OSError(28, "No space left on device")
            real(src, dst)

        monkeypatch.setattr(os, "replace", replace)  # the one os module: partner.py renames with it


@pytest.mark.parametrize("where", ["reload", "rename"])
def test_a_failed_import_leaves_every_file_as_it_was(
    kor_with_partner: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    kor, jpn_file, rogue_file = kor_with_partner
    before = node_files(kor)
    cfg = node_config.load(kor)
    other = partner.load(rogue_file)
    fail_after_staging(monkeypatch, where)
    with pytest.raises(GsomiaError):
        partner.record(cfg, other, replace=True)
    assert node_files(kor) == before
    assert sorted(p.name for p in (kor.parent / "keys").iterdir() if p.name.startswith(".")) == []
    monkeypatch.undo()
    assert partner.plan(node_config.load(kor), partner.load(jpn_file)) == "same"


def test_importing_the_same_file_again_restores_what_differs_on_disk(
    kor_with_partner: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """ "Already imported" is decided by the files the node uses, not by the copy kept of the file."""
    kor, jpn_file, rogue_file = kor_with_partner
    before = node_files(kor)
    crt = kor.parent / "keys" / "JPN.crt"
    crt.write_text(json.loads(rogue_file.read_text())["tls_cert"])
    assert partner.plan(node_config.load(kor), partner.load(jpn_file)) == "replace"
    again = deploy.gsomia("node", "import-partner-file", jpn_file, "--config", kor, "--yes", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "nothing changed" not in again.stdout
    assert node_files(kor) == before
    assert partner.plan(node_config.load(kor), partner.load(jpn_file)) == "same"
