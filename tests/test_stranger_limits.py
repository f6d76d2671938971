"""What a stranger, or a user probing for items, still cannot get from a running node.

Over real sockets: the request head is bounded by the node's HTTP protocol itself
(``node/api/wire.py``), the paths anyone may ask for take no body, and a probe for an item id
leaves the same trace whether or not the item exists.
"""

from __future__ import annotations

import base64
import json
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from gsomia.node import peer
from gsomia.node.api import wire
from inprocess import assert_problem, in_process_apps
from nodes import Pair, node_pair


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    """One pair on SQLite, its user APIs on plain HTTP on loopback (raw sockets speak it)."""
    with node_pair(tmp_path_factory.mktemp("stranger"), "sqlite") as p:
        yield p


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with in_process_apps(tmp_path_factory.mktemp("stranger-apps")) as found:
        yield found


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def raw_request(url: str, head: bytes, then: Iterator[bytes] | None = None) -> bytes:
    """Send ``head`` (and the chunks of ``then`` while the node reads), return what it answered."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as s:
        try:
            s.sendall(head)
            for chunk in then or ():
                s.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the node answered and closed while we were still sending: what we want
        answer = b""
        try:
            while chunk := s.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
        return answer


def test_a_request_head_over_its_limit_is_answered_431_and_its_bytes_are_not_kept(running: Pair) -> None:
    node = running.nodes["KOR"]
    pid = running.procs["KOR"].proc.pid  # type: ignore[union-attr]
    before = rss_kib(pid)
    filler = (b"A" * 65536 for _ in range(3200))  # a 200 MiB header value, never finished
    answer = raw_request(node.user_url, b"GET /items HTTP/1.1\r\nHost: kor\r\nX-A: ", filler)
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    problem = json.loads(answer.split(b"\r\n\r\n", 1)[1])
    assert problem["status"] == 431
    assert rss_kib(pid) - before < 32 * 1024  # not the 200 MiB offered
    # An ordinary request on a new connection is answered as before.
    assert running.user("KOR", "analyst").get("/status").status_code == 200


def test_a_request_head_under_the_limit_is_served(running: Pair) -> None:
    node = running.nodes["KOR"]
    token = node.tokens["analyst"]
    padding = "x" * (wire.HEAD_LIMIT - 2048)
    head = f"GET /status HTTP/1.1\r\nHost: kor\r\nAuthorization: Bearer {token}\r\nX-Pad: {padding}\r\nConnection: close\r\n\r\n"
    assert raw_request(node.user_url, head.encode()).startswith(b"HTTP/1.1 200 ")


@pytest.mark.parametrize("path", ["/health", "/openapi.json", "/docs"])
def test_what_anyone_may_ask_for_takes_no_body(running: Pair, path: str) -> None:
    node = running.nodes["KOR"]
    head = f"POST {path} HTTP/1.1\r\nHost: kor\r\nContent-Length: 1048576\r\n\r\n".encode()
    answer = raw_request(node.user_url, head, iter([b"x" * 65536]))
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    # With no body the same path answers as ever (a GET, as its clients send it).
    ok = raw_request(node.user_url, f"GET {path} HTTP/1.1\r\nHost: kor\r\nConnection: close\r\n\r\n".encode())
    assert ok.startswith(b"HTTP/1.1 200 "), ok[:200]


def ledger_size(pair: Pair) -> int:
    return int(pair.user("KOR", "auditor").get("/ledger/head").json()["size"])


def test_a_probe_for_an_id_leaves_the_same_trace_whether_the_item_exists_or_not(running: Pair) -> None:
    """Finding: a forbidden id grew the ledger by one, an unknown one not at all."""
    (secret,) = running.share("JPN", "KOR", "極秘", 1, compartments=["nk-nuclear"])
    running.wait(lambda: any(r["item_id"] == secret for r in running.received("KOR")), "the item at KOR")
    prober = running.user("KOR", "duty_officer")  # no need-to-know for nk-nuclear
    grown = []
    for item_id in (secret, str(uuid.uuid4())):
        before = ledger_size(running)
        answer = prober.get(f"/items/{item_id}")
        assert answer.status_code == 404
        assert answer.json()["detail"] == f"no item {item_id}"
        running.wait(lambda before=before: ledger_size(running) > before, "the denied read on the ledger", 20)
        time.sleep(1.5)  # anything else the read entered, sequenced too
        grown.append(ledger_size(running) - before)
    assert grown[0] == grown[1] == 1


def test_the_ledger_head_is_for_the_security_authority_and_auditors(running: Pair) -> None:
    for role in ("analyst", "duty_officer"):
        answer = running.user("KOR", role).get("/ledger/head")
        assert answer.status_code == 403
        assert "R11" in answer.json()["detail"]
    for role in ("auditor", "security_authority"):
        assert running.user("KOR", role).get("/ledger/head").status_code == 200


def test_a_signature_spelt_another_way_is_refused_seen_or_not(apps: dict[str, Any]) -> None:
    body = json.dumps(
        {
            "alarm_id": str(uuid.uuid4()),
            "at": "2019-11-22T09:00:00+00:00",
            "kind": "fork",
            "about": "x",
            "raised_by": "JPN",
            "detail": "d",
        }
    ).encode()
    headers = peer.sign_request(apps["jpn_key"], "POST", "/peer/alarms", body)
    assert apps["peer"].post("/peer/alarms", content=body, headers=headers).status_code == 200
    signature = headers["X-Gsomia-Signature"]
    raw = base64.b64decode(signature)
    # The unused low bits of the last base64 character before the padding: the same bytes.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    stripped = signature.rstrip("=")
    last = alphabet.index(stripped[-1])
    spelt = stripped[:-1] + alphabet[last ^ 1] + signature[len(stripped) :]
    assert spelt != signature
    assert base64.b64decode(spelt) == raw
    again = apps["peer"].post("/peer/alarms", content=body, headers={**headers, "X-Gsomia-Signature": spelt})
    assert again.status_code == 401
    # One spelling per signature: a second one is refused as it stands, replay or not.
    assert again.json()["detail"] == "the request signature does not verify"
    fresh = peer.sign_request(apps["jpn_key"], "POST", "/peer/alarms", body.replace(b'"d"', b'"e"'))
    stripped = fresh["X-Gsomia-Signature"].rstrip("=")
    other = stripped[:-1] + alphabet[alphabet.index(stripped[-1]) ^ 1] + fresh["X-Gsomia-Signature"][len(stripped) :]
    never_seen = {**fresh, "X-Gsomia-Signature": other}
    first = apps["peer"].post("/peer/alarms", content=body.replace(b'"d"', b'"e"'), headers=never_seen)
    assert first.status_code == 401


@pytest.mark.parametrize(
    "at",
    [
        "9999-12-31T23:59:59+00:00",
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T20:00:00-05:00",
        "1899-12-31T00:00:00+00:00",
    ],
)
def test_a_note_at_an_instant_no_zone_can_spell_is_refused_naming_it(apps: dict[str, Any], at: str) -> None:
    token = apps["tokens"]["security_authority"]
    mine = apps["user"].post(
        "/notes", json={"to": "JPN", "type": "suspend_notice", "at": at}, headers={"Authorization": f"Bearer {token}"}
    )
    assert_problem(mine)
    assert mine.status_code == 400
    assert "at" in mine.json()["detail"]
    note = {
        "note_id": str(uuid.uuid4()),
        "agreement": "jp-kr-gsomia-2016",
        "at": at,
        "by": "JPN",
        "type": "termination_notice",
        "conditions": [],
        "ref": None,
        "recorded_by": "jpn.sa",
    }
    raw = json.dumps(note).encode()
    theirs = apps["peer"].post(
        "/peer/notes", content=raw, headers=peer.sign_request(apps["jpn_key"], "POST", "/peer/notes", raw)
    )
    assert_problem(theirs)
    assert theirs.status_code == 422
    assert theirs.json()["detail"].startswith("note.at:")
