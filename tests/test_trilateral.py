"""The route between KOR and JPN (R1, R18), decided from the shipped agreement files.

With the 2016 agreement in force the two share directly. In the counterfactual of
2019-11-23 (KOR's termination notice never suspended) an item within the trilateral
arrangement's scope goes through the USA, each hop under the USA's bilateral agreement with
that party, and the USA passes it on only with the originator's approval for exactly that
item and recipient. The provider's decision, the hub's decision and the hub's egress guard
are each tested on their own.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from gsomia.core import egress, keys, policy, records, trilateral
from gsomia.core.agreement import terms
from gsomia.core.agreement.terms import Agreement
from gsomia.core.keyring import KeyHistory
from gsomia.core.label import Label, LabelInvalid
from gsomia.core.policy import Decision
from gsomia.core.trilateral import Approval

KST = ZoneInfo("Asia/Seoul")
FILES = Path(__file__).resolve().parents[1] / "agreements"
GSOMIA, TISA = "jp-kr-gsomia-2016", "us-kr-jp-tisa-2014"
KR_US, JP_US = "kr-us-gsomia-1987", "jp-us-gsomia-2007"
EXPIRY = datetime(2019, 11, 23, tzinfo=KST)
IN_FORCE = datetime(2019, 9, 1, tzinfo=KST)
ITEM, OTHER = "5f0b8d1e-0c1a-4c55-9d36-2f4b8e7a1c01", "5f0b8d1e-0c1a-4c55-9d36-2f4b8e7a1c02"


def shipped() -> dict[str, Agreement]:
    return {a.id: a for a in (terms.load(p) for p in sorted(FILES.glob("*.toml")))}


def counterfactual() -> dict[str, Agreement]:
    """The files as they are, but KOR's termination notice never suspended."""
    found = shipped()
    gsomia = found[GSOMIA]
    found[GSOMIA] = gsomia.with_notes(tuple(n for n in gsomia.notes if n.type.value == "termination_notice"))
    return found


def label(item: str = ITEM, purposes: tuple[str, ...] = ("nk-missile",), route: str = "trilateral") -> Label:
    return Label(
        item_id=item,
        agreement=TISA if route == "trilateral" else GSOMIA,
        originator="KOR",
        classification="군사II급비밀",
        releasable_to=("JPN",) if route == "direct" else ("USA", "JPN"),
        created_at=EXPIRY + timedelta(hours=1),
        purposes=purposes,
        route=route,  # type: ignore[arg-type]
    )


def test_with_the_agreement_in_force_kor_and_jpn_share_directly() -> None:
    decision, chosen = trilateral.choose(shipped(), "KOR", "JPN", ("nk-missile",), IN_FORCE)
    assert decision.permit
    assert chosen is not None
    assert (chosen.kind, chosen.agreement.id, chosen.hops) == ("direct", GSOMIA, (("KOR", "JPN"),))
    assert chosen.hub is None
    assert [r.rule for r in decision.reasons] == ["R1"]


def test_after_termination_an_item_in_scope_goes_through_the_usa_under_its_two_agreements() -> None:
    decision, chosen = trilateral.choose(counterfactual(), "KOR", "JPN", ("nk-missile",), EXPIRY + timedelta(hours=1))
    assert decision.permit
    assert chosen is not None
    assert chosen.kind == "trilateral"
    assert chosen.hub == "USA"
    assert chosen.hops == (("KOR", "USA"), ("USA", "JPN"))
    assert [c.id for c in chosen.carriers] == [KR_US, JP_US]
    assert [r.rule for r in decision.reasons] == ["R14", "R18"]  # why not direct, and why through the USA
    assert decision.obligations == ("USA holds the item until KOR approves passing it to JPN (R18)",)


def test_the_suspension_kept_the_direct_route_open_at_the_same_instant() -> None:
    _, chosen = trilateral.choose(shipped(), "KOR", "JPN", ("nk-missile",), EXPIRY + timedelta(hours=1))
    assert chosen is not None
    assert chosen.kind == "direct"


