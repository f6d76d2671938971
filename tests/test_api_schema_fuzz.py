"""Both APIs fuzzed from their own OpenAPI documents (schemathesis): never a 500, every
refusal a problem document, and nothing stored by a request that was refused.

The user API is called with a security authority's token (every route open to it); the peer
API with requests signed by the partner's real node key, so the fuzzer reaches the handlers
behind the signature check. The event stream is left out: it does not end by itself, and its
one input (Last-Event-ID) has tests of its own (``test_intake.py``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.core import NOT_SET

from gsomia.node import peer
from inprocess import assert_problem, in_process_apps, stored


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with in_process_apps(tmp_path_factory.mktemp("schema-fuzz")) as found:
        yield found


FUZZ = settings(
    max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None
)
MODES = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)


def operations(app: Any, *excluded: str) -> list[Any]:
    schema = schemathesis.openapi.from_dict(app.openapi())
    found = [result.ok() for result in schema.get_all_operations()]
    return [op for op in found if op.path not in excluded]


def fuzz(operation: Any, check: Any) -> None:
    """Each of the operation's generated cases, valid by its schema and not, through ``check``."""
    inputs = [*operation.body, *operation.query, *operation.path_parameters]
    for mode in MODES if inputs else MODES[:1]:  # an operation without inputs has no invalid request

        @FUZZ
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case: Any) -> None:
            check(case)

        run()


def raw_body(case: Any) -> bytes:
    """The body as sent: JSON of what was generated, or the bytes themselves (negative cases)."""
    if case.body is NOT_SET:
        return b""
    if isinstance(case.body, bytes):
        return case.body
    return json.dumps(case.body, default=lambda o: o.decode("latin-1") if isinstance(o, bytes) else str(o)).encode()


def query_of(case: Any) -> dict[str, Any]:
    return {k: v for k, v in (case.query or {}).items() if v is not None}


def send(client: Any, case: Any, body: bytes, headers: dict[str, str], target: str | None = None) -> Any:
    """``target``: the path and query exactly as signed (the peer API); else the case's, encoded by the client."""
    return client.request(
        case.method,
        target or case.formatted_path,
        params=None if target else query_of(case),
        content=body or None,
        headers={**(case.headers or {}), **headers},
    )


def test_user_api_from_its_openapi_document(apps: dict[str, Any]) -> None:
    headers = {"Authorization": f"Bearer {apps['tokens']['security_authority']}", "Content-Type": "application/json"}

    def check(case: Any) -> None:
        before = stored(apps["node"])
        response = send(apps["user"], case, raw_body(case), headers)
        assert_problem(response)
        if response.status_code >= 400:
            assert stored(apps["node"]) == before, (case.method, case.formatted_path, response.text)

    found = operations(apps["user_app"], "/alerts/stream")
    assert {"/items", "/notes", "/records", "/alerts"} <= {op.path for op in found}
    for operation in found:
        fuzz(operation, check)


def test_peer_api_from_its_openapi_document_signed_by_the_partner(apps: dict[str, Any]) -> None:
    def check(case: Any) -> None:
        before = stored(apps["node"])
        body = raw_body(case)
        path = case.formatted_path
        target = peer.target(path, query_of(case))  # the signature covers the query as sent
        response = send(apps["peer"], case, body, peer.sign_request(apps["jpn_key"], case.method, target, body), target)
        assert_problem(response)
        assert response.status_code != 401, response.text  # the signature held: the fuzzer reached the handler
        if response.status_code >= 400:
            assert stored(apps["node"]) == before, (case.method, path, response.text)

    found = operations(apps["peer_app"])
    assert {"/peer/items", "/peer/notes", "/peer/alarms", "/peer/records"} <= {op.path for op in found}
    for operation in found:
        fuzz(operation, check)
