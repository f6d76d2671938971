"""Access decisions (R3, R5-R7, R9, R10, R13-R15) and security labels (R3, R4).

Every rule the policy enforces has a permit case and deny cases; a deny must cite
the rule it rests on. Each deny case changes one fact of a request that is
otherwise permitted (the baseline requests have their own permit tests), so the
denial can only come from that fact. Expected markings come from the 2016
agreement file, written out by hand: KOR 군사II급비밀 = JPN 極秘 or 特定秘密
(received as 極秘), KOR 군사III급비밀 = JPN 秘; 군사I급비밀 and 대외비 are outside.
"""

from __future__ import annotations

import json
import unicodedata
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gsomia.core.agreement import Agreement, NoteType, State, load, status
from gsomia.core.label import Label, LabelInvalid, display, marking_for, narrows, validate
from gsomia.core.policy import Action, Consent, Contractor, Decision, Role, Subject, decide
from gsomia.core.rules import RULES

ROOT = Path(__file__).resolve().parents[1]
AGREEMENT = load(ROOT / "agreements" / "jp-kr-gsomia-2016.toml")
TISA = load(ROOT / "agreements" / "us-kr-jp-tisa-2014.toml")
# What would have happened without KOR's suspension: terminated 2019-11-23 00:00 KST.
TERMINATED = AGREEMENT.with_notes(
    tuple(n for n in AGREEMENT.notes if n.type not in (NoteType.SUSPEND, NoteType.WITHDRAW))
)
KST = timezone(timedelta(hours=9))
ITEM = "6f1d4c2e-8a3b-4f5e-9c7d-1b2a3c4d5e6f"
OTHER_ITEM = "0a9b8c7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d"
COMPARTMENT = "NK-MISSILE"
PURPOSE = "missile-warning"


def kst(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=KST)


IN_FORCE = kst(2018, 6, 1)  # an ordinary instant: in force, no notice pending
SUSPENDED = kst(2020, 1, 1)  # KOR's termination notice is suspended (R15)
EXPIRY = kst(2019, 11, 23)  # when the counterfactual agreement terminates


def label(**changes: Any) -> Label:
    """A KOR 군사II급비밀 item releasable to JPN, in one compartment."""
    fields: dict[str, Any] = {
        "item_id": ITEM,
        "agreement": AGREEMENT.id,
        "originator": "KOR",
        "classification": "군사II급비밀",
        "releasable_to": ("KOR", "JPN"),
        "created_at": kst(2018, 5, 1),
        "compartments": (COMPARTMENT,),
    }
    fields.update(changes)
    return Label(**fields)


def subject(**changes: Any) -> Subject:
    """A JPN analyst cleared 極秘 with need-to-know for the item's compartment."""
    fields: dict[str, Any] = {
        "id": "jpn-analyst-1",
        "party": "JPN",
        "role": Role.ANALYST,
        "clearance": "極秘",
        "need_to_know": frozenset({COMPARTMENT}),
    }
    fields.update(changes)
    return Subject(**fields)


def kor_authority(**changes: Any) -> Subject:
    """KOR's (the originator's) security authority, cleared 군사II급비밀."""
    fields: dict[str, Any] = {
        "id": "kor-sa-1",
        "party": "KOR",
        "role": Role.SECURITY_AUTHORITY,
        "clearance": "군사II급비밀",
    }
    return subject(**{**fields, **changes})


def jpn_authority(**changes: Any) -> Subject:
    """JPN's (the recipient's) security authority, cleared 極秘."""
    return subject(**{"id": "jpn-sa-1", "role": Role.SECURITY_AUTHORITY, **changes})


def consent(**changes: Any) -> Consent:
    fields: dict[str, Any] = {
        "item_id": ITEM,
        "recipient": "USA",
        "purpose": PURPOSE,
        "granted_by": "KOR",
        "granted_at": kst(2018, 5, 15),
    }
    fields.update(changes)
    return Consent(**fields)


