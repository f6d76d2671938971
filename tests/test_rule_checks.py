"""Checks that nothing else backs up: each test here fails when its one check is removed.

Most rules are enforced more than once (the policy, then the egress guard, then the
receiving node), so a test that goes through all of them passes with any one check taken out.
These tests reach each check alone: a request that every other check lets through,
so the refusal can only come from the check under test. R1, R5, R9, R13 and R14 on
the receiving side are tried with envelopes a hostile or misconfigured partner would
send: sealed and signed with real keys, so they pass every seal check and only the
receiving node's own look at the label stands between them and the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from gsomia.cli.demo import terms_only
from gsomia.core import egress, envelope, keys
from gsomia.core.agreement import State, load, status
from gsomia.core.errors import Refused
from gsomia.core.keys import PrivateKeys, PublicKeys
from gsomia.core.label import Label, LabelInvalid, new_item_id, validate
from gsomia.core.policy import Action, Consent, Role, Subject, decide
from gsomia.node import peer
from gsomia.node.api import Broker, create_peer_app
from gsomia.node.runtime import config as node_config
from gsomia.node.runtime.clock import SystemClock
from gsomia.node.service import ItemSpec, Node
from gsomia.node.setup.provision import Provisioned, provision_pair
from gsomia.node.workers.delivery import BATCH, Delivery, items_body
from gsomia.store.db import open_node_database
from nodes import AGREEMENT as AGREEMENT_FILE
from nodes import pg_databases

ROOT = Path(__file__).resolve().parents[1]
BILATERAL = load(AGREEMENT_FILE)
TISA = load(ROOT / "agreements" / "us-kr-jp-tisa-2014.toml")
KST = timezone(timedelta(hours=9))
IN_FORCE = datetime(2018, 6, 1, tzinfo=KST)  # in force, no notice pending


# --- R1: the policy never provides an item to its own originator ---------------------------------


def test_the_policy_refuses_to_provide_an_item_to_its_own_originator() -> None:
    """R1: an item is provided to the other party directly, never back to the party that made it.

    The label lists KOR among the parties it is releasable to, so no R5 check stands in the
    way: only R1 refuses."""
    item = Label(new_item_id(), BILATERAL.id, "KOR", "군사II급비밀", ("KOR", "JPN"), IN_FORCE - timedelta(days=1))
    authority = Subject("kor-sa", "KOR", Role.SECURITY_AUTHORITY, "군사II급비밀", frozenset({"nk-missile"}))
    in_force = status(BILATERAL, IN_FORCE)

    to_itself = decide(BILATERAL, authority, Action.PROVIDE, item, in_force, (), IN_FORCE, recipient="KOR")
    assert not to_itself.permit
    assert [r.rule for r in to_itself.reasons] == ["R1"], [str(r) for r in to_itself.reasons]

    # The same request to the other party is permitted: the recipient alone made the difference.
    to_partner = decide(BILATERAL, authority, Action.PROVIDE, item, in_force, (), IN_FORCE, recipient="JPN")
    assert to_partner.permit, [str(r) for r in to_partner.reasons]


# --- R5: the egress guard's own check of a third-party release ---------------------------------


ITEM = "6f1d4c2e-8a3b-4f5e-9c7d-1b2a3c4d5e6f"
KOR_ITEM = Label(ITEM, BILATERAL.id, "KOR", "군사II급비밀", ("JPN",), IN_FORCE)
APPROVAL = Consent(ITEM, "USA", "missile-warning", "KOR", IN_FORCE)


def test_the_egress_guard_lets_a_release_go_only_with_the_originators_approval() -> None:
    """R5: ``egress.check_release`` on its own, apart from the policy: JPN releases KOR's item to
    the USA only with KOR's written approval for this item, this recipient and this purpose."""
    assert egress.check_release(KOR_ITEM, "USA", "missile-warning", "JPN", [APPROVAL]) is None
    assert egress.check_release(KOR_ITEM, "USA", "missile-warning", "KOR", []) is None  # the originator's own

    problem = egress.check_release(KOR_ITEM, "USA", "missile-warning", "JPN", [])
    assert problem is not None
    assert "no approval by KOR" in problem
    assert ITEM in problem


