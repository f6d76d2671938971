"""Two real nodes over real HTTP, mutual TLS between them, on SQLite and PostgreSQL."""

from __future__ import annotations

import ssl
import threading
import time
from typing import Any

import httpx
import pytest

from nodes import FlashListener, Pair


def test_items_flow_both_ways_in_the_recipients_marking(pair: Pair) -> None:
    kor_ids = pair.share("KOR", "JPN", "군사II급비밀", 30)
    jpn_ids = pair.share("JPN", "KOR", "秘", 20)
    pair.wait(lambda: pair.pending("KOR") == 0 and pair.pending("JPN") == 0, "delivery")
    at_jpn = pair.received("JPN")
    at_kor = pair.received("KOR")
    assert [r["item_id"] for r in at_jpn] == kor_ids  # everything, once, in order
    assert [r["item_id"] for r in at_kor] == jpn_ids
    assert {r["marking"] for r in at_jpn} == {"極秘"}  # R3/R4: KOR 군사II급비밀 is JPN 極秘
    assert {r["marking"] for r in at_kor} == {"군사III급비밀"}
    read = pair.user("JPN", "analyst").get(f"/items/{kor_ids[0]}")
    assert read.status_code == 200
    body = read.json()
    assert body["display"].startswith("極秘 (provided by KOR as 군사II급비밀")
    assert body["decision"]["decision"] == "permit"


def test_reading_needs_clearance_and_need_to_know(pair: Pair) -> None:
    [item] = pair.share("KOR", "JPN", "군사II급비밀", 1)
    pair.wait(lambda: pair.pending("KOR") == 0, "delivery")
    denied = pair.user("JPN", "auditor").get(f"/items/{item}")  # no clearance, no need-to-know (R7)
    assert denied.status_code == 403
    assert denied.headers["content-type"].startswith("application/problem+json")
    assert {r["rule"] for r in denied.json()["reasons"]} >= {"R7"}
    assert "payload_b64" not in denied.json()


def test_marking_outside_the_agreement_is_refused_and_nothing_is_stored(pair: Pair) -> None:
    r = pair.user("KOR", "analyst").post(
        "/items", {"items": [{"to": "JPN", "classification": "군사I급비밀", "text": "x"}]}
    )
    assert r.status_code == 403
    assert r.json()["reasons"][0]["rule"] == "R3"
    assert pair.user("KOR", "analyst").get("/items").json()["items"] == []


def test_flash_reports_reach_the_partner_live_and_resume_with_last_event_id(pair: Pair) -> None:
    kor = pair.nodes["KOR"]
    listener = FlashListener(kor.user_url, kor.tokens["duty_officer"])
    listener.start()
    assert listener.ready.wait(10)
    duty = pair.user("JPN", "duty_officer")
    pair.share("JPN", "KOR", "秘", 200)  # bulk traffic in the way
    for k in range(3):
        r = duty.post(
            "/alerts", {"to": "KOR", "classification": "極秘", "text": f"launch {k}", "purposes": ["nk-missile"]}
        )
        assert r.status_code == 201, r.text
    pair.wait(lambda: len(listener.events) >= 3, "three flash reports over SSE", timeout=30)
    listener.done.set()
    texts = [e["text"] for _, e in listener.events]
    assert texts == ["launch 0", "launch 1", "launch 2"], listener.events
    assert all(e["marking"] == "군사II급비밀" for _, e in listener.events)  # JPN 極秘 is KOR 군사II급비밀
    # A console that reconnects with Last-Event-ID gets only what it missed.
    first_id = listener.events[0][0]
    again = FlashListener(kor.user_url, kor.tokens["duty_officer"], last_event_id=first_id)
    again.start()
    pair.wait(lambda: len(again.events) >= 2, "the resumed stream")
    again.done.set()
    assert [e["text"] for _, e in again.events[:2]] == ["launch 1", "launch 2"]


def test_analyst_cannot_send_flash_reports(pair: Pair) -> None:
    r = pair.user("JPN", "analyst").post("/alerts", {"to": "KOR", "classification": "極秘", "text": "x"})
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("application/problem+json")