@pytest.mark.parametrize("purposes", [("training",), ("nk-missile", "training"), ()])
def test_an_item_outside_the_arrangements_scope_is_refused_naming_r18(purposes: tuple[str, ...]) -> None:
    decision, chosen = trilateral.choose(counterfactual(), "KOR", "JPN", purposes, EXPIRY + timedelta(hours=1))
    assert not decision.permit
    assert chosen is None
    assert [r.rule for r in decision.reasons] == ["R14", "R18"]
    assert "limited to nk-nuclear, nk-missile" in decision.reasons[1].text


def test_without_the_arrangement_loaded_a_terminated_agreement_is_the_only_reason() -> None:
    found = counterfactual()
    del found[TISA]
    decision, _ = trilateral.choose(found, "KOR", "JPN", ("nk-missile",), EXPIRY + timedelta(hours=1))
    assert not decision.permit
    assert [r.rule for r in decision.reasons] == ["R14"]


def test_before_2016_the_arrangement_was_the_route_and_before_2014_there_was_none() -> None:
    decision, chosen = trilateral.choose(shipped(), "KOR", "JPN", ("nk-nuclear",), datetime(2015, 6, 1, tzinfo=KST))
    assert decision.permit
    assert chosen is not None
    assert chosen.kind == "trilateral"
    decision, chosen = trilateral.choose(shipped(), "KOR", "JPN", ("nk-nuclear",), datetime(2014, 6, 1, tzinfo=KST))
    assert not decision.permit
    assert [r.rule for r in decision.reasons] == ["R13", "R13"]  # neither the agreement nor the arrangement yet


def test_a_hop_whose_carrier_is_not_in_force_closes_the_route() -> None:
    found = counterfactual()
    found[JP_US] = dataclasses.replace(found[JP_US], entry_into_force=datetime(2030, 1, 1, tzinfo=KST))
    decision, chosen = trilateral.choose(found, "KOR", "JPN", ("nk-missile",), EXPIRY + timedelta(hours=1))
    assert not decision.permit
    assert chosen is None
    assert decision.reasons[-1].rule == "R13"
    assert JP_US in decision.reasons[-1].text


LATER = EXPIRY + timedelta(hours=3)


def carrier() -> Agreement:
    return shipped()[JP_US]


def approval(item: str = ITEM, recipient: str = "JPN", by: str = "KOR") -> Approval:
    return Approval(item, recipient, by, EXPIRY + timedelta(hours=2))


def forward(approvals: list[Approval], item: Label | None = None, recipient: str = "JPN") -> Decision:
    found = counterfactual()
    return trilateral.forward(
        found[TISA], found[JP_US], item or label(), "USA", recipient, approvals, EXPIRY + timedelta(hours=3)
    )


def test_the_hub_passes_an_item_on_with_the_originators_approval_for_exactly_it() -> None:
    decision = forward([approval()])
    assert decision.permit
    assert trilateral.check_forward(carrier(), label(), "USA", "JPN", [approval()], LATER) is None


@pytest.mark.parametrize(
    "given",
    [
        [],
        [approval(item=OTHER)],  # another item
        [approval(recipient="USA")],  # another recipient
        [approval(by="JPN")],  # not the originator's
    ],
)
def test_without_an_approval_for_this_item_and_recipient_the_hub_refuses_on_both_checks(
    given: list[Approval],
) -> None:
    decision = forward(given)
    assert not decision.permit
    assert [r.rule for r in decision.reasons] == ["R18"]
    assert f"no approval by KOR to pass {ITEM} on to JPN" in decision.reasons[0].text
    guard = trilateral.check_forward(carrier(), label(), "USA", "JPN", given, LATER)
    assert guard == f"R18: no approval by KOR to pass {ITEM} on to JPN"


def test_the_hub_never_passes_on_a_direct_item_even_with_an_approval() -> None:
    direct = label(route="direct")
    decision = forward([approval()], item=direct)
    assert not decision.permit
    assert "R18" in [r.rule for r in decision.reasons]
    assert trilateral.check_forward(carrier(), direct, "USA", "JPN", [approval()], LATER) is not None


def test_the_hub_does_not_pass_on_an_item_outside_the_scope_or_back_to_its_originator() -> None:
    outside = label(purposes=("training",))
    assert not forward([approval()], item=outside).permit
    back = forward([approval(recipient="KOR")], recipient="KOR")
    assert not back.permit
    back_guard = trilateral.check_forward(carrier(), label(), "USA", "KOR", [approval(recipient="KOR")], LATER)
    assert back_guard is not None