@pytest.mark.parametrize(
    "mismatch",
    [
        {"item_id": "0a9b8c7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d"},
        {"recipient": "GBR"},
        {"purpose": "training"},
        {"granted_by": "JPN"},  # the holder's own word is no approval
    ],
    ids=["another-item", "another-recipient", "another-purpose", "not-the-originator"],
)
def test_the_egress_guard_holds_a_release_whose_approval_differs_in_one_field(mismatch: dict[str, str]) -> None:
    """R5: an approval counts only when item, recipient, purpose and approver all match."""
    fields: dict[str, Any] = {
        "item_id": ITEM,
        "recipient": "USA",
        "purpose": "missile-warning",
        "granted_by": "KOR",
        "granted_at": IN_FORCE,
    }
    approval = Consent(**{**fields, **mismatch})
    problem = egress.check_release(KOR_ITEM, "USA", "missile-warning", "JPN", [approval])
    assert problem is not None
    assert problem.startswith("no approval by KOR")


# --- R18: under the trilateral arrangement, no direct route -----------------------------------------


def tisa_label(route: str) -> Label:
    return Label(
        new_item_id(),
        TISA.id,
        "KOR",
        "군사II급비밀",
        ("USA",),
        datetime(2020, 1, 1, tzinfo=UTC),
        route=route,  # type: ignore[arg-type]
    )


def test_a_direct_route_is_refused_under_the_trilateral_arrangement() -> None:
    """R18: the direct route exists only between the two parties of a bilateral agreement;
    under the three-party TISA an item travels the trilateral route."""
    with pytest.raises(LabelInvalid, match=r"R18"):
        validate(tisa_label("direct"), TISA)
    assert validate(tisa_label("trilateral"), TISA).name == "SECRET"


def test_an_envelope_is_not_sealed_for_a_direct_route_under_the_trilateral_arrangement() -> None:
    """R18: the sealer checks the label with ``validate``, so a direct-route item under TISA is never sealed."""
    kor, usa = keys.generate("KOR", "classic"), keys.generate("USA", "classic")
    sealer = envelope.Sealer(kor, TISA)
    with pytest.raises(LabelInvalid, match=r"R18"):
        sealer.seal(b"launch detected", tisa_label("direct"), [usa.public()])
    assert sealer.seal(b"launch detected", tisa_label("trilateral"), [usa.public()])


# --- the receiving node's own checks (R1, R5, R9, R13, R14) ---------------------------------------


class UncheckedSealer(envelope.Sealer):
    """A partner's sealer with its send-side checks taken out (``Sealer._check``): what a hostile
    or misconfigured node could sign with its real key. The receiver must not rely on them."""

    def _check(self, label: Label, recipients: Sequence[PublicKeys], segment_size: int) -> None:
        return None


@dataclass
class Receiver:
    """KOR's node, in process, with its peer API; and the keys of both parties."""

    node: Node
    peer_app: TestClient
    kor_key: PrivateKeys
    jpn_key: PrivateKeys
    tokens: dict[str, str]  # KOR's users' bearer tokens, by role

    def subject(self, role: str) -> Subject:
        found = self.node.authenticate(self.tokens[role])
        assert found is not None
        return found

    def send(self, envelopes: list[bytes], lane: str) -> dict[str, Any]:
        """Deliver ``envelopes`` as JPN does: a request signed with JPN's key; the signed receipt."""
        body = items_body(lane, envelopes)
        headers = {**peer.sign_request(self.jpn_key, "POST", "/peer/items", body), "X-Gsomia-Lane": lane}
        response = self.peer_app.post("/peer/items", content=body, headers=headers)
        assert response.status_code == 200, response.text
        receipt: dict[str, Any] = response.json()["receipt"]
        return receipt

    def stored(self) -> tuple[int, ...]:
        """Rows of items and of alerts (what a duty officer's stream shows), in both of the node's files."""
        counts: list[int] = []
        for store in (self.node.main, self.node.flash):
            with store.engine.connect() as conn:
                for table in (store.items, store.alerts):
                    counts.append(int(conn.execute(select(func.count()).select_from(table)).scalar_one()))
        return tuple(counts)

    def holds(self, item_id: str) -> bool:
        for store in (self.node.main, self.node.flash):
            with store.engine.connect() as conn:
                if conn.execute(select(store.items.c.item_id).where(store.items.c.item_id == item_id)).first():
                    return True
        return False


