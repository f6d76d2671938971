"""TLS for people and for partners: the user API over HTTPS with the node's certificate,
plain HTTP only on loopback (and said in the log), and TLS 1.3 only on every port.

The nodes run on SQLite only: transport does not depend on the database.
"""

from __future__ import annotations

import re
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from gsomia.cli.demo import terms_only
from gsomia.core.errors import AgreementFileError
from gsomia.node import serve
from gsomia.node.process import NodeProcess, answers
from gsomia.node.runtime import config as node_config
from gsomia.node.runtime import tls
from gsomia.node.setup.provision import Provisioned, free_port, provision_pair
from nodes import AGREEMENT, FlashListener, Pair, node_pair

GSOMIA = str(Path(sys.executable).parent / "gsomia")


@pytest.fixture(scope="module")
def https_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    """Two nodes as a deployment runs them: HTTPS on the user API (no ``user_tls`` in
    ``node.toml``), and a flash process each, so all four ports of a node are served."""
    with node_pair(tmp_path_factory.mktemp("https"), "sqlite", flash_process=True, user_tls=True) as p:
        yield p


def _ports(node: Provisioned) -> dict[str, tuple[str, int]]:
    cfg = node_config.load(node.config)
    assert cfg.flash_listen is not None
    assert cfg.flash_peer_listen is not None
    return {
        "listen": cfg.listen,
        "flash_listen": cfg.flash_listen,
        "peer_listen": cfg.peer_listen,
        "flash_peer_listen": cfg.flash_peer_listen,
    }


def _handshake(address: tuple[str, int], ctx: ssl.SSLContext) -> str:
    """The TLS version a handshake with ``address`` agreed on; raises if there was none."""
    with socket.create_connection(address, timeout=10) as raw, ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
        version = s.version()
        assert version is not None
        return version


def test_the_user_api_serves_https_with_the_nodes_certificate(https_pair: Pair) -> None:
    """A client that trusts the node's certificate file reaches the user API over HTTPS, shares an
    item the partner's user reads over HTTPS, and follows the alert stream over HTTPS; one that
    trusts only the public CAs, or speaks plain HTTP to the port, gets no answer at all."""
    kor, jpn = https_pair.nodes["KOR"], https_pair.nodes["JPN"]
    assert "user_tls" not in kor.config.read_text()  # HTTPS is what a node does when not told otherwise
    assert kor.user_url.startswith("https://")
    assert {"127.0.0.1", "localhost"} <= set(tls.names(kor.tls_cert.read_bytes()))

    listener = FlashListener(jpn.alerts_url, jpn.tokens["duty_officer"], trust=jpn.trust())
    listener.start()
    assert listener.ready.wait(10)
    (item,) = https_pair.share("KOR", "JPN", "군사II급비밀", 1)
    https_pair.wait(lambda: https_pair.received("JPN"), "the item to arrive")
    read = https_pair.user("JPN", "analyst").get(f"/items/{item}")
    assert read.status_code == 200, read.text
    assert read.json()["decision"]["decision"] == "permit"
    report = {"to": "JPN", "classification": "군사II급비밀", "text": "launch", "purposes": ["nk-missile"]}
    posted = https_pair.user("KOR", "duty_officer", flash=True).post("/alerts", report)
    assert posted.status_code == 201, posted.text
    https_pair.wait(lambda: any(e.get("text") == "launch" for _, e in listener.events), "the alert on the stream")
    listener.done.set()

    # The host name is checked too: "localhost" is in the certificate, and works.
    port = kor.user_url.rsplit(":", 1)[1]
    assert httpx.get(f"https://localhost:{port}/health", verify=kor.trust()).status_code == 200
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{kor.user_url}/items", headers={"Authorization": f"Bearer {kor.tokens['analyst']}"})
    with pytest.raises(httpx.HTTPError):  # the token never crosses in clear: the port speaks only TLS
        httpx.get(
            f"http://127.0.0.1:{port}/items", headers={"Authorization": f"Bearer {kor.tokens['analyst']}"}, timeout=5
        )
    log = (kor.root / "node.log").read_text()
    assert "plain HTTP" not in log
    assert f"user API https://127.0.0.1:{port}" in log  # what `gsomia node serve` says it serves


