"""Need-to-know covers metadata (principle 5, R7): a user learns nothing of an item they may not
read, neither on the alert stream nor from a refusal, an error code or a cursor; the ledger keeps
the full reason. Reclassification reaches the stream (R6); streams are bounded.

In process (one KOR node, its user app through Starlette's TestClient) where no stream is needed;
over real nodes on both backends for the streams themselves.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select

from gsomia.core import policy
from gsomia.core.errors import NotFound
from gsomia.core.label import Label
from gsomia.node.api import Broker
from gsomia.node.runtime import config as node_config
from gsomia.node.runtime.clock import SystemClock
from gsomia.node.service import FreshAlert, ItemSpec, Node
from gsomia.node.service import read as service_read
from gsomia.store import flash
from gsomia.store import schema as t
from gsomia.store.db import make_engine
from inprocess import in_process_apps
from nodes import FlashListener, Pair

NUCLEAR = "nk-nuclear"  # a compartment KOR's duty officer has no need-to-know for
SECRET = "군사II급비밀"
LOWER = "군사III급비밀"
GSOMIA = str(Path(sys.executable).parent / "gsomia")


@pytest.fixture
def kor(tmp_path: Path) -> Iterator[dict[str, Any]]:
    with in_process_apps(tmp_path) as apps:
        yield apps


def signed_in(kor: dict[str, Any], role: str) -> policy.Subject:
    subject: policy.Subject | None = kor["node"].authenticate(kor["tokens"][role])
    assert subject is not None
    return subject


def as_user(kor: dict[str, Any], token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def share(kor: dict[str, Any], classification: str = SECRET, **label: Any) -> str:
    """An item KOR's analyst provides to JPN (stored at KOR, readable by KOR's users as its originator)."""
    spec = ItemSpec("JPN", classification, b"the text", **{"purposes": ("nk-missile",), **label})
    [made] = kor["node"].provide(signed_in(kor, "analyst"), [spec])
    return str(made["item_id"])


def entries(engine: Engine, kind: str, actor: str, item_id: str) -> list[str]:
    """The ledger entries of this kind, actor and item, queued ones included (on every file of the node)."""
    found: list[str] = []
    main = flash.main_store(engine)
    side = flash.flash_store(engine)
    for store in (side, main) if side.separate else (main,):
        q = store.queue
        with store.engine.connect() as conn:
            found += conn.execute(
                select(q.c.detail).where(q.c.kind == kind, q.c.actor == actor, q.c.item_id == item_id)
            ).scalars()
    e = t.ledger_entries
    with engine.connect() as conn:
        found += conn.execute(
            select(e.c.body).where(e.c.kind == kind, e.c.actor == actor, e.c.item_id == item_id)
        ).scalars()
    return found


def same_shape(forbidden: Any, unknown: Any, forbidden_id: str, unknown_id: str) -> None:
    """Two answers identical but for the id asked about: status, headers' type, every field."""
    assert forbidden.status_code == unknown.status_code
    assert forbidden.headers["content-type"] == unknown.headers["content-type"]
    assert forbidden.text.replace(forbidden_id, "ID") == unknown.text.replace(unknown_id, "ID")


# --- finding 5: a forbidden item is answered as an unknown one -------------------------------


def test_a_forbidden_item_is_answered_exactly_as_an_unknown_id_and_the_ledger_keeps_why(
    kor: dict[str, Any],
) -> None:
    nuclear = share(kor, compartments=(NUCLEAR,))
    unknown = str(uuid.uuid4())
    client: TestClient = kor["user"]
    duty = as_user(kor, kor["tokens"]["duty_officer"])
    for purpose in ({}, {"purpose": "nk-missile"}):
        forbidden = client.get(f"/items/{nuclear}", headers=duty, params=purpose)
        missing = client.get(f"/items/{unknown}", headers=duty, params=purpose)
        assert forbidden.status_code == 404, forbidden.text
        same_shape(forbidden, missing, nuclear, unknown)
        assert NUCLEAR not in forbidden.text
        assert "R7" not in forbidden.text

    # A reproduction asked of it, the register and the cases: the same answer as for no item.
    for method, path, body in (
        ("POST", "/records", {"kind": "reproduction", "item_id": "{id}"}),
        ("POST", "/records", {"kind": "translation", "item_id": "{id}"}),
        ("GET", "/register/{id}", None),
        ("GET", "/records?item_id={id}", None),
    ):

        def ask(item: str, method: str = method, path: str = path, body: Any = body) -> Any:
            content = None if body is None else json.loads(json.dumps(body).replace("{id}", item))
            return client.request(method, path.replace("{id}", item), headers=duty, json=content)

        forbidden, missing = ask(nuclear), ask(unknown)
        assert forbidden.status_code in (403, 404), forbidden.text
        same_shape(forbidden, missing, nuclear, unknown)
        assert NUCLEAR not in forbidden.text

    # The security authority and auditors see why: every refusal is on the ledger in full.
    denied = entries(kor["node"].engine, "read_denied", "kor.duty", nuclear)
    assert len(denied) == 2  # one a read asked for
    assert all(f"no need-to-know for compartment(s) {NUCLEAR}" in e for e in denied)
    [reproduction] = entries(kor["node"].engine, "reproduction_denied", "kor.duty", nuclear)
    assert NUCLEAR in reproduction


