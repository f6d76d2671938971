"""A stranger cannot make a node work: who is asking is settled before a body is read, every
body is read within its limit, and bad input is a 4xx problem document naming the field.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from gsomia.node import peer
from gsomia.node.api import intake
from inprocess import assert_problem, in_process_apps, stored


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with in_process_apps(tmp_path_factory.mktemp("intake")) as found:
        yield found


def bearer(apps: dict[str, Any], role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {apps['tokens'][role]}"}


def call_asgi(app: Any, method: str, path: str, headers: dict[str, str], chunks: list[bytes]) -> tuple[int, int, bytes]:
    """Drive the app as a server would, one body chunk per ``receive``: (status, chunks read, body)."""
    read = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal read
        if read >= len(chunks):
            await asyncio.sleep(3600)  # a client still sending: a server waits
        read += 1
        return {"type": "http.request", "body": chunks[read - 1], "more_body": read < len(chunks)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }

    async def run() -> None:
        await asyncio.wait_for(app(scope, receive, send), 30)

    asyncio.run(run())
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return int(start["status"]), read, body


# --- authentication before the body -------------------------------------------------------------

BIG = [b"x" * 65536] * 6400  # 400 MiB, never made whole: the app must not ask for it


@pytest.mark.parametrize("path", ["/notes", "/alerts", "/items", "/records"])
@pytest.mark.parametrize("authorization", [None, "Bearer not-a-token", "Basic a2ltOnB3", "Bearer " + "A" * 5000])
def test_a_user_request_without_a_valid_token_is_refused_before_its_body_is_read(
    apps: dict[str, Any], path: str, authorization: str | None
) -> None:
    headers = {"content-type": "application/json", "content-length": str(400 << 20)}
    if authorization:
        headers["authorization"] = authorization
    status, read, body = call_asgi(apps["user_app"], "POST", path, headers, BIG)
    assert status == 401
    assert read == 0
    problem = json.loads(body)
    assert problem["status"] == 401
    assert "token" in problem["detail"].lower()


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 403),
        ({"X-Gsomia-Party": "USA"}, 403),
        ({"X-Gsomia-Party": "JPN"}, 401),
        ({"X-Gsomia-Party": "JPN", "X-Gsomia-Timestamp": "nan", "X-Gsomia-Signature": "AAAA"}, 401),
        ({"X-Gsomia-Party": "JPN", "X-Gsomia-Timestamp": "1000.000", "X-Gsomia-Signature": "AAAA"}, 401),
    ],
)
def test_a_partner_request_without_fresh_signature_headers_is_refused_before_its_body_is_read(
    apps: dict[str, Any], headers: dict[str, str], status: int
) -> None:
    got, read, _ = call_asgi(
        apps["peer_app"], "POST", "/peer/items", {"content-length": str(400 << 20), **headers}, BIG
    )
    assert got == status
    assert read == 0


# --- bodies read within their limit -------------------------------------------------------------


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
@pytest.mark.parametrize(("path", "limit"), [("/notes", "USER_BODY_LIMIT"), ("/items", "PROVIDE_BODY_LIMIT")])
def test_a_user_body_over_its_limit_is_refused_as_soon_as_it_passes(
    apps: dict[str, Any], monkeypatch: pytest.MonkeyPatch, declared: bool, path: str, limit: str
) -> None:
    monkeypatch.setattr(intake, limit, 10_000)
    before = stored(apps["node"])
    headers = {**bearer(apps, "security_authority"), "content-type": "application/json"}
    chunks = [b" " * 4096] * 100  # 400 KiB of chunks, 3 of which pass 10,000 bytes
    if declared:
        headers["content-length"] = str(4096 * 100)
    status, read, body = call_asgi(apps["user_app"], "POST", path, headers, chunks)
    assert status == 413
    assert read == (0 if declared else 3)
    assert "at most 10,000 bytes" in json.loads(body)["detail"]
    assert stored(apps["node"]) == before
    # Under the limit the same endpoint answers as usual.
    small = apps["user"].post(path, json={"to": "JPN"}, headers=bearer(apps, "security_authority"))
    assert small.status_code in (400, 422), small.text


def test_every_route_of_both_apis_has_a_body_limit(apps: dict[str, Any]) -> None:
    """No route escapes the intake: each app's outermost layer is it, for every path."""
    for name in ("user_app", "peer_app"):
        app = apps[name]
        app.build_middleware_stack()
        assert any(m.cls is intake.Intake for m in app.user_middleware), name


# --- input out of range: 400, not 500 ------------------------------------------------------------


@pytest.mark.parametrize("after", ["9223372036854775808", "1" * 5000, "-1", "²"])
def test_an_items_cursor_out_of_range_is_a_400_naming_it(apps: dict[str, Any], after: str) -> None:
    response = apps["user"].get("/items", params={"after": after}, headers=bearer(apps, "analyst"))
    assert_problem(response)
    assert response.status_code == 400
    assert "after" in response.json()["detail"]


@pytest.mark.parametrize("event_id", ["1" * 5000, "²", "9223372036854775808", "12a", " 7"])
def test_a_malformed_last_event_id_is_a_400_naming_it(apps: dict[str, Any], event_id: str) -> None:
    headers = {**bearer(apps, "duty_officer"), "Last-Event-ID": event_id.encode("utf-8")}  # '²' as a client sends it
    response = apps["user"].get("/alerts/stream", headers=headers)
    assert_problem(response)
    assert response.status_code == 400
    assert "Last-Event-ID" in response.json()["detail"]