def test_only_the_hub_passes_items_on() -> None:
    found = counterfactual()
    decision = trilateral.forward(
        found[TISA], found[JP_US], label(), "KOR", "JPN", [approval()], EXPIRY + timedelta(hours=3)
    )
    assert not decision.permit
    assert decision.reasons[0].text == "KOR is not the hub of us-kr-jp-tisa-2014"


def test_an_approval_given_after_the_instant_does_not_serve_and_a_closed_arrangement_forwards_nothing() -> None:
    late = Approval(ITEM, "JPN", "KOR", LATER + policy.CLOCK_SKEW + timedelta(seconds=1))
    assert not forward([late]).permit
    assert trilateral.check_forward(carrier(), label(), "USA", "JPN", [late], LATER) is not None
    # The originator's clock may run a little ahead of the hub's: its approval still serves.
    skewed = Approval(ITEM, "JPN", "KOR", LATER + timedelta(seconds=1))
    assert forward([skewed]).permit
    assert trilateral.check_forward(carrier(), label(), "USA", "JPN", [skewed], LATER) is None
    found = counterfactual()
    closed = dataclasses.replace(found[TISA], entry_into_force=datetime(2030, 1, 1, tzinfo=KST))
    decision = trilateral.forward(closed, found[JP_US], label(), "USA", "JPN", [approval()], LATER)
    assert not decision.permit
    assert decision.reasons[0].rule == "R13"


def test_the_hubs_guard_checks_release_carrier_and_never_passes_on_its_own_items() -> None:
    assert trilateral.check_forward(carrier(), label(), "USA", "JPN", [approval()], LATER) is None
    only_usa = dataclasses.replace(label(), releasable_to=("USA",))
    assert (
        trilateral.check_forward(carrier(), only_usa, "USA", "JPN", [approval()], LATER) == "R5: not releasable to JPN"
    )
    wrong = shipped()[KR_US]
    assert trilateral.check_forward(wrong, label(), "USA", "JPN", [approval()], LATER) is not None
    own = dataclasses.replace(label(), originator="USA")
    assert trilateral.check_forward(carrier(), own, "USA", "JPN", [approval(by="USA")], LATER) is not None


def test_a_partner_other_than_the_hub_delivers_nothing_under_the_arrangement() -> None:
    from_jpn = dataclasses.replace(label(), originator="JPN", releasable_to=("USA", "KOR"))
    decision = policy.receive(shipped()[TISA], from_jpn, "KOR", "JPN", LATER)
    assert not decision.permit
    assert decision.reasons[0].text == "under us-kr-jp-tisa-2014 items travel through USA only"
    to_hub = policy.receive(shipped()[TISA], label(), "USA", "KOR", LATER)
    assert to_hub.permit
    outside = policy.receive(shipped()[TISA], label(purposes=("training",)), "USA", "KOR", LATER)
    assert not outside.permit
    assert outside.reasons[0].rule == "R18"


@pytest.mark.parametrize(
    "raw",
    [b"[" * 100_000, b'{"v":' + b"9" * 5000 + b"}", b"\xff", b'{"v":1}'],
    ids=["deeply nested", "over-long integer", "not UTF-8", "not a label"],
)
def test_a_label_block_that_is_not_a_label_is_refused_as_one(raw: bytes) -> None:
    # What a partner's envelope may carry; the receiver reads it before choosing an opener.
    with pytest.raises(LabelInvalid):
        Label.from_bytes(raw)


def test_the_originator_leaves_the_hubs_own_hop_to_the_hub() -> None:
    """KOR does not hold the USA–JPN agreement: it judges its own hop, the USA the other."""
    found = counterfactual()
    del found[JP_US]
    decision, chosen = trilateral.choose(found, "KOR", "JPN", ("nk-missile",), EXPIRY + timedelta(hours=1))
    assert decision.permit
    assert chosen is not None
    assert chosen.kind == "trilateral"
    assert [c.id for c in chosen.carriers] == [KR_US]
    del found[KR_US]
    decision, chosen = trilateral.choose(found, "KOR", "JPN", ("nk-missile",), EXPIRY + timedelta(hours=1))
    assert not decision.permit
    assert chosen is None
    assert any("carries KOR–USA" in r.text for r in decision.reasons)