def test_a_user_who_may_know_of_an_item_is_told_why_without_what_they_may_not_know(kor: dict[str, Any]) -> None:
    """An item the user may read for one purpose, asked for another: 403, the purposes the
    provider permitted not named; the auditor keeps the inventory (R8) and is refused its
    content without the compartment named."""
    item = share(kor, compartments=(NUCLEAR,), purposes=("nk-missile", "hidden-purpose"))
    client = kor["user"]
    analyst = as_user(kor, kor["tokens"]["analyst"])  # nk-missile and nk-nuclear, not hidden-purpose
    refused = client.get(f"/items/{item}", headers=analyst, params={"purpose": "exercise"})
    assert refused.status_code == 403, refused.text
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert [r["rule"] for r in refused.json()["reasons"]] == ["R5"]
    assert "exercise" in refused.json()["detail"]
    assert "hidden-purpose" not in refused.text
    assert client.get(f"/items/{item}", headers=analyst, params={"purpose": "nk-missile"}).status_code == 200

    auditor = as_user(kor, kor["tokens"]["auditor"])
    assert [i["item_id"] for i in client.get("/items", headers=auditor).json()["items"]] == [item]
    denied = client.get(f"/items/{item}", headers=auditor)
    assert denied.status_code == 403, denied.text
    assert {r["rule"] for r in denied.json()["reasons"]} == {"R7"}
    assert NUCLEAR not in denied.text
    assert "hidden-purpose" not in denied.text
    [full] = entries(kor["node"].engine, "read_denied", "kor.auditor", item)
    assert NUCLEAR in full
    [purpose] = entries(kor["node"].engine, "read_denied", "kor.analyst", item)
    assert "hidden-purpose" in purpose


LABEL = {
    "item_id": "6f1d4c2e-8a3b-4f5e-9c7d-1b2a3c4d5e6f",
    "originator": "KOR",
    "classification": SECRET,
    "releasable_to": ("KOR", "JPN"),
}


@pytest.mark.parametrize(
    ("subject", "label", "purpose", "kept"),
    [
        # A compartment outside the user's need-to-know.
        ({"need_to_know": ["nk-missile"]}, {"compartments": (NUCLEAR,)}, None, NUCLEAR),
        # A level above the user's clearance, in the user's own scheme (KOR 군사II급비밀 is JPN 極秘).
        ({"clearance": "秘"}, {}, None, "極秘"),
        # Purposes the provider permitted, none of them the user's.
        ({"need_to_know": ["nk-missile"]}, {"purposes": ("hidden-purpose",)}, None, "hidden-purpose"),
        # A declared purpose the provider did not permit: the permitted ones are not listed.
        ({"need_to_know": ["nk-missile", "other"]}, {"purposes": ("nk-missile", "hidden-purpose")}, "other", "hidden"),
    ],
)
def test_a_refusal_shown_to_the_subject_names_nothing_above_their_clearance_or_outside_their_need_to_know(
    subject: dict[str, Any], label: dict[str, Any], purpose: str | None, kept: str
) -> None:
    from datetime import UTC, datetime

    from gsomia.core.agreement import load, status
    from nodes import AGREEMENT

    agreement = load(AGREEMENT)
    at = datetime(2018, 6, 1, tzinfo=UTC)
    who = policy.subject_from_dict(
        {"id": "jpn.analyst", "party": "JPN", "role": "analyst", "clearance": "極秘", "need_to_know": ["nk-missile"]}
        | subject
    )
    item = Label(agreement=agreement.id, created_at=at, **{**LABEL, **label})
    decision = policy.decide(agreement, who, policy.Action.READ, item, status(agreement, at), (), at, purpose=purpose)
    assert not decision.permit
    shown = decision.shown()
    assert [r.rule for r in shown.reasons] == [r.rule for r in decision.reasons]  # every reason still cites its rule
    assert all(kept not in r.text for r in shown.reasons), shown
    assert kept in json.dumps(decision.as_dict(), ensure_ascii=False)  # what the ledger records


