"""The flash lane's peer client (``peer.FlashClient``, aiohttp): the same mutual TLS as the
httpx clients of the other lanes. It talks only to a server holding the partner's pinned
certificate, presents the node's own, and hands ``Delivery`` what it reads of an answer."""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import aiohttp
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gsomia.node import peer
from gsomia.node.runtime import tls
from gsomia.node.setup.provision import free_port


def _write_pair(directory: Path, party: str) -> tuple[Path, Path]:
    cert, key = tls.make_certificate(party, datetime.now().astimezone())
    (directory / f"{party}.crt").write_bytes(cert)
    (directory / f"{party}.tls.key").write_bytes(key)
    return directory / f"{party}.crt", directory / f"{party}.tls.key"


@pytest.fixture
def certs(tmp_path: Path) -> dict[str, tuple[Path, Path]]:
    return {party: _write_pair(tmp_path, party) for party in ("KOR", "JPN", "XXX")}


@pytest.fixture
def jpn_server(certs: dict[str, tuple[Path, Path]]) -> Iterator[str]:
    """JPN's side: mutual TLS that accepts only KOR's certificate; echoes what it got."""

    async def items(request: Request) -> Response:
        body = await request.body()
        echo = f'{{"path":"{request.url.path}","lane":"{request.headers.get("x-gsomia-lane")}","size":{len(body)}}}'
        return Response(echo, status_code=200 if body else 400, media_type="application/json")

    app = Starlette(routes=[Route("/peer/items", items, methods=["POST"])])
    port = free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        ssl_certfile=str(certs["JPN"][0]),
        ssl_keyfile=str(certs["JPN"][1]),
        ssl_ca_certs=str(certs["KOR"][0]),
        ssl_cert_reqs=ssl.CERT_REQUIRED,
        log_level="warning",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        threading.Event().wait(0.01)
    assert server.started, "the test server did not start"
    yield f"https://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def _post(client: peer.FlashClient, body: bytes) -> peer.Answer:
    async def go() -> peer.Answer:
        try:
            return await client.post("/peer/items", content=body, headers={"X-Gsomia-Lane": "flash"})
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_a_flash_post_reaches_the_pinned_partner_and_its_answer_reads_as_delivery_expects(
    certs: dict[str, tuple[Path, Path]], jpn_server: str
) -> None:
    client = peer.FlashClient(str(certs["KOR"][0]), str(certs["KOR"][1]), str(certs["JPN"][0]), jpn_server + "/")
    answer = _post(client, b'{"lane":"flash"}')
    assert answer.status_code == 200
    assert answer.json() == {"path": "/peer/items", "lane": "flash", "size": 16}
    assert '"lane":"flash"' in answer.text

    refused = _post(peer.FlashClient(str(certs["KOR"][0]), str(certs["KOR"][1]), str(certs["JPN"][0]), jpn_server), b"")
    assert refused.status_code == 400  # an error status comes back as an answer, for Delivery to judge


def test_a_server_without_the_partners_pinned_certificate_is_never_sent_a_report(
    certs: dict[str, tuple[Path, Path]], jpn_server: str
) -> None:
    # KOR pins XXX's certificate as the partner's: JPN's server (a valid certificate of
    # another party) must not get the report.
    client = peer.FlashClient(str(certs["KOR"][0]), str(certs["KOR"][1]), str(certs["XXX"][0]), jpn_server)
    with pytest.raises(aiohttp.ClientConnectorCertificateError) as caught:
        _post(client, b'{"lane":"flash"}')
    assert "certificate" in str(caught.value).lower()


def test_a_client_without_a_certificate_the_partner_trusts_is_refused(
    certs: dict[str, tuple[Path, Path]], jpn_server: str
) -> None:
    client = peer.FlashClient(str(certs["XXX"][0]), str(certs["XXX"][1]), str(certs["JPN"][0]), jpn_server)
    with pytest.raises(
        (aiohttp.ClientError, ssl.SSLError, ConnectionError)
    ):  # TLS 1.3: the alert comes on the first read
        _post(client, b'{"lane":"flash"}')