def test_the_originators_guard_lets_a_trilateral_item_go_to_the_hub_alone() -> None:
    found = counterfactual()
    item = label()
    assert egress.check_named(found, item, "USA", "KOR") is None
    to_jpn = egress.check_named(found, item, "JPN", "KOR")
    assert to_jpn is not None
    assert to_jpn.startswith("R18")
    outside = egress.check_named(found, label(purposes=("trade",)), "USA", "KOR")
    assert outside is not None
    assert outside.startswith("R18")
    del found[KR_US]  # the hop to the hub is carried by nothing this node holds
    uncarried = egress.check_named(found, item, "USA", "KOR")
    assert uncarried is not None
    assert uncarried.startswith("R18")


def test_the_recipient_keeps_another_partys_item_only_from_the_hub() -> None:
    found = counterfactual()
    at = LATER + timedelta(minutes=1)
    from_hub = policy.receive(found[TISA], label(), "JPN", "USA", at)
    assert from_hub.permit
    assert from_hub.reasons[0].rule == "R18"
    assert not policy.receive(found[TISA], label(route="direct"), "JPN", "USA", at).permit
    assert not policy.receive(found[TISA], label(purposes=("trade",)), "JPN", "USA", at).permit
    not_hub = policy.receive(found[TISA], dataclasses.replace(label(), originator="USA"), "JPN", "KOR", at)
    assert not not_hub.permit
    assert not_hub.reasons[0].rule == "R1"


def test_a_hub_relays_only_the_originators_approval_naming_the_recipient() -> None:
    kor = keys.generate("KOR", "classic")
    chains = {"KOR": KeyHistory.start(kor.public())}
    at = LATER

    def made(kind: str, **fields: str) -> dict[str, object]:
        return records.make(kor, kind, "KOR", "kor.authority", ITEM, at, **fields).as_dict()

    relayed = records.verify_relayed(made("forward_approval", recipient="JPN", hub="USA"), chains, "USA", "JPN")
    assert (relayed.kind, relayed.by, relayed.body["recipient"]) == ("forward_approval", "KOR", "JPN")
    for data in (
        made("forward_approval", recipient="USA", hub="USA"),  # names another recipient
        made("forward_approval", recipient="JPN", hub="CHN"),  # through another hub
        made("destruction", method="shredded"),  # not an approval
    ):
        with pytest.raises(records.RecordInvalid, match="relays only an approval"):
            records.verify_relayed(data, chains, "USA", "JPN")
    with pytest.raises(records.RecordInvalid, match="relays only a record by a party this node knows"):
        records.verify_relayed(made("forward_approval", recipient="JPN", hub="USA"), {}, "USA", "JPN")


def test_the_recipient_takes_an_item_from_the_hub_only_with_the_originators_approval_on_hand() -> None:
    assert trilateral.accept_relayed(label(), "USA", "JPN", [approval()]).permit
    for given in ([], [approval(item=OTHER)], [approval(recipient="USA")], [approval(by="USA")]):
        refused = trilateral.accept_relayed(label(), "USA", "JPN", given)
        assert not refused.permit
        assert refused.reasons[0].text == f"no approval by KOR to pass {ITEM} on to JPN is on hand"


def test_a_releasability_that_leaves_the_hub_out_is_refused_not_widened() -> None:
    decision, released = trilateral.release_through("USA", "JPN", ("JPN",))
    assert not decision.permit
    assert released == ()
    assert decision.reasons[0].rule == "R5"
    assert trilateral.release_through("USA", "JPN", ())[1] == ("USA", "JPN")
    assert trilateral.release_through("USA", "JPN", ("USA", "JPN"))[1] == ("USA", "JPN")


def test_the_hubs_guard_checks_the_arrangement_itself_now() -> None:
    found = counterfactual()
    assert trilateral.check_arrangement(found[TISA], label(), "USA", LATER) is None
    assert trilateral.check_arrangement(found[TISA], label(), "KOR", LATER) == f"R18: KOR is not the hub of {TISA}"
    closed = dataclasses.replace(found[TISA], entry_into_force=datetime(2030, 1, 1, tzinfo=KST), cache={})
    assert (trilateral.check_arrangement(closed, label(), "USA", LATER) or "").startswith("R13")
    outside = trilateral.check_arrangement(found[TISA], label(purposes=("training",)), "USA", LATER)
    assert (outside or "").startswith("R18")
