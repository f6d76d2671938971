"""A refusal is answered by its exception's class: the status and title ``core.errors`` gives it."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gsomia.core import policy
from gsomia.core.envelope import Tampered
from gsomia.core.errors import (
    AgreementFileError,
    AlarmInvalid,
    GsomiaError,
    InvalidHistory,
    NoteInvalid,
    NotFound,
    Refused,
)
from gsomia.node.api.problems import refusal_response
from gsomia.store.ledger_store import LedgerCorrupt


def answer(exc: GsomiaError) -> tuple[int, dict[str, Any]]:
    response = refusal_response(exc, "/items/x")
    assert response.media_type == "application/problem+json"
    return response.status_code, json.loads(bytes(response.body))


@pytest.mark.parametrize(
    ("exc", "status", "title"),
    [
        (GsomiaError("user 'a' already exists"), 400, "Refused"),
        (NoteInvalid("a note delivered by JPN must be JPN's own note"), 400, "Refused"),
        (InvalidHistory("terms.toml", "notes[1]", "no termination notice to withdraw"), 409, "Refused"),
        (AlarmInvalid("not an alarm"), 409, "Refused"),
        (Tampered("stored label differs from the sealed label"), 409, "Integrity failure"),
        (LedgerCorrupt("entry 3 changed"), 409, "Integrity failure"),
    ],
)
def test_a_refusal_answers_with_its_class_status_title_and_name(exc: GsomiaError, status: int, title: str) -> None:
    got_status, body = answer(exc)
    assert (got_status, body["status"], body["title"]) == (status, status, title)
    assert body["error"] == type(exc).__name__
    assert body["detail"] == str(exc)
    assert body["instance"] == "/items/x"
    assert body["type"] == f"https://gsomia.invalid/problems/{title.lower().replace(' ', '-')}"


def test_a_denial_shows_the_reasons_its_subject_may_read() -> None:
    reason = policy.Reason("R5", "item marked 極秘, above the reader's clearance", public="above your clearance")
    status, body = answer(Refused(policy.Decision(False, (reason,)), "reading x"))
    assert (status, body["title"], body["decision"]) == (403, "Denied", "deny")
    assert body["reasons"] == [{"rule": "R5", "text": "above your clearance"}]
    assert "極秘" not in json.dumps(body, ensure_ascii=False)
    assert "error" not in body


def test_not_found_says_nothing_more_than_not_found() -> None:
    status, body = answer(NotFound("no item x"))
    assert (status, body["title"], body["detail"]) == (404, "Not found", "no item x")
    assert set(body) == {"type", "title", "status", "detail", "instance"}


def test_a_refusal_names_a_file_but_not_where_it_lies() -> None:
    _, body = answer(AgreementFileError("/srv/gsomia/terms.toml", "notes[0]", "no termination notice"))
    assert body["detail"] == "terms.toml: notes[0]: no termination notice"