@pytest.mark.parametrize("clearance", ["秘", "極秘", None])
@pytest.mark.parametrize("need_to_know", [[], ["nk-missile"], ["nk-missile", NUCLEAR]])
@pytest.mark.parametrize("label", [{}, {"compartments": (NUCLEAR,)}, {"purposes": ("nk-missile",)}])
def test_subjects_alike_but_for_their_id_and_rank_get_the_same_decision(
    clearance: str | None, need_to_know: list[str], label: dict[str, Any]
) -> None:
    """What lets a shell make one decision for every subscriber the policy weighs alike."""
    from datetime import UTC, datetime

    from gsomia.core.agreement import load, status
    from nodes import AGREEMENT

    agreement = load(AGREEMENT)
    at = datetime(2018, 6, 1, tzinfo=UTC)
    item = Label(agreement=agreement.id, created_at=at, **{**LABEL, **label})
    weighed, decisions = set(), set()
    for user_id, rank in (("jpn.analyst", None), ("jpn.other", "colonel"), ("", None)):
        who = policy.subject_from_dict(
            {"id": user_id, "party": "JPN", "role": "analyst", "clearance": clearance, "need_to_know": need_to_know}
            | ({"rank": rank} if rank else {})
        )
        weighed.add(policy.as_decided(who))
        decisions.add(policy.decide(agreement, who, policy.Action.READ, item, status(agreement, at), (), at).permit)
    assert len(weighed) == 1
    assert len(decisions) == 1


# --- finding 5: cursors and counts ---------------------------------------------------------------


@pytest.mark.parametrize("scan", [2, service_read.LIST_SCAN])
def test_the_listing_cursor_moves_only_over_what_the_user_may_see(
    kor: dict[str, Any], monkeypatch: pytest.MonkeyPatch, scan: int
) -> None:
    monkeypatch.setattr(service_read, "LIST_SCAN", scan)  # 2: the listing reads several chunks to fill a page
    client, duty = kor["user"], as_user(kor, kor["tokens"]["duty_officer"])
    for _ in range(5):
        share(kor, compartments=(NUCLEAR,))
    for page in ({}, {"limit": 1}):  # not the node's count, however the rows passed over are read
        assert client.get("/items", headers=duty, params=page).json() == {"items": [], "next": 0}

    first = share(kor)
    for _ in range(3):
        share(kor, compartments=(NUCLEAR,))
    second = share(kor)
    for _ in range(3):
        share(kor, compartments=(NUCLEAR,))
    seen: list[str] = []
    after = 0
    while True:  # one item a page: no page is empty before the end, each cursor an item shown
        page = client.get("/items", headers=duty, params={"after": after, "limit": 1}).json()
        if page["next"] == after:
            assert page["items"] == []
            break
        [row] = page["items"]
        assert page["next"] == row["seq"]
        seen.append(row["item_id"])
        after = page["next"]
    assert seen == [first, second]
    auditor = as_user(kor, kor["tokens"]["auditor"])  # the inventory (R8) still pages through everything
    assert len(client.get("/items", headers=auditor, params={"limit": 1000}).json()["items"]) == 13


# --- finding 6: reclassification reaches the stream (R6) ------------------------------------------