def ask(
    who: Subject,
    action: Action | str,
    item: Label | None = None,
    *,
    at: datetime = IN_FORCE,
    agreement: Agreement = AGREEMENT,
    consents: tuple[Consent, ...] = (),
    **kwargs: Any,
) -> Decision:
    item = label() if item is None else item
    return decide(agreement, who, action, item, status(agreement, at), consents, at, **kwargs)


def rules_of(decision: Decision) -> set[str]:
    return {r.rule for r in decision.reasons}


def permitted(decision: Decision, *rules: str) -> None:
    assert decision.permit, [str(r) for r in decision.reasons]
    assert decision.reasons, "a permit names the rules it rests on"
    assert set(rules) <= rules_of(decision), [str(r) for r in decision.reasons]


def denied(decision: Decision, rule: str, *, only: bool = False) -> None:
    assert not decision.permit, [str(r) for r in decision.reasons]
    assert decision.reasons, "a deny always says why"
    assert rule in rules_of(decision), [str(r) for r in decision.reasons]
    if only:
        assert rules_of(decision) == {rule}, [str(r) for r in decision.reasons]
    assert all(r.rule in RULES for r in decision.reasons)


def provide(who: Subject | None = None, **kwargs: Any) -> Decision:
    kwargs.setdefault("recipient", "JPN")
    return ask(who or kor_authority(), Action.PROVIDE, **kwargs)


def release(who: Subject | None = None, **kwargs: Any) -> Decision:
    kwargs.setdefault("recipient", "USA")
    kwargs.setdefault("purpose", PURPOSE)
    kwargs.setdefault("at", kst(2018, 6, 1))
    return ask(who or jpn_authority(), Action.RELEASE_TO_THIRD_PARTY, **kwargs)


# --- the baseline requests are permitted ---------------------------------------------


def test_baseline_read_is_permitted_with_r7_and_records_access() -> None:
    decision = ask(subject(), Action.READ)
    permitted(decision, "R7")
    assert decision.effect == "permit"
    assert any("R8" in o for o in decision.obligations)


def test_baseline_provide_is_permitted_directly_while_in_force() -> None:
    decision = provide()
    permitted(decision, "R1", "R13")
    assert "R14" not in rules_of(decision)
    assert "R15" not in rules_of(decision)


# --- R3: markings outside the agreement, labels for another agreement ------------------


def _everything_else_permits(action: Action) -> dict[str, Any]:
    """Arguments under which ``action`` on the baseline SECRET item is permitted."""
    if action is Action.PROVIDE:
        return {"who": kor_authority(), "recipient": "JPN"}
    if action is Action.RECLASSIFY:
        return {"who": kor_authority(), "new_classification": "군사III급비밀"}
    if action is Action.RELEASE_TO_THIRD_PARTY:
        return {"who": jpn_authority(), "recipient": "USA", "purpose": PURPOSE, "consents": (consent(),)}
    if action is Action.DESTROY:
        return {"who": jpn_authority()}
    return {"who": subject()}


@pytest.mark.parametrize("action", list(Action))
def test_every_action_is_permitted_on_a_secret_item(action: Action) -> None:
    kwargs = _everything_else_permits(action)
    permitted(ask(kwargs.pop("who"), action, label(), **kwargs))


@pytest.mark.parametrize("action", list(Action))
@pytest.mark.parametrize(
    ("originator", "marking"),
    [("KOR", "군사I급비밀"), ("KOR", "대외비"), ("JPN", "注意"), ("KOR", "極秘"), ("KOR", "TOP SECRET")],
)
def test_markings_outside_the_agreement_are_denied_for_every_action(
    action: Action, originator: str, marking: str
) -> None:
    # The same request on a SECRET item is permitted (test above): only the marking differs.
    kwargs = _everything_else_permits(action)
    decision = ask(kwargs.pop("who"), action, label(originator=originator, classification=marking), **kwargs)
    denied(decision, "R3", only=True)
    assert marking in decision.reasons[0].text


@pytest.mark.parametrize("action", list(Action))
def test_a_label_for_another_agreement_is_denied(action: Action) -> None:
    kwargs = _everything_else_permits(action)
    decision = ask(kwargs.pop("who"), action, label(agreement=TISA.id), **kwargs)
    denied(decision, "R3", only=True)
    assert TISA.id in decision.reasons[0].text