@pytest.mark.parametrize("port", ["listen", "flash_listen", "peer_listen", "flash_peer_listen"])
def test_every_port_refuses_tls_1_2(https_pair: Pair, port: str) -> None:
    """A client that offers at most TLS 1.2 gets no handshake on any of a node's ports, user or
    peer, main or flash process; the same client allowed TLS 1.3 gets one, in TLS 1.3."""
    kor = https_pair.nodes["KOR"]
    address = _ports(kor)[port]

    def client(highest: ssl.TLSVersion) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(kor.tls_cert))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.maximum_version = highest
        if "peer" in port:  # the peer API wants a partner's certificate: JPN's
            jpn = https_pair.nodes["JPN"].root / "keys"
            ctx.load_cert_chain(str(jpn / "JPN.crt"), str(jpn / "JPN.tls.key"))
        return ctx

    with pytest.raises(ssl.SSLError):
        _handshake(address, client(ssl.TLSVersion.TLSv1_2))
    assert _handshake(address, client(ssl.TLSVersion.TLSv1_3)) == "TLSv1.3"


def test_plain_http_on_loopback_is_said_in_the_log(tmp_path: Path) -> None:
    """``user_tls = false`` on loopback: both user APIs (main and flash process) answer plain
    HTTP, and each process says so in the node's log when it starts."""
    nodes = provision_pair(tmp_path, terms_only(AGREEMENT, tmp_path / "terms.toml"), flash_process=True)
    kor = nodes["KOR"]
    assert "user_tls = false" in kor.config.read_text()
    ports = _ports(kor)
    log = kor.root / "node.log"
    with NodeProcess(kor.config, kor.user_url, log, kor.flash_user_url):  # its partner is not needed
        assert answers(kor.user_url)
        assert kor.flash_user_url is not None
        assert answers(kor.flash_user_url)
    text = log.read_text()
    for name in ("listen", "flash_listen"):
        host, number = ports[name]
        assert f"WARNING user API over plain HTTP on loopback: {host}:{number}" in text, text


def test_a_node_listening_beyond_loopback_serves_https(tmp_path: Path) -> None:
    """A node as freshly deployed, its user API on every interface and no ``user_tls``: it
    answers HTTPS with its certificate and nothing over plain HTTP, and warns of nothing."""
    kor = provision_pair(tmp_path, terms_only(AGREEMENT, tmp_path / "terms.toml"), user_tls=True)["KOR"]
    port = free_port()
    text = re.sub(r'^listen = "127\.0\.0\.1:\d+"', f'listen = "0.0.0.0:{port}"', kor.config.read_text(), flags=re.M)
    kor.config.write_text(text)
    assert node_config.load(kor.config).user_tls
    url = f"https://127.0.0.1:{port}"
    log = kor.root / "node.log"
    with NodeProcess(kor.config, url, log, trust=kor.trust()):  # its partner is not needed
        r = httpx.get(f"{url}/items", headers={"Authorization": f"Bearer {kor.tokens['auditor']}"}, verify=kor.trust())
        assert r.status_code == 200, r.text
        assert not answers(f"http://127.0.0.1:{port}")
    assert f"user API https://0.0.0.0:{port}" in log.read_text()
    assert "WARNING user API" not in log.read_text()