def test_a_report_raised_above_a_subscribers_clearance_is_no_longer_shown_to_them(kor: dict[str, Any]) -> None:
    node: Node = kor["node"]
    duty = signed_in(kor, "duty_officer")
    low_token = node.add_user("kor.low", "duty_officer", LOWER, ["nk-missile", "flash"])
    low = node.authenticate(low_token)
    assert low is not None
    report, _, _ = node.provide_alert(duty, ItemSpec("JPN", LOWER, b"launch", purposes=("nk-missile",)), "w1")
    item = report["item_id"]
    [(seq, event)] = (node.alert_events(low, low_token, 0) or (0, []))[1]
    assert (event["alert_id"], event["text"], event["marking"]) == (item, "launch", LOWER)

    node.sequence_ledger()  # the report moves to the main file, where records about it are made
    authority = signed_in(kor, "security_authority")
    made = node.make_record(authority, "reclassification", item, {"classification": SECRET})
    assert made["record"]["classification"] == SECRET

    assert node.alert_events(low, low_token, 0) == (seq, [])  # passed over, and nothing of it shown
    with pytest.raises(NotFound):
        node.read_item(low, item)
    [(_, again)] = (node.alert_events(duty, kor["tokens"]["duty_officer"], 0) or (0, []))[1]
    assert (again["text"], again["marking"]) == ("launch", SECRET)  # cleared: shown at the current level


# --- finding 7: one read per user and report ----------------------------------------------------


def test_a_report_shown_on_many_streams_is_one_read_per_user_even_after_a_restart(kor: dict[str, Any]) -> None:
    node: Node = kor["node"]
    duty = signed_in(kor, "duty_officer")
    token = kor["tokens"]["duty_officer"]
    report, _, fresh = node.provide_alert(duty, ItemSpec("JPN", SECRET, b"launch", purposes=("nk-missile",)), "w1")
    shown = [e for _, e in node.fresh_alert_events(duty, token, fresh) or []]
    streams = [threading.Thread(target=node.record_alert_reads, args=(duty, shown)) for _ in range(8)]
    for s in streams:
        s.start()
    for s in streams:
        s.join()
    node.record_alert_reads(duty, shown)
    assert len(entries(node.engine, "read", "kor.duty", report["item_id"])) == 1

    # A restarted node remembers nothing and asks the ledger: the entry queued, then sequenced.
    Node(node.config, node.engine, SystemClock()).record_alert_reads(duty, shown)
    assert node.sequence_ledger() > 0
    restarted = Node(node.config, node.engine, SystemClock())
    restarted.record_alert_reads(duty, shown)
    assert len(entries(node.engine, "read", "kor.duty", report["item_id"])) == 1

    analyst = signed_in(kor, "analyst")  # another user who reads it is a read of their own
    restarted.record_alert_reads(analyst, shown)
    assert len(entries(node.engine, "read", "kor.analyst", report["item_id"])) == 1


def test_streams_of_one_subject_decide_a_report_once() -> None:
    """The decision an idle stream needs is made on the event loop, once per subject and report."""
    broker = Broker()
    asked: list[tuple[str, int]] = []
    who = policy.Subject("kor.duty", "KOR", policy.Role.DUTY_OFFICER, SECRET, frozenset({"nk-missile"}))
    other = policy.Subject("kor.low", "KOR", policy.Role.DUTY_OFFICER, LOWER, frozenset({"nk-missile"}))
    alert = FreshAlert(7, "a7", "JPN", "in", "JPN", cast(Label, None), b"")

    def decide(subject: policy.Subject, a: FreshAlert) -> bool:
        asked.append((subject.id, a.seq))
        return subject.clearance == SECRET

    assert [broker.may_read(who, alert, decide) for _ in range(300)] == [True] * 300
    assert [broker.may_read(other, alert, decide) for _ in range(300)] == [False] * 300
    alike = policy.Subject("kor.duty2", "KOR", policy.Role.DUTY_OFFICER, SECRET, frozenset({"nk-missile"}))
    assert broker.may_read(alike, alert, decide)  # weighed as kor.duty is: no decision of its own
    assert asked == [("kor.duty", 7), ("kor.low", 7)]


# --- over real nodes: the stream itself ----------------------------------------------------------


