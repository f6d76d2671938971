"""Third-party release with the originator's signed consent (R5); loss or compromise (R11)."""

from __future__ import annotations

from typing import Any

from nodes import Pair


def case(pair: Pair, party: str, case_id: str) -> dict[str, Any] | None:
    r = pair.user(party, "security_authority").get("/records")
    assert r.status_code == 200, r.text
    return next((c for c in r.json()["cases"] if c["case"] == case_id), None)


def state(pair: Pair, party: str, case_id: str) -> str | None:
    found = case(pair, party, case_id)
    return None if found is None else str(found["state"])


def test_third_party_release_needs_the_originators_signed_consent(pair: Pair) -> None:
    [item] = pair.share("KOR", "JPN", "군사II급비밀", 1)
    pair.wait(lambda: pair.pending("KOR") == 0, "delivery")
    jpn, kor = pair.user("JPN", "security_authority"), pair.user("KOR", "security_authority")

    asked = jpn.post(
        "/records", {"kind": "consent_request", "item_id": item, "recipient": "USA", "purpose": "missile-defense"}
    )
    assert asked.status_code == 201, asked.text
    request_id = asked.json()["record"]["record_id"]
    early = jpn.post("/records", {"kind": "release", "item_id": item, "request_id": request_id})
    assert early.status_code == 403
    assert early.json()["reasons"][0]["rule"] == "R5"

    pair.wait(lambda: state(pair, "KOR", request_id) == "requested", "the request at the originator")
    assert (
        pair.user("JPN", "security_authority")
        .post("/records", {"kind": "consent_decision", "item_id": item, "request_id": request_id, "grant": True})
        .status_code
        == 403
    )  # only the originator decides
    granted = kor.post(
        "/records",
        {"kind": "consent_decision", "item_id": item, "request_id": request_id, "grant": True, "reason": "TISA"},
    )
    assert granted.status_code == 201, granted.text
    pair.wait(lambda: state(pair, "JPN", request_id) == "granted", "the signed consent at the holder")

    released = jpn.post("/records", {"kind": "release", "item_id": item, "request_id": request_id})
    assert released.status_code == 201, released.text
    assert released.json()["state"] == "released"
    pair.wait(lambda: state(pair, "KOR", request_id) == "released", "the release on the originator's ledger too")
    kinds = [r["kind"] for r in case(pair, "KOR", request_id)["records"]]  # type: ignore[index]
    assert kinds == ["consent_request", "consent_decision", "release"]

    # A refused request never releases; the originator and analysts cannot ask.
    other = jpn.post(
        "/records", {"kind": "consent_request", "item_id": item, "recipient": "AUS", "purpose": "exercise"}
    ).json()
    pair.wait(lambda: state(pair, "KOR", other["record"]["record_id"]) == "requested", "the second request")
    kor.post(
        "/records",
        {"kind": "consent_decision", "item_id": item, "request_id": other["record"]["record_id"], "grant": False},
    )
    pair.wait(lambda: state(pair, "JPN", other["record"]["record_id"]) == "refused", "the refusal")
    denied = jpn.post("/records", {"kind": "release", "item_id": item, "request_id": other["record"]["record_id"]})
    assert denied.status_code == 403
    assert (
        kor.post(
            "/records", {"kind": "consent_request", "item_id": item, "recipient": "USA", "purpose": "x"}
        ).status_code
        == 403
    )
    assert (
        pair.user("JPN", "analyst")
        .post("/records", {"kind": "consent_request", "item_id": item, "recipient": "USA", "purpose": "x"})
        .status_code
        == 403
    )


def test_compromise_reaches_the_originator_at_once_and_stays_open_until_closed(pair: Pair) -> None:
    [item] = pair.share("KOR", "JPN", "군사II급비밀", 1)
    pair.wait(lambda: pair.pending("KOR") == 0, "delivery")
    jpn, kor = pair.user("JPN", "security_authority"), pair.user("KOR", "security_authority")
    report = jpn.post(
        "/records",
        {
            "kind": "compromise_report",
            "item_id": item,
            "nature": "loss",
            "description": "laptop with a copy lost in transit",
        },
    )
    assert report.status_code == 201, report.text
    report_id = report.json()["record"]["record_id"]
    pair.wait(lambda: state(pair, "KOR", report_id) == "open", "the report at the originator", timeout=10)
    assert (
        kor.post(
            "/records",
            {"kind": "investigation", "item_id": item, "report_id": report_id, "results": "x", "remedial_steps": "y"},
        ).status_code
        == 403
    )  # the reporter investigates
    step = jpn.post(
        "/records",
        {
            "kind": "investigation",
            "item_id": item,
            "report_id": report_id,
            "results": "laptop found; disk encrypted",
            "remedial_steps": "courier retrained",
        },
    )
    assert step.status_code == 201
    assert state(pair, "JPN", report_id) == "open"
    done = jpn.post(
        "/records",
        {
            "kind": "investigation",
            "item_id": item,
            "report_id": report_id,
            "results": "no compromise",
            "remedial_steps": "none further",
            "closed": True,
        },
    )
    assert done.status_code == 201
    pair.wait(lambda: state(pair, "KOR", report_id) == "closed", "the closure at the originator")
    records = case(pair, "KOR", report_id)["records"]  # type: ignore[index]
    assert [r["kind"] for r in records] == ["compromise_report", "investigation", "investigation"]
    assert records[1]["remedial_steps"] == "courier retrained"
    assert pair.user("KOR", "analyst").get("/records").status_code == 403