def test_confidential_items_are_shared_at_their_own_level() -> None:
    jpn_item = label(originator="JPN", classification="秘", releasable_to=("JPN", "KOR"))
    kor_reader = subject(id="kor-analyst-1", party="KOR", clearance="군사III급비밀")
    permitted(ask(kor_reader, Action.READ, jpn_item), "R7")


# --- R5: third parties and purposes ---------------------------------------------------


def test_release_with_the_originators_consent_for_item_recipient_and_purpose() -> None:
    decision = release(consents=(consent(),))
    permitted(decision, "R5")
    assert any("R5" in o for o in decision.obligations)


def test_release_without_any_consent_is_denied() -> None:
    denied(release(), "R5", only=True)


@pytest.mark.parametrize(
    "mismatch",
    [
        {"item_id": OTHER_ITEM},
        {"recipient": "GBR"},
        {"purpose": "sanctions-monitoring"},
        {"granted_by": "JPN"},  # the recipient cannot approve its own release
    ],
    ids=["other-item", "other-recipient", "other-purpose", "not-the-originator"],
)
def test_release_with_a_consent_that_does_not_match_is_denied(mismatch: dict[str, str]) -> None:
    denied(release(consents=(consent(**mismatch),)), "R5", only=True)


def test_release_only_matches_a_consent_on_all_three_fields_together() -> None:
    # Each field is matched by some consent, but no single consent matches all.
    partial = (
        consent(recipient="GBR"),
        consent(purpose="sanctions-monitoring"),
        consent(item_id=OTHER_ITEM),
    )
    denied(release(consents=partial), "R5")
    permitted(release(consents=(*partial, consent())), "R5")


def test_a_consent_dated_after_the_release_is_ignored() -> None:
    late = consent(granted_at=kst(2018, 7, 1))
    denied(release(consents=(late,), at=kst(2018, 6, 30, 23, 59, 59)), "R5", only=True)
    permitted(release(consents=(late,), at=kst(2018, 7, 1)), "R5")


def test_release_is_made_by_a_security_authority_and_names_recipient_and_purpose() -> None:
    denied(release(subject(), consents=(consent(),)), "R5", only=True)
    denied(release(consents=(consent(),), purpose=None), "R5", only=True)
    denied(release(consents=(consent(),), recipient=None), "R5", only=True)


def test_the_originator_releases_its_own_item_without_consent() -> None:
    permitted(release(kor_authority()), "R5")


def test_a_party_the_item_is_not_releasable_to_cannot_release_it_even_with_consent() -> None:
    kor_only = label(releasable_to=("KOR",))
    denied(release(consents=(consent(),), item=kor_only), "R5", only=True)


def test_read_is_denied_to_a_party_the_item_is_not_releasable_to() -> None:
    kor_only = label(releasable_to=("KOR",))
    denied(ask(subject(), Action.READ, kor_only), "R5")
    permitted(ask(subject(id="kor-analyst-1", party="KOR", clearance="군사II급비밀"), Action.READ, kor_only), "R7")


def test_provide_to_a_non_party_is_denied() -> None:
    widened = label(releasable_to=("KOR", "JPN", "USA"))  # even if the label (wrongly) names it
    decision = provide(item=widened, recipient="USA")
    denied(decision, "R5", only=True)
    assert "third party" in decision.reasons[0].text


def test_provide_of_an_item_not_releasable_to_the_recipient_is_denied() -> None:
    denied(provide(item=label(releasable_to=("KOR",))), "R5", only=True)


def test_only_the_originator_provides_an_item() -> None:
    denied(provide(jpn_authority(), recipient="KOR"), "R5")


def test_read_for_a_purpose_the_provider_did_not_permit_is_denied() -> None:
    item = label(purposes=(PURPOSE,))
    reader = subject(need_to_know=frozenset({COMPARTMENT, PURPOSE}))
    permitted(ask(reader, Action.READ, item, purpose=PURPOSE), "R7")
    denied(ask(reader, Action.READ, item, purpose="sanctions-monitoring"), "R5", only=True)