def add_user(pair: Pair, party: str, user_id: str, *options: str) -> str:
    made = subprocess.run(
        [GSOMIA, "user", "add", "--config", str(pair.nodes[party].config), user_id, *options],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    return next(w for w in made.stdout.split() if w.startswith("gsk_"))


def listen(pair: Pair, token: str) -> FlashListener:
    kor = pair.nodes["KOR"]
    listener = FlashListener(kor.alerts_url, token, trust=kor.trust())
    listener.start()
    assert listener.ready.wait(10)
    return listener


def flash_report(pair: Pair, classification: str, text: str) -> str:
    """A flash report JPN's duty officer sends KOR (JPN 極秘 is KOR 군사II급비밀, 秘 is 군사III급비밀)."""
    r = pair.user("JPN", "duty_officer").post(
        "/alerts", {"to": "KOR", "classification": classification, "text": text, "purposes": ["nk-missile"]}
    )
    assert r.status_code == 201, r.text
    return str(r.json()["alert"]["item_id"])


def texts(listener: FlashListener) -> list[str]:
    return [e["text"] for _, e in listener.events]


def test_the_stream_carries_only_reports_the_subscriber_may_read_under_their_current_label(pair: Pair) -> None:
    """Findings 5 and 6: nothing of a report above the subscriber's clearance, not even its id;
    a report the originator raised above it (R6) is no longer shown, and shown at its new level
    to those cleared."""
    low_token = add_user(
        pair, "KOR", "kor.low", "--role", "duty_officer", "--clearance", LOWER, "--need-to-know", "nk-missile"
    )
    duty, low = listen(pair, pair.nodes["KOR"].tokens["duty_officer"]), listen(pair, low_token)
    above = flash_report(pair, "極秘", "above")
    within = flash_report(pair, "秘", "within")
    pair.wait(lambda: len(duty.events) >= 2 and len(low.events) >= 1, "the reports on both streams", timeout=30)
    assert texts(duty) == ["above", "within"]
    assert texts(low) == ["within"]  # sent after "above": "above" would have come first
    assert low.events[0][0] == duty.events[1][0]  # the cursor of what it shows, nothing of what it does not
    assert all(above not in json.dumps(e) for _, e in low.events)

    # JPN, the originator, raises "within" to 極秘 (R6), once the report has joined its main file; KOR applies it.
    def raise_it() -> bool:
        r = pair.user("JPN", "security_authority").post(
            "/records", {"kind": "reclassification", "item_id": within, "classification": "極秘"}
        )
        assert r.status_code in (201, 404), r.text
        return r.status_code == 201

    pair.wait(raise_it, "the reclassification at JPN")
    authority = pair.user("KOR", "security_authority")
    pair.wait(
        lambda: authority.get(f"/register/{within}").json().get("classification") == "極秘", "the new level at KOR"
    )
    assert pair.user("KOR", "duty_officer").http.get(f"/items/{within}").status_code == 200
    refused = httpx.get(
        f"{pair.nodes['KOR'].user_url}/items/{within}",
        headers={"Authorization": f"Bearer {low_token}"},
        verify=pair.nodes["KOR"].trust(),
        timeout=30,
    )
    assert refused.status_code == 404, refused.text

    again, cleared = listen(pair, low_token), listen(pair, pair.nodes["KOR"].tokens["duty_officer"])
    flash_report(pair, "秘", "after")
    pair.wait(lambda: len(again.events) >= 1 and len(cleared.events) >= 3, "the streams from the start", timeout=30)
    assert texts(again) == ["after"]
    assert texts(cleared) == ["above", "within", "after"]
    assert cleared.events[1][1]["marking"] == SECRET  # its current level, in KOR's marking
    for listener in (duty, low, again, cleared):
        listener.done.set()


def test_streams_are_bounded_per_user_and_a_report_is_one_read_however_many_show_it(pair: Pair) -> None:
    """Finding 7: a user's fifth stream is refused (429) until one closes; a report shown on
    three of them is entered once on the ledger as that user's read."""
    kor = pair.nodes["KOR"]
    token = kor.tokens["duty_officer"]
    streams = [listen(pair, token) for _ in range(3)]
    first = flash_report(pair, "極秘", "one")
    second = flash_report(pair, "極秘", "two")
    pair.wait(lambda: all(texts(s) == ["one", "two"] for s in streams), "both reports on three streams", timeout=30)
    engine = make_engine(node_config.load(kor.config).database_url)
    try:
        pair.wait(lambda: len(entries(engine, "read", "kor.duty", second)) >= 1, "the second report's read")
        assert len(entries(engine, "read", "kor.duty", first)) == 1
        assert len(entries(engine, "read", "kor.duty", second)) == 1
    finally:
        engine.dispose()

    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=kor.alerts_url, verify=kor.trust(), timeout=httpx.Timeout(20, connect=5)) as client:
        with client.stream("GET", "/alerts/stream", headers=auth) as fourth:
            assert fourth.status_code == 200
            with client.stream("GET", "/alerts/stream", headers=auth) as fifth:
                assert fifth.status_code == 429
                assert fifth.headers["content-type"].startswith("application/problem+json")
                assert "4 open alert streams" in json.loads(fifth.read())["detail"]
            analyst = {"Authorization": f"Bearer {kor.tokens['analyst']}"}
            with client.stream("GET", "/alerts/stream", headers=analyst) as other:
                assert other.status_code == 200  # a limit per user, not per node
        # The fourth is closed: its place is given back.
        opened: list[int] = []

        def reopened() -> bool:
            with client.stream("GET", "/alerts/stream", headers=auth) as r:
                opened.append(r.status_code)
                return r.status_code == 200

        pair.wait(reopened, "a stream again once one closed")
        assert set(opened) <= {200, 429}
    for s in streams:
        s.done.set()