def provisioned(stack: contextlib.ExitStack, root: Path, agreement_file: Path, backend: str) -> dict[str, Provisioned]:
    """Both parties provisioned on ``backend`` (PostgreSQL: two fresh databases, dropped with ``stack``)."""
    urls = None
    if backend == "postgresql":
        kor_db, jpn_db = stack.enter_context(pg_databases(2))
        urls = {"KOR": kor_db, "JPN": jpn_db}
    return provision_pair(root, agreement_file, database_urls=urls)


def running(stack: contextlib.ExitStack, p: Provisioned) -> Node:
    """``p``'s node in this process, closed with ``stack``."""
    cfg = node_config.load(p.config)
    node = Node(cfg, open_node_database(cfg), SystemClock())
    stack.callback(node.dispose)
    return node


@contextmanager
def _receiver(root: Path, agreement_file: Path, backend: str) -> Iterator[Receiver]:
    with contextlib.ExitStack() as stack:
        pair = provisioned(stack, root, agreement_file, backend)
        node = running(stack, pair["KOR"])
        app = TestClient(create_peer_app(node, Broker()), raise_server_exceptions=False)
        jpn_key = node_config.load(pair["JPN"].config).key
        yield Receiver(node, app, node.config.key, jpn_key, pair["KOR"].tokens)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def receiver(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Receiver]:
    """KOR's node under the agreement as it stands today: in force, no notice pending."""
    root = tmp_path_factory.mktemp("live")
    with _receiver(root, terms_only(AGREEMENT_FILE, root / "terms.toml"), request.param) as r:
        yield r


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def ended(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Receiver]:
    """KOR's node under the agreement as it would have been without the suspension: KOR's
    termination notice of 2019-08-23 alone, so it terminated on 2019-11-23 (R14)."""
    root = tmp_path_factory.mktemp("ended")
    head, first_note, *_ = AGREEMENT_FILE.read_text(encoding="utf-8").split("\n[[notes]]")
    terms = root / "terminated.toml"
    terms.write_text(head + "\n[[notes]]" + first_note.rstrip() + "\n", encoding="utf-8")
    assert status(load(terms), datetime.now(UTC)).state is State.TERMINATED
    with _receiver(root, terms, request.param) as r:
        yield r


def jpn_item(created_at: datetime, releasable_to: tuple[str, ...] = ("KOR",)) -> Label:
    return Label(new_item_id(), BILATERAL.id, "JPN", "極秘", releasable_to, created_at, purposes=("nk-missile",))


def sealed(sealer: envelope.Sealer, label: Label, to: PrivateKeys) -> bytes:
    return sealer.seal(f"report {label.item_id}".encode(), label, [to.public()])


LANES = ["bulk", "flash"]


@pytest.mark.parametrize("lane", LANES)
def test_an_ordinary_item_from_the_partner_is_stored(receiver: Receiver, lane: str) -> None:
    """The baseline the refusals below differ from in one fact each: JPN's own item, releasable
    to KOR, released a moment ago while the agreement is in force, is received and stored."""
    label = jpn_item(datetime.now(UTC) - timedelta(minutes=1))
    env = sealed(envelope.Sealer(receiver.jpn_key, receiver.node.agreement("JPN")), label, receiver.kor_key)
    receipt = receiver.send([env], lane)
    assert receipt["received"] == [label.item_id]
    assert receipt["refused"] == []
    assert receiver.holds(label.item_id)


def refused_alone(r: Receiver, env: bytes, label: Label, lane: str, rule: str) -> None:
    """The partner's delivery of ``env`` is refused naming ``rule``, and nothing of it is kept."""
    before = r.stored()
    receipt = r.send([env], lane)
    assert receipt["received"] == []
    [refusal] = receipt["refused"]
    assert refusal["item_id"] == label.item_id
    assert refusal["reason"].startswith(rule), refusal["reason"]
    assert not r.holds(label.item_id)
    assert r.stored() == before


@pytest.mark.parametrize("lane", LANES)
def test_the_receiver_refuses_its_own_item_sent_back_by_the_partner(receiver: Receiver, lane: str) -> None:
    """R1: a partner delivers only its own items. JPN sends back an item KOR sealed itself (it
    is wrapped for KOR's own key too, and KOR trusts its own signature): KOR refuses it.

    The label names KOR among the parties it is releasable to, so R5 does not catch it."""
    label = Label(
        new_item_id(), BILATERAL.id, "KOR", "군사II급비밀", ("JPN", "KOR"), datetime.now(UTC) - timedelta(minutes=1)
    )
    env = sealed(envelope.Sealer(receiver.kor_key, receiver.node.agreement("JPN")), label, receiver.kor_key)
    refused_alone(receiver, env, label, lane, "R1")