# --- R6: only the originator's security authority reclassifies -------------------------


def test_the_originators_security_authority_reclassifies() -> None:
    decision = ask(kor_authority(), Action.RECLASSIFY, new_classification="군사III급비밀")
    permitted(decision, "R6")
    assert any("every copy" in o for o in decision.obligations)


def test_the_recipient_cannot_reclassify() -> None:
    denied(ask(jpn_authority(), Action.RECLASSIFY, new_classification="秘"), "R6", only=True)
    denied(ask(jpn_authority(), Action.RECLASSIFY, new_classification="군사III급비밀"), "R6", only=True)


def test_an_analyst_of_the_originator_cannot_reclassify() -> None:
    analyst = kor_authority(role=Role.ANALYST)
    denied(ask(analyst, Action.RECLASSIFY, new_classification="군사III급비밀"), "R6", only=True)


def test_reclassification_to_a_marking_outside_the_agreement_is_denied() -> None:
    denied(ask(kor_authority(), Action.RECLASSIFY, new_classification="군사I급비밀"), "R3", only=True)


def test_reclassification_needs_a_clearance_for_the_item() -> None:
    low = kor_authority(clearance="군사III급비밀")
    denied(ask(low, Action.RECLASSIFY, new_classification="군사III급비밀"), "R7", only=True)


# --- R7: clearance at the equivalent level, need-to-know, rank alone gives nothing -----


@pytest.mark.parametrize(
    ("party", "clearance", "permit"),
    [
        ("JPN", "注意", False),
        ("JPN", "秘", False),  # CONFIDENTIAL: below the item's SECRET
        ("JPN", "極秘", True),
        ("JPN", "特定秘密", True),
        ("KOR", "대외비", False),
        ("KOR", "군사III급비밀", False),
        ("KOR", "군사II급비밀", True),
        ("KOR", "군사I급비밀", True),
    ],
)
def test_read_needs_a_clearance_at_the_equivalent_level_in_the_readers_scheme(
    party: str, clearance: str, permit: bool
) -> None:
    reader = subject(id=f"{party}-reader", party=party, clearance=clearance)
    decision = ask(reader, Action.READ)
    if permit:
        permitted(decision, "R7")
    else:
        denied(decision, "R7", only=True)
        assert clearance in decision.reasons[0].text


def test_a_jpn_tokutei_himitsu_item_needs_the_same_in_jpn_and_secret_in_kor() -> None:
    item = label(originator="JPN", classification="特定秘密", releasable_to=("JPN", "KOR"))
    denied(ask(subject(clearance="極秘"), Action.READ, item), "R7", only=True)
    permitted(ask(subject(clearance="特定秘密"), Action.READ, item), "R7")
    permitted(ask(subject(party="KOR", clearance="군사II급비밀"), Action.READ, item), "R7")
    denied(ask(subject(party="KOR", clearance="군사III급비밀"), Action.READ, item), "R7", only=True)


def test_a_clearance_from_another_scheme_does_not_count() -> None:
    # A JPN official holding a KOR marking (or a US one) holds no JPN clearance.
    denied(ask(subject(clearance="군사I급비밀"), Action.READ), "R7", only=True)
    denied(ask(subject(clearance="TOP SECRET"), Action.READ), "R7", only=True)


def test_read_needs_need_to_know_for_every_compartment() -> None:
    two = label(compartments=(COMPARTMENT, "NK-NUCLEAR"))
    denied(ask(subject(), Action.READ, two), "R7", only=True)
    permitted(ask(subject(need_to_know=frozenset({COMPARTMENT, "NK-NUCLEAR"})), Action.READ, two), "R7")
    denied(ask(subject(need_to_know=frozenset({"NK-NUCLEAR"})), Action.READ), "R7", only=True)