def test_a_flash_report_needs_a_known_token(pair: Pair) -> None:
    """At the flash process: without a bearer token, or with an unknown one, a report is
    refused with 401 and nothing is stored."""
    url = pair.nodes["JPN"].alerts_url + "/alerts"
    report = {"to": "KOR", "classification": "極秘", "text": "x", "purposes": ["nk-missile"]}
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}):
        r = httpx.post(url, json=report, headers=headers, timeout=30)
        assert r.status_code == 401, (headers, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    assert pair.user("JPN", "duty_officer").get("/items").json()["items"] == []


def test_notes_are_applied_on_both_nodes_and_termination_stops_provision(demo_pair: Pair) -> None:
    pair = demo_pair
    pair.set_clock("2019-08-01T09:00:00+09:00")
    before = pair.share("KOR", "JPN", "군사II급비밀", 5)
    authority = pair.user("KOR", "security_authority")
    r = authority.post("/notes", {"to": "JPN", "type": "termination_notice", "at": "2019-08-23T10:00:00+09:00"})
    assert r.status_code == 201, r.text

    def states() -> tuple[str, str]:
        return (
            pair.user("KOR", "analyst").get("/status").json()["JPN"]["state"],
            pair.user("JPN", "analyst").get("/status").json()["KOR"]["state"],
        )

    pair.set_clock("2019-09-01T00:00:00+09:00")
    pair.wait(lambda: states() == ("termination_pending", "termination_pending"), "the note on both nodes")
    pair.set_clock("2019-11-23T00:00:01+09:00")
    assert states() == ("terminated", "terminated")
    refused = pair.user("KOR", "analyst").post(
        "/items", {"items": [{"to": "JPN", "classification": "군사II급비밀", "text": "late"}]}
    )
    assert refused.status_code == 403
    assert "R14" in {x["rule"] for x in refused.json()["reasons"]}
    pair.wait(lambda: pair.pending("KOR") == 0, "delivery")
    still = pair.user("JPN", "analyst").get(
        f"/items/{before[0]}"
    )  # R14: what was provided stays protected and readable
    assert still.status_code == 200
    assert "R14" in {x["rule"] for x in still.json()["decision"]["reasons"]}
    # Only a security authority records notes; an impossible note is refused with the reason.
    assert pair.user("KOR", "analyst").post("/notes", {"to": "JPN", "type": "withdraw_notice"}).status_code == 403
    late = authority.post("/notes", {"to": "JPN", "type": "withdraw_notice"})
    assert late.status_code == 409
    assert "after the agreement terminated" in late.json()["detail"]


def test_partner_down_for_a_while_gets_everything_in_order(pair: Pair) -> None:
    pair.procs["JPN"].stop()
    # Two delivery batches (512 items and the rest): a failed send gives back the batch claimed ahead of it.
    ids = pair.share("KOR", "JPN", "군사II급비밀", 600, batch=200)
    time.sleep(1.5)  # several failed attempts with back-off
    assert pair.pending("KOR") == 600
    pair.procs["JPN"].start()
    pair.wait(lambda: pair.pending("KOR") == 0, "delivery after the partner is back", timeout=90)
    assert [r["item_id"] for r in pair.received("JPN")] == ids


def test_kill_9_of_the_receiver_in_a_burst_loses_and_duplicates_nothing(pair: Pair) -> None:
    ids: list[str] = []
    sender = threading.Thread(target=lambda: ids.extend(pair.share("KOR", "JPN", "군사II급비밀", 1000, batch=50)))
    sender.start()
    pair.wait(lambda: len(pair.received("JPN")) > 100, "the burst to be under way")
    pair.procs["JPN"].kill()
    sender.join()
    pair.procs["JPN"].start()
    pair.wait(lambda: pair.pending("KOR") == 0, "delivery after the restart", timeout=120)
    got = [r["item_id"] for r in pair.received("JPN")]
    assert len(ids) == 1000
    assert len(got) == len(set(got)) == 1000
    assert got == ids  # in order, though a batch was cut short and the next one claimed ahead


def test_kill_9_of_the_sender_loses_nothing_it_acknowledged(pair: Pair) -> None:
    ids = pair.share("KOR", "JPN", "군사II급비밀", 300, batch=100)
    pair.procs["KOR"].kill()  # acknowledged to the analyst; maybe not yet delivered
    pair.procs["KOR"].start()
    pair.wait(lambda: pair.pending("KOR") == 0, "delivery after the sender restarts", timeout=90)
    got = [r["item_id"] for r in pair.received("JPN")]
    assert sorted(got) == sorted(ids)
    assert len(got) == len(set(got))


def test_bad_input_is_a_problem_document_and_stores_nothing(pair: Pair) -> None:
    analyst = pair.user("KOR", "analyst")
    bodies: list[Any] = [
        {},
        {"items": []},
        {"items": [{"to": "JPN"}]},
        {"items": [{"to": "JPN", "classification": "군사II급비밀"}]},
        {"items": [{"to": "JPN", "classification": "군사II급비밀", "text": "x", "payload_b64": "eA=="}]},
        {"items": [{"to": "JPN", "classification": "군사II급비밀", "payload_b64": "not base64!"}]},
        {"items": [{"to": "CHN", "classification": "군사II급비밀", "text": "x"}]},
        {"items": [{"to": "JPN", "classification": "군사II급비밀", "text": "x", "bogus": 1}]},
        [1, 2, 3],
        "text",
    ]
    for body in bodies:
        r = analyst.post("/items", body)
        assert 400 <= r.status_code < 500, (body, r.status_code, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        assert {"type", "title", "status", "detail"} <= set(r.json())
    raw = analyst.http.post("/items", content=b"{not json", headers={"content-type": "application/json"})
    assert raw.status_code == 400
    assert analyst.get("/items").json()["items"] == []
    assert pair.user("KOR", "analyst").http.get("/items", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_peer_api_needs_a_client_certificate_and_a_signature(pair: Pair) -> None:
    import tomllib

    cfg = tomllib.loads(pair.nodes["KOR"].config.read_text())
    url = cfg["peers"]["JPN"]["url"]
    jpn_cert = str(pair.nodes["KOR"].root / "keys" / "JPN.crt")
    no_client_cert = ssl.create_default_context(cafile=jpn_cert)
    with pytest.raises(httpx.HTTPError):
        httpx.post(f"{url}/peer/items", content=b"{}", verify=no_client_cert, timeout=5)
    # With KOR's certificate but no request signature: refused, nothing stored.
    ctx = ssl.create_default_context(cafile=jpn_cert)
    ctx.load_cert_chain(
        str(pair.nodes["KOR"].root / "keys" / "KOR.crt"), str(pair.nodes["KOR"].root / "keys" / "KOR.tls.key")
    )
    r = httpx.post(
        f"{url}/peer/items",
        content=b'{"lane":"bulk","envelopes":[]}',
        verify=ctx,
        timeout=5,
        headers={"X-Gsomia-Party": "KOR"},
    )
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/problem+json")
    assert pair.received("JPN") == []


def test_listing_shows_only_what_the_user_may_read_but_the_inventory_shows_all(pair: Pair) -> None:
    [open_item] = pair.share("KOR", "JPN", "군사II급비밀", 1)
    [nuclear] = pair.share("KOR", "JPN", "군사II급비밀", 1, purposes=["nk-nuclear"])
    pair.wait(lambda: pair.pending("KOR") == 0, "delivery")
    duty = pair.user("JPN", "duty_officer")  # need-to-know: nk-missile and flash, not nk-nuclear
    seen = [i["item_id"] for i in duty.get("/items").json()["items"]]
    assert seen == [open_item]
    inventory = [i["item_id"] for i in pair.user("JPN", "auditor").get("/items").json()["items"]]
    assert inventory == [open_item, nuclear]
    assert pair.user("JPN", "auditor").get(f"/items/{nuclear}").status_code == 403  # no content for the auditor