@pytest.mark.parametrize("lane", LANES)
def test_the_receiver_refuses_an_item_not_releasable_to_it(receiver: Receiver, lane: str) -> None:
    """R5: JPN seals, for KOR's key, an item whose label releases it to JPN alone (its own
    sealer would refuse; a hostile one does not): KOR refuses to keep it."""
    label = jpn_item(datetime.now(UTC) - timedelta(minutes=1), releasable_to=("JPN",))
    env = sealed(UncheckedSealer(receiver.jpn_key, receiver.node.agreement("JPN")), label, receiver.kor_key)
    refused_alone(receiver, env, label, lane, "R5")


@pytest.mark.parametrize("lane", LANES)
def test_the_receiver_refuses_an_item_released_in_the_future(receiver: Receiver, lane: str) -> None:
    """R9: every transmission is recorded at its true release instant; one dated a day ahead
    (past the five minutes of clock skew allowed) is refused, though the agreement is in force then."""
    label = jpn_item(datetime.now(UTC) + timedelta(days=1))
    assert status(receiver.node.agreement("JPN"), label.created_at).in_force
    env = sealed(envelope.Sealer(receiver.jpn_key, receiver.node.agreement("JPN")), label, receiver.kor_key)
    refused_alone(receiver, env, label, lane, "R9")


@pytest.mark.parametrize("lane", LANES)
def test_the_receiver_refuses_an_item_released_before_entry_into_force(receiver: Receiver, lane: str) -> None:
    """R13: nothing is provided under the agreement before it entered into force (2016-11-23)."""
    label = jpn_item(datetime(2016, 6, 1, tzinfo=KST))
    env = sealed(envelope.Sealer(receiver.jpn_key, receiver.node.agreement("JPN")), label, receiver.kor_key)
    refused_alone(receiver, env, label, lane, "R13")


@pytest.mark.parametrize("lane", LANES)
def test_the_receiver_refuses_an_item_released_after_termination(ended: Receiver, lane: str) -> None:
    """R14: after the agreement terminated, nothing new is provided under it; an item released
    after the end (2020-01-01, in the past, so R9 does not apply) is refused."""
    label = jpn_item(datetime(2020, 1, 1, tzinfo=KST))
    env = sealed(envelope.Sealer(ended.jpn_key, ended.node.agreement("JPN")), label, ended.kor_key)
    refused_alone(ended, env, label, lane, "R14")


# --- R8: the register is for the security authority (and auditors) -------------------------------


def test_only_the_security_authority_and_auditors_read_the_register(receiver: Receiver) -> None:
    """R8: the register of an item (holder, copies, destruction) is kept by the security
    authority; auditors read it too. An analyst cleared for the item and a duty officer are refused."""
    analyst = receiver.subject("analyst")
    [item] = receiver.node.provide(
        analyst, [ItemSpec("JPN", "군사II급비밀", b"launch site imagery", purposes=("nk-missile",))]
    )
    for role in ("security_authority", "auditor"):
        register = receiver.node.register(receiver.subject(role), item["item_id"])
        assert register["item_id"] == item["item_id"]
        assert register["holder"] == "KOR"
    for role in ("analyst", "duty_officer"):
        with pytest.raises(Refused) as refused:
            receiver.node.register(receiver.subject(role), item["item_id"])
        assert [r.rule for r in refused.value.decision.reasons] == ["R8"]


# --- R17: the flash lane overtakes bulk traffic ----------------------------------------------------