def test_read_needs_need_to_know_for_a_permitted_purpose() -> None:
    item = label(purposes=(PURPOSE,), compartments=())
    denied(ask(subject(need_to_know=frozenset({"other-duty"})), Action.READ, item), "R7", only=True)
    permitted(ask(subject(need_to_know=frozenset({PURPOSE})), Action.READ, item), "R7")


@pytest.mark.parametrize("role", [Role.SECURITY_AUTHORITY, Role.AUDITOR])
def test_privileged_roles_without_clearance_or_need_to_know_are_denied(role: Role) -> None:
    uncompartmented = label(compartments=())
    permitted(ask(subject(role=role), Action.READ, uncompartmented), "R7")
    denied(ask(subject(role=role, clearance=None), Action.READ, uncompartmented), "R7", only=True)
    denied(ask(subject(role=role, need_to_know=frozenset()), Action.READ, uncompartmented), "R7", only=True)
    denied(ask(subject(role=role, need_to_know=frozenset()), Action.READ), "R7", only=True)


@pytest.mark.parametrize("rank", ["General", "Chief of Staff", "Minister of Defense"])
def test_rank_alone_never_gives_access(rank: str) -> None:
    for who in (
        subject(rank=rank, clearance=None),
        subject(rank=rank, need_to_know=frozenset()),
        subject(rank=rank, clearance="秘"),
        kor_authority(rank=rank, clearance=None),
    ):
        denied(ask(who, Action.READ), "R7")
    # and it takes nothing away either: the decision is the one without a rank
    assert ask(subject(rank=rank), Action.READ) == ask(subject(), Action.READ)


# --- R10: contractors ------------------------------------------------------------------


def test_cleared_contractor_staff_with_a_responsible_official_may_read() -> None:
    staff = subject(contractor=Contractor("Mitsubishi Electric, Kamakura", True, "Facility Security Officer"))
    permitted(ask(staff, Action.READ), "R7")


def test_contractor_facility_without_clearance_is_denied() -> None:
    staff = subject(contractor=Contractor("Kamakura works", False, "Facility Security Officer"))
    denied(ask(staff, Action.READ), "R10", only=True)


@pytest.mark.parametrize("official", [None, ""])
def test_contractor_facility_without_a_responsible_official_is_denied(official: str | None) -> None:
    staff = subject(contractor=Contractor("Kamakura works", True, official))
    denied(ask(staff, Action.READ), "R10", only=True)


def test_an_uncleared_contractor_cannot_provide_either() -> None:
    staff = kor_authority(contractor=Contractor("Hanwha, Changwon", False, "FSO"))
    denied(provide(staff), "R10", only=True)


# --- R13 / R14: before entry into force, after termination -----------------------------


def test_provide_before_entry_into_force_is_denied_citing_r13() -> None:
    decision = provide(at=kst(2016, 11, 22, 23, 59, 59))
    denied(decision, "R13", only=True)
    permitted(provide(at=kst(2016, 11, 23)), "R13")


def test_provide_after_termination_is_denied_citing_r14() -> None:
    for at in (EXPIRY, kst(2020, 1, 1), kst(2025, 6, 1)):
        decision = provide(at=at, agreement=TERMINATED)
        denied(decision, "R14", only=True)
        assert "terminated at 2019-11-23 00:00 KST" in decision.reasons[0].text  # the instant, in the agreement's zone


def test_the_release_instant_decides_an_item_in_flight_at_termination() -> None:
    # Edge case 4: released one second before expiry it is provided under the agreement.
    permitted(provide(at=EXPIRY - timedelta(seconds=1), agreement=TERMINATED), "R13")
    denied(provide(at=EXPIRY, agreement=TERMINATED), "R14", only=True)


def test_an_item_provided_before_termination_stays_readable_and_protected_after() -> None:
    provided = label(created_at=kst(2019, 6, 1))
    assert provide(item=provided, at=kst(2019, 6, 1), agreement=TERMINATED).permit
    after = ask(subject(), Action.READ, provided, at=kst(2021, 3, 1), agreement=TERMINATED)
    permitted(after, "R7", "R14")
    before = ask(subject(), Action.READ, provided, at=kst(2019, 7, 1), agreement=TERMINATED)
    assert "R14" not in rules_of(before)
    # ... and still under R7 after termination: an uncleared reader is denied.
    denied(
        ask(subject(clearance="秘"), Action.READ, provided, at=kst(2021, 3, 1), agreement=TERMINATED),
        "R7",
        only=True,
    )