@pytest.mark.parametrize("key", ["listen", "flash_listen"])
@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.7", "kor-node.example", "::"])
def test_plain_http_beyond_loopback_does_not_start(tmp_path: Path, key: str, host: str) -> None:
    """``user_tls = false`` with a user API on any address but loopback: ``gsomia node serve``
    refuses with exit 2 and one line naming the setting and the address, and serves nothing."""
    nodes = provision_pair(tmp_path, terms_only(AGREEMENT, tmp_path / "terms.toml"), flash_process=True)
    config = nodes["KOR"].config
    port = free_port()
    text = re.sub(rf'^{key} = "127\.0\.0\.1:\d+"', f'{key} = "{host}:{port}"', config.read_text(), flags=re.M)
    assert f'{key} = "{host}:{port}"' in text
    config.write_text(text)
    run = subprocess.run(
        [GSOMIA, "node", "serve", "--config", str(config)], capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert "user_tls" in lines[0]
    assert f"{key} is {host}" in lines[0]
    assert "Traceback" not in run.stderr


@pytest.mark.parametrize(
    ("listen", "user_tls", "allowed"),
    [
        ("127.0.0.1", "false", True),
        ("127.8.9.10", "false", True),
        ("localhost", "false", True),
        ("0.0.0.0", "false", False),
        ("10.1.2.3", "false", False),
        ("0.0.0.0", None, True),
        ("10.1.2.3", "true", True),
    ],
)
def test_user_tls_setting(tmp_path: Path, listen: str, user_tls: str | None, allowed: bool) -> None:
    """The setting as read from ``node.toml``: HTTPS unless ``user_tls = false``, which loads
    only for a loopback ``listen``; a quoted "false" is not a boolean and is refused."""
    config = provision_pair(tmp_path, terms_only(AGREEMENT, tmp_path / "terms.toml"))["KOR"].config
    text = config.read_text().replace("user_tls = false\n", "" if user_tls is None else f"user_tls = {user_tls}\n")
    config.write_text(re.sub(r'^listen = "127\.0\.0\.1:', f'listen = "{listen}:', text, flags=re.M))
    if allowed:
        assert node_config.load(config).user_tls is (user_tls != "false")
    else:
        with pytest.raises(AgreementFileError, match="user_tls: false"):
            node_config.load(config)
    config.write_text(text.replace("user_tls = false", 'user_tls = "false"'))
    if user_tls == "false":
        with pytest.raises(AgreementFileError, match="user_tls: must be true or false"):
            node_config.load(config)


def test_a_listen_host_the_certificate_does_not_name_is_said_in_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """HTTPS on an address the certificate does not name: clients checking the host name would
    refuse it, so the node says which names the certificate holds."""
    config = provision_pair(tmp_path, terms_only(AGREEMENT, tmp_path / "terms.toml"), user_tls=True)["KOR"].config
    cfg = node_config.load(config)
    with caplog.at_level("WARNING", logger="gsomia.serve"):
        assert serve._user_tls(cfg, ("127.0.0.1", 1)) is not None
        assert serve._user_tls(cfg, ("0.0.0.0", 1)) is not None
        assert caplog.messages == []
        assert serve._user_tls(cfg, ("192.0.2.7", 1)) is not None
    assert len(caplog.messages) == 1
    assert "192.0.2.7" in caplog.messages[0]
    assert "localhost, 127.0.0.1" in caplog.messages[0]


@pytest.mark.parametrize("fault", ["another key", "no certificate"])
def test_a_certificate_and_key_that_do_not_load_stop_the_node_with_one_line(tmp_path: Path, fault: str) -> None:
    """A TLS key that is not the certificate's, or a certificate file that is not there: exit 2
    and one line naming both files, before the node starts anything."""
    config = provision_pair(tmp_path, terms_only(AGREEMENT, tmp_path / "terms.toml"), user_tls=True)["KOR"].config
    keys = config.parent / "keys"
    if fault == "another key":
        (keys / "KOR.tls.key").write_bytes(tls.make_certificate("KOR", datetime.now().astimezone())[1])
    else:
        (keys / "KOR.crt").unlink()
    run = subprocess.run(
        [GSOMIA, "node", "serve", "--config", str(config)], capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert "KOR.crt" in lines[0]
    assert "KOR.tls.key" in lines[0]