def test_streams_woken_by_one_publication_share_one_thread_hop_to_show_and_one_to_record() -> None:
    """Finding 7's cost: 300 streams woken together make one lookup and one ledger write, not 300."""
    broker = Broker()
    shown: list[int] = []
    recorded: list[int] = []
    who = policy.Subject("kor.duty", "KOR", policy.Role.DUTY_OFFICER, SECRET, frozenset({"nk-missile"}))
    alert = FreshAlert(7, "a7", "JPN", "in", "JPN", cast(Label, None), b"")

    async def show(asks: list[Any]) -> list[Any]:
        shown.append(len(asks))
        return [[(7, {"token": token})] for _, token, _ in asks]

    async def record(reads: list[Any]) -> None:
        recorded.append(len(reads))

    broker.show, broker.record = show, record

    async def streams() -> list[Any]:
        async def one(n: int) -> Any:
            events = await broker.events_for(who, f"token-{n}", [alert])
            await broker.reads(who, [e for _, e in events or []])
            return events

        return await asyncio.gather(*(one(n) for n in range(300)))

    results = asyncio.run(streams())
    assert shown == [300]
    assert recorded == [300]
    assert results[42] == [(7, {"token": "token-42"})]  # each stream its own answer


def test_events_for_many_streams_check_each_token_and_decide_each_subscriber(kor: dict[str, Any]) -> None:
    node: Node = kor["node"]
    duty = signed_in(kor, "duty_officer")
    low_token = node.add_user("kor.low", "duty_officer", LOWER, ["nk-missile", "flash"])
    gone_token = node.add_user("kor.gone", "duty_officer", SECRET, ["nk-missile", "flash"])
    low, gone = node.authenticate(low_token), node.authenticate(gone_token)
    assert low is not None
    assert gone is not None
    node.revoke_user("kor.gone")
    _, _, fresh = node.provide_alert(duty, ItemSpec("JPN", SECRET, b"launch", purposes=("nk-missile",)), "w1")
    cleared, below, revoked = node.fresh_alert_events_for(
        [(duty, kor["tokens"]["duty_officer"], fresh), (low, low_token, fresh), (gone, gone_token, fresh)]
    )
    assert [(seq, e["text"]) for seq, e in cleared or []] == [(fresh[0].seq, "launch")]
    assert below == []  # R7: nothing of it
    assert revoked is None  # the stream ends


def test_a_publication_wakes_only_the_streams_that_may_read_it_and_moves_the_others_past() -> None:
    broker = Broker()
    duty = policy.Subject("kor.duty", "KOR", policy.Role.DUTY_OFFICER, SECRET, frozenset({"nk-missile"}))
    low = policy.Subject("kor.low", "KOR", policy.Role.DUTY_OFFICER, LOWER, frozenset({"nk-missile"}))
    broker.readable = lambda who, alert: who.clearance == SECRET

    async def publish() -> tuple[Any, list[Any]]:
        cleared = broker.subscribe(duty, 0)
        idle = [broker.subscribe(low, 0) for _ in range(300)]
        broker.publish([FreshAlert(n, f"a{n}", "JPN", "in", "JPN", cast(Label, None), b"") for n in (1, 2, 3)])
        return cleared, idle

    cleared, idle = asyncio.run(publish())
    assert cleared.event.is_set()
    assert cleared.cursor == 0  # it reads them itself
    assert not any(s.event.is_set() for s in idle)  # nothing to show: not woken
    assert {s.cursor for s in idle} == {3}  # but past them, with nothing left to read in the database