# --- R15: a suspended termination notice ---------------------------------------------


def test_provide_is_permitted_while_termination_is_suspended_citing_r15() -> None:
    assert status(AGREEMENT, SUSPENDED).state is State.TERMINATION_SUSPENDED
    decision = provide(at=SUSPENDED)
    permitted(decision, "R13", "R15")
    # the same instant without the suspension: terminated
    denied(provide(at=SUSPENDED, agreement=TERMINATED), "R14", only=True)


def test_no_r15_reason_while_the_notice_is_merely_pending() -> None:
    decision = provide(at=kst(2019, 10, 1))
    permitted(decision, "R13")
    assert "R15" not in rules_of(decision)


# --- R9: reproduction, translation, destruction; transmission roles ----------------------


@pytest.mark.parametrize("action", [Action.REPRODUCE, Action.TRANSLATE])
def test_copies_and_translations_are_controlled_and_recorded(action: Action) -> None:
    decision = ask(subject(), action)
    permitted(decision, "R7", "R9")
    assert any("inventory" in o for o in decision.obligations)
    denied(ask(subject(clearance="秘"), action), "R7", only=True)
    denied(ask(subject(need_to_know=frozenset()), action), "R7", only=True)


def test_destruction_is_carried_out_by_the_security_authority() -> None:
    permitted(ask(jpn_authority(), Action.DESTROY), "R9")
    denied(ask(subject(), Action.DESTROY), "R9", only=True)
    denied(ask(jpn_authority(clearance="秘"), Action.DESTROY), "R7", only=True)
    denied(ask(jpn_authority(), Action.DESTROY, label(releasable_to=("KOR",))), "R5", only=True)


def test_an_auditor_does_not_transmit_items() -> None:
    denied(provide(kor_authority(role=Role.AUDITOR)), "R9", only=True)


@pytest.mark.parametrize("action", ["print", "READ", "", "declassify"])
def test_an_unknown_action_is_denied(action: str) -> None:
    denied(ask(subject(), action), "R9", only=True)


def test_actions_may_be_given_as_text() -> None:
    assert ask(subject(), "read") == ask(subject(), Action.READ)


def test_a_decision_explains_itself_with_citations() -> None:
    data = ask(subject(clearance="秘"), Action.READ).as_dict()
    assert data["decision"] == "deny"
    assert data["reasons"] == [
        {
            "rule": "R7",
            "text": "clearance 秘 is below 極秘, the equivalent level of this item",
            "cite": "R7 (Art. 7)",
        }
    ]


# --- labels: canonical bytes (one label, one byte string) ------------------------------


def full_label() -> Label:
    return label(
        purposes=(PURPOSE, "ballistic-analysis"),
        compartments=("NK-NUCLEAR", COMPARTMENT),
        review_at=kst(2028, 5, 1),
        route="direct",
    )


def test_canonical_bytes_round_trip() -> None:
    original = full_label()
    raw = original.to_bytes()
    again = Label.from_bytes(raw)
    assert again == original
    assert again.to_bytes() == raw
    decoded = json.loads(raw)
    assert list(decoded) == sorted(decoded)
    assert decoded["classification"] == "군사II급비밀"  # UTF-8, not \u escapes
    assert decoded["purposes"] == ["ballistic-analysis", PURPOSE]
    assert decoded["created_at"] == "2018-04-30T15:00:00.000000Z"


def test_equal_labels_spelled_differently_encode_the_same() -> None:
    a = label(releasable_to=("JPN", "KOR", "JPN"), compartments=("B", "A"), created_at=kst(2018, 5, 1))
    b = label(
        releasable_to=("KOR", "JPN"),
        compartments=("A", "B", "A"),
        created_at=datetime(2018, 4, 30, 15, tzinfo=UTC),  # the same instant, another zone
        classification=unicodedata.normalize("NFD", "군사II급비밀"),
    )
    assert a.to_bytes() == b.to_bytes()
    assert b.classification == "군사II급비밀"