def signed_post(apps: dict[str, Any], path: str, body: Any, raw: bytes | None = None) -> Any:
    content = raw if raw is not None else json.dumps(body).encode()
    return apps["peer"].post(path, content=content, headers=peer.sign_request(apps["jpn_key"], "POST", path, content))


def a_note(**changes: Any) -> dict[str, Any]:
    note = {
        "note_id": str(uuid.uuid4()),
        "agreement": "jp-kr-gsomia-2016",
        "at": "2019-08-23T09:00:00+00:00",
        "by": "JPN",
        "type": "termination_notice",
        "conditions": [],
        "ref": None,
        "recorded_by": "jpn.sa",
    }
    note.update(changes)
    return {k: v for k, v in note.items() if v is not ...}


@pytest.mark.parametrize(
    ("note", "field"),
    [
        (a_note(agreement=...), "note.agreement"),
        (a_note(note_id=...), "note.note_id"),
        (a_note(conditions=123), "note.conditions"),
        (a_note(conditions=[1, 2]), "note.conditions.0"),
        (a_note(at="2019-08-23T09:00:00"), "note.at"),
        (a_note(at="yesterday"), "note.at"),
        (a_note(type="declaration_of_war"), "note.type"),
        (a_note(by=None), "note.by"),
        (a_note(extra="x"), "note.extra"),
    ],
)
def test_a_malformed_note_from_the_partner_is_a_422_naming_the_field(
    apps: dict[str, Any], note: dict[str, Any], field: str
) -> None:
    before = stored(apps["node"])
    response = signed_post(apps, "/peer/notes", note)
    assert_problem(response)
    assert response.status_code == 422
    assert response.json()["detail"].startswith(field + ":")
    assert stored(apps["node"]) == before


@pytest.mark.parametrize("path", ["/peer/items", "/peer/notes", "/peer/alarms", "/peer/records"])
@pytest.mark.parametrize("raw", [b"[" * 100_000 + b"]" * 100_000, b"\xff\xfe", b"{"], ids=["deep", "bytes", "cut"])
def test_a_partner_body_that_is_not_json_is_a_400(apps: dict[str, Any], path: str, raw: bytes) -> None:
    before = stored(apps["node"])
    response = signed_post(apps, path, None, raw)
    assert_problem(response)
    assert response.status_code == 400
    assert stored(apps["node"]) == before


def test_a_malformed_alarm_from_the_partner_is_a_422_naming_the_field(apps: dict[str, Any]) -> None:
    alarm = {"alarm_id": "a1", "at": "2019-11-22T09:00:00+00:00", "kind": "fork", "about": "x", "raised_by": "JPN"}
    response = signed_post(apps, "/peer/alarms", alarm)  # no detail
    assert response.status_code == 422
    assert response.json()["detail"].startswith("alarm.detail:")


# --- the peer signature's replay window ---------------------------------------------------------


def test_a_timestamp_that_is_not_a_decimal_number_is_refused(apps: dict[str, Any]) -> None:
    chain = apps["node"].peer_chains["JPN"]
    body = b"{}"
    for stamp in ("nan", "NaN", "inf", "-inf", "1e9", "0x10", " 1574413200.000", "1574413200"):
        headers = peer.sign_request(apps["jpn_key"], "POST", "/peer/notes", body)
        headers["X-Gsomia-Timestamp"] = stamp
        lower = {k.lower(): v for k, v in headers.items()}
        assert peer.verify_request(chain, "POST", "/peer/notes", lower, body) is not None, stamp
        response = apps["peer"].post("/peer/notes", content=body, headers=headers)
        assert response.status_code == 401, stamp


def test_a_signed_request_replayed_is_refused(apps: dict[str, Any]) -> None:
    body = json.dumps(a_note()).encode()
    headers = peer.sign_request(apps["jpn_key"], "POST", "/peer/notes", body)
    first = apps["peer"].post("/peer/notes", content=body, headers=headers)
    assert first.status_code in (200, 409), first.text
    again = apps["peer"].post("/peer/notes", content=body, headers=headers)
    assert again.status_code == 401
    assert "replay" in again.json()["detail"]


def test_a_signed_request_is_refused_once_outside_the_window(apps: dict[str, Any]) -> None:
    chain = apps["node"].peer_chains["JPN"]
    body = b"{}"
    headers = {k.lower(): v for k, v in peer.sign_request(apps["jpn_key"], "GET", "/peer/ledger/head", body).items()}
    sent = float(headers["x-gsomia-timestamp"])
    assert peer.verify_request(chain, "GET", "/peer/ledger/head", headers, body, now=sent + 299) is None
    late = peer.verify_request(chain, "GET", "/peer/ledger/head", headers, body, now=sent + 320)
    assert late is not None
    assert "320 s" in late


def test_the_replay_guard_forgets_nothing_it_should_refuse() -> None:
    guard = peer.ReplayGuard(limit=4)
    now = 1_000_000.0
    stamps = [f"{now + i:.6f}" for i in range(10)]
    assert all(guard.fresh(f"sig{i}", s, now + 9) for i, s in enumerate(stamps))
    # Every one of them, replayed while inside the window, is refused, though most were evicted.
    assert not any(guard.fresh(f"sig{i}", s, now + 10) for i, s in enumerate(stamps))