def test_a_flash_report_is_claimed_before_the_bulk_items_queued_ahead_of_it(receiver: Receiver) -> None:
    """R17: a flash report committed after a backlog of bulk items goes first. The flash lane's
    worker claims the report alone, ahead of every bulk item queued before it; the bulk items
    wait for the bulk lane's worker, in their own order, without the report among them."""
    node = receiver.node
    backlog = node.provide(
        receiver.subject("analyst"),
        [ItemSpec("JPN", "군사II급비밀", f"bulk {n}".encode(), purposes=("nk-missile",)) for n in range(40)],
    )
    report, _, _ = node.provide_alert(
        receiver.subject("duty_officer"), ItemSpec("JPN", "군사II급비밀", b"launch detected", purposes=("flash",)), None
    )
    worker = f"test-{uuid.uuid4().hex[:8]}"
    try:
        flash = node.claim("JPN", "flash", worker, BATCH["flash"])
        assert [r["ref"] for r in flash] == [report["item_id"]]
        bulk = [r["ref"] for r in node.claim("JPN", "bulk", worker, BATCH["bulk"])]
        queued = [i["item_id"] for i in backlog]
        assert [ref for ref in bulk if ref in set(queued)] == queued
        assert report["item_id"] not in bulk
    finally:
        node.release(worker)


HOLD = 10.0  # seconds a bulk request waits for a flash report at most (only a failing node waits it out)


@dataclass
class HeldPartner:
    """JPN's peer API in process, behind a link on which a bulk delivery is slow: each bulk
    request waits until a flash report has come through (at most ``HOLD`` seconds, so that
    a node that sends its report behind the bulk batch still finishes, and fails by order)."""

    peer_app: Any
    arrived: list[str]  # item ids, in the order the partner received and stored them
    flash_seen: asyncio.Event

    async def handle(self, request: httpx.Request) -> httpx.Response:
        lane = request.headers.get("x-gsomia-lane", "bulk")
        if request.url.path == "/peer/items" and lane == "bulk" and not self.flash_seen.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.flash_seen.wait(), HOLD)
        headers = {k: v for k, v in request.headers.items() if k.startswith("x-gsomia-")}
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.peer_app), base_url="http://jpn.test"
        ) as inner:
            response = await inner.post(request.url.path, content=request.content, headers=headers)
        if request.url.path == "/peer/items" and response.status_code == 200:
            self.arrived.extend(response.json()["receipt"]["received"])
            if lane == "flash":
                self.flash_seen.set()
        return httpx.Response(response.status_code, headers=response.headers, content=response.content)


@dataclass
class Both:
    kor: Node
    jpn: Node
    kor_users: dict[str, Subject]  # by role


@pytest.fixture(params=["sqlite", "postgresql"])
def both(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Both]:
    """Both parties' nodes in process, fresh (an empty outbox), on one backend."""
    with contextlib.ExitStack() as stack:
        pair = provisioned(stack, tmp_path, terms_only(AGREEMENT_FILE, tmp_path / "terms.toml"), request.param)
        kor, jpn = running(stack, pair["KOR"]), running(stack, pair["JPN"])
        users = {role: kor.authenticate(token) for role, token in pair["KOR"].tokens.items()}
        yield Both(kor, jpn, {role: u for role, u in users.items() if u is not None})


def test_a_flash_report_reaches_the_partner_while_a_bulk_batch_queued_before_it_is_still_on_the_way(
    both: Both,
) -> None:
    """R17: flash reports overtake bulk traffic. With a backlog of bulk items committed first
    and their batch held on a slow link, the report committed after them is the first item the
    partner receives; the bulk items follow, in the order they were committed."""
    kor, jpn = both.kor, both.jpn
    analyst, duty = both.kor_users["analyst"], both.kor_users["duty_officer"]
    backlog = kor.provide(
        analyst, [ItemSpec("JPN", "군사II급비밀", f"bulk {n}".encode(), purposes=("nk-missile",)) for n in range(40)]
    )
    report, _, _ = kor.provide_alert(duty, ItemSpec("JPN", "군사II급비밀", b"launch detected"), None)

    async def deliver() -> list[str]:
        partner = HeldPartner(create_peer_app(jpn, Broker()), [], asyncio.Event())
        delivery = Delivery(kor)
        await delivery.start()  # its workers first run at the next await: the client is swapped before
        real = delivery.clients["JPN"]
        delivery.clients["JPN"] = httpx.AsyncClient(
            base_url="https://jpn.test", transport=httpx.MockTransport(partner.handle)
        )
        await real.aclose()
        try:
            for _ in range(1200):  # until the outbox is empty (a minute at most)
                if await kor.lanes.run("control", kor.pending, "JPN") == 0:
                    break
                await asyncio.sleep(0.05)
        finally:
            await delivery.stop()
        return partner.arrived

    arrived = asyncio.run(deliver())
    assert arrived == [report["item_id"], *(i["item_id"] for i in backlog)]