def _respell(raw: bytes, **dumps: Any) -> bytes:
    return json.dumps(json.loads(raw), ensure_ascii=False, **dumps).encode("utf-8")


@pytest.mark.parametrize(
    "respell",
    [
        pytest.param(lambda raw: _respell(raw, sort_keys=True), id="default-separators"),
        pytest.param(lambda raw: _respell(raw, sort_keys=True, indent=1, separators=(",", ":")), id="indented"),
        pytest.param(lambda raw: raw + b"\n", id="trailing-newline"),
        pytest.param(lambda raw: b" " + raw, id="leading-space"),
        pytest.param(
            lambda raw: json.dumps(
                dict(reversed(list(json.loads(raw).items()))), separators=(",", ":"), ensure_ascii=False
            ).encode("utf-8"),
            id="reordered-keys",
        ),
        pytest.param(
            lambda raw: json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":")).encode("utf-8"),
            id="ascii-escaped",
        ),
        pytest.param(
            lambda raw: unicodedata.normalize("NFD", raw.decode("utf-8")).encode("utf-8"),
            id="NFD-hangul",
        ),
    ],
)
def test_from_bytes_refuses_a_non_canonical_spelling(respell: Any) -> None:
    raw = full_label().to_bytes()
    other = respell(raw)
    assert other != raw
    assert json.loads(other) == json.loads(raw) or unicodedata.normalize("NFC", other.decode()) == raw.decode()
    with pytest.raises(LabelInvalid, match="canonical"):
        Label.from_bytes(other)


@pytest.mark.parametrize(
    "spelling",
    [ITEM.upper(), "{" + ITEM + "}", "urn:uuid:" + ITEM, ITEM.replace("-", "")],
    ids=["upper-case", "braces", "urn", "bare-hex"],
)
def test_an_item_id_has_one_spelling(spelling: str) -> None:
    # The same UUID spelled another way would give the same item a second canonical label.
    with pytest.raises(LabelInvalid, match="canonical"):
        label(item_id=spelling)
    raw = label().to_bytes().replace(ITEM.encode(), spelling.encode())
    with pytest.raises(LabelInvalid, match="canonical"):
        Label.from_bytes(raw)


def _uuid_spelling_is_canonical(text: str) -> bool:
    import uuid

    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


@given(
    st.one_of(
        st.uuids().map(str),
        st.uuids().map(lambda u: str(u).upper()),
        st.text(alphabet="0123456789abcdefABCDEF-{}:urn\n ", min_size=30, max_size=46),
        st.uuids().map(lambda u: str(u)[:-1] + "\u0661"),  # an Arabic-Indic digit at the end
    )
)
def test_an_item_id_is_accepted_exactly_when_it_is_a_uuid_in_its_one_spelling(item_id: str) -> None:
    """Labels take the canonical UUID spelling at a glance and ask ``uuid`` why anything else fails."""
    if _uuid_spelling_is_canonical(item_id):
        assert label(item_id=item_id).item_id == item_id
        assert Label.from_bytes(label(item_id=item_id).to_bytes()).item_id == item_id
    else:
        with pytest.raises(LabelInvalid):
            label(item_id=item_id)


@given(
    st.datetimes(
        min_value=datetime(1, 1, 2),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=9)), timezone(timedelta(hours=-3, minutes=-30))]),
    )
)
def test_a_label_of_any_instant_reads_back_the_same_twice(created: datetime) -> None:
    """Checked instants are remembered: a second reading of the same bytes gives the same label.
    An instant before the year 1000, whose spelling would not read back, is refused when made."""
    if created.astimezone(UTC).year < 1000:
        with pytest.raises(LabelInvalid, match="before the year 1000"):
            label(created_at=created)
        return
    raw = label(created_at=created).to_bytes()
    first, second = Label.from_bytes(raw), Label.from_bytes(raw)
    assert first == second == label(created_at=created)
    assert first.created_at == created


