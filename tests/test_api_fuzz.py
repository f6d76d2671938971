"""Bad input on the user and peer APIs: never a 500, always problem+json, nothing stored.

The apps run in process (Starlette's TestClient) over a provisioned node on SQLite,
so hypothesis can send thousands of bodies quickly; the integration tests cover the
same apps over real sockets.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gsomia.node import peer
from inprocess import assert_problem, in_process_apps, stored


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with in_process_apps(tmp_path_factory.mktemp("fuzz")) as found:
        yield found


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)
item_like = st.fixed_dictionaries(
    {},
    optional={
        "to": st.sampled_from(["JPN", "KOR", "USA", "", "jpn"]) | st.text(max_size=4),
        "classification": st.sampled_from(["군사II급비밀", "군사I급비밀", "대외비", "SECRET", ""])
        | st.text(max_size=8),
        "text": st.text(max_size=30) | st.integers(),
        "payload_b64": st.sampled_from(["eA==", "!!", ""]) | st.text(max_size=8),
        "purposes": st.lists(st.text(max_size=8), max_size=3) | st.text(max_size=3),
        "bogus": json_values,
    },
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.sampled_from(["/items", "/alerts", "/notes", "/demo/clock"]),
    body=json_values | st.fixed_dictionaries({"items": st.lists(item_like, max_size=3)}),
)
def test_user_api_never_fails_on_bad_bodies(apps: dict[str, Any], path: str, body: Any) -> None:
    before = stored(apps["node"])
    token = apps["tokens"]["auditor"]  # may not provide, send alerts or record notes
    response = apps["user"].post(path, json=body, headers={"Authorization": f"Bearer {token}"})
    assert_problem(response)
    assert response.status_code >= 400
    assert stored(apps["node"]) == before


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(items=st.lists(item_like, min_size=1, max_size=3))
def test_analyst_bad_items_are_refused_whole(apps: dict[str, Any], items: list[dict[str, Any]]) -> None:
    before = stored(apps["node"])
    response = apps["user"].post(
        "/items", json={"items": items}, headers={"Authorization": f"Bearer {apps['tokens']['analyst']}"}
    )
    assert_problem(response)
    if response.status_code != 201:
        assert stored(apps["node"]) == before  # all or nothing
    else:
        assert stored(apps["node"])[0] == before[0] + len(items)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    path=st.sampled_from(["/peer/items", "/peer/notes"]),
    body=json_values | st.binary(max_size=64).map(lambda b: b.hex()),
)
def test_peer_api_never_fails_on_signed_garbage(apps: dict[str, Any], path: str, body: Any) -> None:
    before = stored(apps["node"])
    raw = json.dumps(body).encode()
    headers = peer.sign_request(apps["jpn_key"], "POST", path, raw)
    response = apps["peer"].post(path, content=raw, headers=headers)
    assert_problem(response)
    if response.status_code == 200:  # e.g. an empty list of envelopes: acknowledged, nothing stored
        assert response.json()["receipt"]["received"] == []
    assert stored(apps["node"]) == before


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=80), party=st.sampled_from(["JPN", "KOR", "USA", ""]))
def test_peer_api_refuses_unsigned_requests(apps: dict[str, Any], raw: bytes, party: str) -> None:
    before = stored(apps["node"])
    response = apps["peer"].post("/peer/items", content=raw, headers={"X-Gsomia-Party": party})
    assert_problem(response)
    assert response.status_code in (401, 403)
    assert stored(apps["node"]) == before


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_partners_request_over_the_size_limit_is_refused_unread(
    apps: dict[str, Any], monkeypatch: pytest.MonkeyPatch, declared: bool
) -> None:
    from gsomia.node.api import intake

    monkeypatch.setattr(intake, "PEER_BODY_LIMIT", 1000)
    before = stored(apps["node"])
    raw = json.dumps({"lane": "bulk", "envelopes": ["A" * 1200]}).encode()
    headers = peer.sign_request(apps["jpn_key"], "POST", "/peer/items", raw)
    content: Any = raw if declared else iter([raw[:600], raw[600:]])  # a generator is sent chunked
    response = apps["peer"].post("/peer/items", content=content, headers=headers)
    assert response.status_code == 413
    assert_problem(response)
    assert "at most 1,000 bytes" in response.json()["detail"]
    assert stored(apps["node"]) == before
    small = json.dumps({"lane": "bulk", "envelopes": []}).encode()  # under the limit, as before
    ok = apps["peer"].post(
        "/peer/items", content=small, headers=peer.sign_request(apps["jpn_key"], "POST", "/peer/items", small)
    )
    assert ok.status_code == 200, ok.text