@pytest.mark.parametrize("raw", [b"\xff\xfe", b"{", b"[]", b'{"v":1}'])
def test_from_bytes_refuses_what_is_not_a_label(raw: bytes) -> None:
    with pytest.raises(LabelInvalid):
        Label.from_bytes(raw)


# --- labels: markings under the agreement (R3, R4) ------------------------------------


def test_validate_returns_the_agreement_level() -> None:
    assert validate(label(), AGREEMENT).name == "SECRET"
    assert validate(label(originator="JPN", classification="秘"), AGREEMENT).name == "CONFIDENTIAL"


@pytest.mark.parametrize(
    "changes",
    [
        {"classification": "군사I급비밀"},
        {"classification": "대외비"},
        {"releasable_to": ("KOR", "USA")},
        {"agreement": TISA.id},
        {"originator": "USA", "classification": "SECRET"},
    ],
)
def test_validate_refuses_labels_outside_the_agreement(changes: dict[str, Any]) -> None:
    with pytest.raises(LabelInvalid):
        validate(label(**changes), AGREEMENT)


def test_the_recipient_marks_a_kor_secret_item_極秘() -> None:
    item = label()
    assert marking_for(item, AGREEMENT, "JPN") == "極秘"
    assert marking_for(item, AGREEMENT, "KOR") == "군사II급비밀"
    assert display(item, AGREEMENT, "JPN") == "極秘 (provided by KOR as 군사II급비밀 under jp-kr-gsomia-2016)"
    assert display(item, AGREEMENT, "KOR") == "군사II급비밀"


@pytest.mark.parametrize(
    ("classification", "kor"),
    [("特定秘密", "군사II급비밀"), ("極秘", "군사II급비밀"), ("秘", "군사III급비밀")],
)
def test_the_recipient_marks_jpn_items_with_the_kor_equivalent(classification: str, kor: str) -> None:
    item = label(originator="JPN", classification=classification)
    assert marking_for(item, AGREEMENT, "KOR") == kor
    assert display(item, AGREEMENT, "KOR") == f"{kor} (provided by JPN as {classification} under {AGREEMENT.id})"


def test_no_marking_for_an_item_outside_the_agreement() -> None:
    with pytest.raises(LabelInvalid, match="outside"):
        marking_for(label(classification="군사I급비밀"), AGREEMENT, "JPN")


# --- labels: releasability only narrows ------------------------------------------------


@pytest.mark.parametrize(
    ("parent", "child", "expected"),
    [
        ({}, {}, True),
        ({}, {"releasable_to": ("KOR",)}, True),
        ({"releasable_to": ("KOR",)}, {}, False),  # widened to JPN
        ({}, {"releasable_to": ("KOR", "JPN", "USA")}, False),
        ({}, {"purposes": (PURPOSE,)}, True),  # no purpose restriction to narrow from
        ({"purposes": (PURPOSE, "b")}, {"purposes": (PURPOSE,)}, True),
        ({"purposes": (PURPOSE, "b")}, {"purposes": (PURPOSE, "b")}, True),
        ({"purposes": (PURPOSE,)}, {"purposes": (PURPOSE, "b")}, False),
        ({"purposes": (PURPOSE,)}, {}, False),  # dropping the restriction widens it
    ],
)
def test_narrows(parent: dict[str, Any], child: dict[str, Any], expected: bool) -> None:
    assert narrows(label(**parent), label(item_id=OTHER_ITEM, **child)) is expected


def test_a_declared_purpose_must_be_among_the_readers_duties() -> None:
    item = label(purposes=(PURPOSE, "nk-nuclear"))
    reader = subject(need_to_know=frozenset({COMPARTMENT, "nk-nuclear"}))
    permitted(ask(reader, Action.READ, item, purpose="nk-nuclear"), "R7")
    # Allowed by the provider, but not a duty of this reader: the other duty does not carry it.
    denied(ask(reader, Action.READ, item, purpose=PURPOSE), "R7", only=True)
