"""Properties of ``policy.decide`` over random requests on the 2016 agreement.

Subjects (any party with a national scheme, any role, a clearance from the party's
whole scheme or none, random need-to-know, sometimes contractor staff), labels
(a KOR or JPN marking, mostly inside the agreement, random releasability, purposes
and compartments), instants over 2015-2030 with the edges of the agreement's life
(entry into force, the 2019 expiry) hit to the second, actions, recipients,
purposes and consents, some of them near-misses of the one that would match.

The expectations are written independently of the engine: the equivalence table
and the dates of entry into force and termination are spelled out here by hand
from docs/rules.md (R3, R13-R15), not computed by ``gsomia.core.agreement``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample

from gsomia.core.agreement import Agreement, NoteType, load, status
from gsomia.core.label import Label
from gsomia.core.policy import Action, Consent, Contractor, Decision, Role, Subject, decide
from gsomia.core.rules import RULES

ROOT = Path(__file__).resolve().parents[1]
REAL = load(ROOT / "agreements" / "jp-kr-gsomia-2016.toml")
# Without KOR's suspension and the later withdrawal: terminated at 2019-11-23 00:00 KST.
TERMINATED = REAL.with_notes(tuple(n for n in REAL.notes if n.type not in (NoteType.SUSPEND, NoteType.WITHDRAW)))
AGREEMENTS = (REAL, TERMINATED)

KST = timezone(timedelta(hours=9))
ENTRY = datetime(2016, 11, 23, tzinfo=KST)
EXPIRY = datetime(2019, 11, 23, tzinfo=KST)
START = datetime(2015, 1, 1, tzinfo=KST)
END = datetime(2031, 1, 1, tzinfo=KST)

# National schemes, lowest first (the agreement file's [schemes]).
SCHEMES = {
    "KOR": ("대외비", "군사III급비밀", "군사II급비밀", "군사I급비밀"),
    "JPN": ("注意", "秘", "極秘", "特定秘密"),
    "USA": ("CONFIDENTIAL", "SECRET", "TOP SECRET"),
}
# Art. 4: (originator, marking) -> the marking each party's reader needs (JPN receives SECRET as 極秘).
REQUIRED = {
    ("KOR", "군사III급비밀"): {"KOR": "군사III급비밀", "JPN": "秘"},
    ("KOR", "군사II급비밀"): {"KOR": "군사II급비밀", "JPN": "極秘"},
    ("JPN", "秘"): {"JPN": "秘", "KOR": "군사III급비밀"},
    ("JPN", "極秘"): {"JPN": "極秘", "KOR": "군사II급비밀"},
    ("JPN", "特定秘密"): {"JPN": "特定秘密", "KOR": "군사II급비밀"},
}
ITEMS = ("6f1d4c2e-8a3b-4f5e-9c7d-1b2a3c4d5e6f", "0a9b8c7d-6e5f-4a3b-8c2d-1e0f9a8b7c6d")
COMPARTMENTS = ("NK-MISSILE", "NK-NUCLEAR", "MARITIME")
PURPOSES = ("missile-warning", "analysis", "sanctions")
PARTIES = ("KOR", "JPN", "USA")
RECIPIENTS = (*PARTIES, "GBR")
READING = (Action.READ, Action.REPRODUCE, Action.TRANSLATE)

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass(frozen=True)
class Request:
    agreement: Agreement
    subject: Subject
    action: Action | str
    label: Label
    at: datetime
    consents: tuple[Consent, ...]
    recipient: str | None
    purpose: str | None
    new_classification: str | None

    def decide(self) -> Decision:
        return decide(
            self.agreement,
            self.subject,
            self.action,
            self.label,
            status(self.agreement, self.at),
            self.consents,
            self.at,
            recipient=self.recipient,
            purpose=self.purpose,
            new_classification=self.new_classification,
        )


# Strategies are built once: building them inside each draw costs more than the decision.
def _instant(edge: datetime, seconds: int) -> datetime:
    return edge + timedelta(seconds=seconds)


HISTORY = (datetime(2019, 8, 1, tzinfo=KST), datetime(2023, 4, 1, tzinfo=KST))  # notice, suspension, withdrawal
INSTANTS = st.one_of(
    # any second over 2015-2030 ...
    st.builds(_instant, st.just(START), st.integers(0, int((END - START).total_seconds()) - 1)),
    # ... or within two seconds of entry into force or the 2019 expiry ...
    st.builds(_instant, st.sampled_from((ENTRY, EXPIRY)), st.integers(-2, 2)),
    # ... or while the 2019 notice was in play
    st.builds(_instant, st.just(HISTORY[0]), st.integers(0, int((HISTORY[1] - HISTORY[0]).total_seconds()))),
)
ANY_PARTY = st.sampled_from(PARTIES)
CLEARANCES = {party: st.sampled_from((None, *scheme)) for party, scheme in SCHEMES.items()}
ROLES = st.sampled_from(list(Role))
NEED_TO_KNOW = st.frozensets(st.sampled_from(COMPARTMENTS + PURPOSES))
CONTRACTORS = st.builds(
    Contractor,
    st.just("works"),
    st.booleans(),
    st.sampled_from(("Facility Security Officer", "Facility Security Officer", None, "")),
)
RANKS = st.none() | st.sampled_from(("General", "Minister"))
ORIGINATORS = st.sampled_from(("KOR", "JPN"))
# Mostly a marking the agreement covers, sometimes any marking of the scheme (R3).
MARKINGS = {
    party: st.sampled_from([m for level in REAL.levels for m in level.markings[party]])
    | st.sampled_from(SCHEMES[party])
    for party in ("KOR", "JPN")
}
ITEM_IDS = st.sampled_from(ITEMS)
RELEASABLE = st.just(frozenset(REAL.parties)) | st.frozensets(ANY_PARTY, min_size=1)
PURPOSE_SETS = st.frozensets(st.sampled_from(PURPOSES))
COMPARTMENT_SETS = st.frozensets(st.sampled_from(COMPARTMENTS))
RECIPIENT_OR_NONE = st.none() | st.sampled_from(RECIPIENTS)
PURPOSE_OR_NONE = st.none() | st.sampled_from(PURPOSES)
AGREEMENT_CHOICE = st.sampled_from(AGREEMENTS)
ACTIONS = st.sampled_from([*Action, "print"])
NEW_CLASSIFICATION = st.none() | st.sampled_from([m for scheme in SCHEMES.values() for m in scheme])
CONSENT_FIELDS = st.sampled_from((None, "item_id", "recipient", "purpose", "granted_by", "granted_at"))
CONSENT_POOLS = {
    "item_id": ITEM_IDS,
    "recipient": st.sampled_from(RECIPIENTS),
    "purpose": st.sampled_from(PURPOSES),
    "granted_by": ANY_PARTY,
}
RANDOM_CONSENTS = st.builds(
    Consent,
    ITEM_IDS,
    CONSENT_POOLS["recipient"],
    CONSENT_POOLS["purpose"],
    ANY_PARTY,
    INSTANTS,
)
CONSENT_COUNT = st.integers(0, 3)
PICK = st.integers(0, 7)


@st.composite
def subjects(draw: st.DrawFn, originator: str = "KOR", holders: tuple[str, ...] = PARTIES) -> Subject:
    """Any party with a scheme; a quarter of the time the originator, a quarter one it released to."""
    pick = draw(PICK)
    party = originator if pick < 2 else holders[pick % len(holders)] if pick < 4 else draw(ANY_PARTY)
    return Subject(
        id="s",
        party=party,
        role=draw(ROLES),
        clearance=draw(CLEARANCES[party]),
        need_to_know=draw(NEED_TO_KNOW),
        contractor=draw(CONTRACTORS) if draw(PICK) < 2 else None,
        rank=draw(RANKS),
    )


@st.composite
def labels(draw: st.DrawFn) -> Label:
    originator = draw(ORIGINATORS)
    return Label(
        item_id=draw(ITEM_IDS),
        agreement=REAL.id,
        originator=originator,
        classification=draw(MARKINGS[originator]),
        releasable_to=tuple(draw(RELEASABLE)),
        created_at=draw(INSTANTS),
        purposes=tuple(draw(PURPOSE_SETS)),
        compartments=tuple(draw(COMPARTMENT_SETS)),
    )


def near_miss(exact: Consent, field: str, value: str) -> Consent:
    """``exact`` with one text field (item_id, recipient, purpose, granted_by) changed."""
    changes: dict[str, Any] = {field: value}
    return replace(exact, **changes)


def consents(draw: st.DrawFn, item: Label, at: datetime, recipient: str | None, purpose: str | None) -> Consent:
    """Half the time the consent that would match, with at most one field changed; else any."""
    if not draw(st.booleans()):
        return draw(RANDOM_CONSENTS)
    exact = Consent(
        item.item_id, recipient or "USA", purpose or PURPOSES[0], item.originator, at - timedelta(seconds=1)
    )
    changed = draw(CONSENT_FIELDS)
    if changed == "granted_at":  # given at the very instant of the act, or a second after
        return replace(exact, granted_at=at + timedelta(seconds=draw(st.integers(0, 1))))
    if changed is not None:
        return near_miss(exact, changed, draw(CONSENT_POOLS[changed]))
    return exact


@st.composite
def requests(draw: st.DrawFn) -> Request:
    item = draw(labels())
    at = draw(INSTANTS)
    # Half the time the other party of the agreement (a provide), else anyone or no one.
    recipient = draw(RECIPIENT_OR_NONE) if draw(st.booleans()) else {"KOR": "JPN", "JPN": "KOR"}[item.originator]
    purpose = draw(PURPOSE_OR_NONE)
    return Request(
        agreement=draw(AGREEMENT_CHOICE),
        subject=draw(subjects(item.originator, item.releasable_to)),
        action=draw(ACTIONS),
        label=item,
        at=at,
        consents=tuple(consents(draw, item, at, recipient, purpose) for _ in range(draw(CONSENT_COUNT))),
        recipient=recipient,
        purpose=purpose,
        new_classification=draw(NEW_CLASSIFICATION),
    )


def in_force(agreement: Agreement, at: datetime) -> bool:
    """R13, R14, R15 for the two histories, by hand: the suspension keeps the real one in force."""
    if agreement is TERMINATED:
        return ENTRY <= at < EXPIRY
    return at >= ENTRY


# --- the properties -------------------------------------------------------------------


@SETTINGS
@given(requests())
def test_every_decision_gives_reasons_citing_known_rules(r: Request) -> None:
    decision = r.decide()
    assert decision.reasons, "a decision, above all a deny, always says why"
    assert all(reason.rule in RULES for reason in decision.reasons)
    assert all(str(reason).startswith(f"{reason.rule} (") for reason in decision.reasons)


@st.composite
def reads(draw: st.DrawFn) -> Request:
    """Reads, copies, translations; half of them of an item released to one party or both, by an
    official (or contractor staff) of a party to the agreement, often highly cleared, whose
    need-to-know is none, the item's compartments, or its compartments and purposes."""
    r = draw(requests())
    if draw(st.booleans()):
        origin = r.label.originator
        held_by = draw(st.sampled_from(((origin,), (origin, "USA"), REAL.parties)))
        item, party = replace(r.label, releasable_to=held_by), draw(st.sampled_from(REAL.parties))
        exact: tuple[frozenset[str], ...] = (
            frozenset(),
            frozenset(item.compartments),
            frozenset((*item.compartments, *item.purposes)),
        )
        who = replace(
            r.subject,
            party=party,
            clearance=draw(st.sampled_from(SCHEMES[party][2:]) | CLEARANCES[party]),
            need_to_know=draw(st.sampled_from(exact[1:]) | st.sampled_from(exact) | NEED_TO_KNOW),
            contractor=draw(st.sampled_from((None, None)) | CONTRACTORS),
        )
        r = replace(r, subject=who, label=item)
    return replace(r, action=draw(st.sampled_from(READING)))


@settings(SETTINGS, max_examples=300)
@given(reads())
def test_never_read_below_the_equivalent_clearance(r: Request) -> None:
    """R3 + R7: the clearance must rank at or above the item's marking in the reader's own scheme."""
    decision = r.decide()
    if not decision.permit:
        return
    s, item = r.subject, r.label
    required = REQUIRED.get((item.originator, item.classification), {}).get(s.party)
    assert required is not None, "only markings inside the agreement, only for its parties"
    assert s.clearance is not None, "no clearance, no access, whatever the role or rank"
    scheme = SCHEMES[s.party]
    assert s.clearance in scheme
    assert scheme.index(s.clearance) >= scheme.index(required)
    # ... and the rest of R5, R7 and R10.
    assert s.party == item.originator or s.party in item.releasable_to
    assert set(item.compartments) <= s.need_to_know
    assert s.need_to_know, "need-to-know is recorded"
    if item.purposes:
        assert set(item.purposes) & s.need_to_know
    if r.purpose is not None and item.purposes:
        assert r.purpose in item.purposes
    if s.contractor is not None:
        assert s.contractor.facility_cleared
        assert s.contractor.responsible_official


NEAR_MISS_POOLS = {"item_id": ITEMS, "recipient": RECIPIENTS, "purpose": PURPOSES, "granted_by": PARTIES}


@st.composite
def releases(draw: st.DrawFn) -> Request:
    """Third-party releases; half of them asked by the other party's security authority, holding
    consents that each miss the release asked for by exactly one field, and sometimes the one that matches."""
    r = draw(requests())
    if draw(st.booleans()):
        item, other = r.label, {"KOR": "JPN", "JPN": "KOR"}[r.label.originator]
        who = replace(r.subject, party=other, role=Role.SECURITY_AUTHORITY, clearance=draw(CLEARANCES[other]))
        recipient, purpose = draw(st.sampled_from(RECIPIENTS)), draw(st.sampled_from(PURPOSES))
        exact = Consent(item.item_id, recipient, purpose, item.originator, r.at - timedelta(seconds=1))
        held: list[Consent] = []
        for _ in range(draw(st.integers(1, 4))):
            field = draw(st.sampled_from((*NEAR_MISS_POOLS, "granted_at")))
            if field == "granted_at":  # dated after the act
                held.append(replace(exact, granted_at=r.at + timedelta(seconds=draw(st.integers(1, 86_400)))))
                continue
            wrong = [v for v in NEAR_MISS_POOLS[field] if v != getattr(exact, field)]
            held.append(near_miss(exact, field, draw(st.sampled_from(wrong))))
        if draw(st.booleans()):
            held.insert(draw(st.integers(0, len(held))), exact)
        r = replace(r, subject=who, recipient=recipient, purpose=purpose, consents=tuple(held))
    return replace(r, action=Action.RELEASE_TO_THIRD_PARTY)


@settings(SETTINGS, max_examples=300)
@given(releases())
def test_never_release_for_a_non_originator_without_a_matching_prior_consent(r: Request) -> None:
    """R5: item, recipient and purpose all named by the originator's approval, given before the act."""
    decision = r.decide()
    if not decision.permit:
        return
    assert r.subject.role is Role.SECURITY_AUTHORITY
    if r.subject.party == r.label.originator:
        return
    assert any(
        c.item_id == r.label.item_id
        and c.recipient == r.recipient
        and c.purpose == r.purpose
        and c.granted_by == r.label.originator
        and c.granted_at <= r.at
        for c in r.consents
    )


@SETTINGS
@given(requests())
def test_never_provide_while_the_agreement_is_not_in_force(r: Request) -> None:
    """R13, R14: nothing is provided before entry into force or after termination (R15: suspended is in force)."""
    decision = replace(r, action=Action.PROVIDE).decide()
    if decision.permit:
        assert in_force(r.agreement, r.at)
        assert status(r.agreement, r.at).in_force
        assert r.subject.party == r.label.originator
        assert r.recipient in REAL.parties
        assert r.recipient != r.label.originator
        assert r.recipient in r.label.releasable_to
    elif (r.label.originator, r.label.classification) in REQUIRED:
        rules = {reason.rule for reason in decision.reasons}
        if not in_force(r.agreement, r.at):
            assert ("R14" if r.at >= ENTRY else "R13") in rules


@SETTINGS
@given(requests())
def test_markings_outside_the_agreement_are_always_denied(r: Request) -> None:
    """R3: 군사I급비밀, 대외비, 注意 cannot be shared under the agreement, whatever the action."""
    decision = r.decide()
    if (r.label.originator, r.label.classification) not in REQUIRED and r.action != "print":
        assert not decision.permit
        assert {reason.rule for reason in decision.reasons} == {"R3"}


@SETTINGS
@given(requests(), st.none() | st.sampled_from(("General", "Chief of Staff")))
def test_rank_never_changes_a_decision(r: Request, rank: str | None) -> None:
    """R7: rank or position alone gives no access (and takes none away)."""
    assert replace(r, subject=replace(r.subject, rank=rank)).decide() == r.decide()


# --- the generator reaches the permits, so the properties above are not vacuous ---------


def test_the_generator_reaches_every_kind_of_permit() -> None:
    """One pass over generated requests until each kind of permit has turned up at least once."""
    suspension = (EXPIRY, datetime(2023, 3, 21, tzinfo=KST))

    def permits(action: Action) -> Callable[[Request], bool]:
        return lambda r: replace(r, action=action).decide().permit

    wanted: dict[str, Callable[[Request], bool]] = {
        **{action.value: permits(action) for action in Action},
        "release by a recipient, with consent": lambda r: (
            r.subject.party != r.label.originator and replace(r, action=Action.RELEASE_TO_THIRD_PARTY).decide().permit
        ),
        "provide during the suspension (R15)": lambda r: (
            suspension[0] <= r.at < suspension[1]
            and "R15" in {x.rule for x in replace(r, agreement=REAL, action=Action.PROVIDE).decide().reasons}
        ),
        "read after termination (R14)": lambda r: (
            r.at >= EXPIRY
            and "R14" in {x.rule for x in replace(r, agreement=TERMINATED, action=Action.READ).decide().reasons}
        ),
        "contractor staff read (R10)": lambda r: (
            r.subject.contractor is not None and replace(r, action=Action.READ).decide().permit
        ),
    }
    seen: set[str] = set()

    def everything_seen(r: Request) -> bool:
        seen.update(name for name, reached in wanted.items() if name not in seen and reached(r))
        return len(seen) == len(wanted)

    quick = settings(max_examples=3_000, phases=[Phase.generate], deadline=None, database=None, derandomize=True)
    try:
        find(requests(), everything_seen, settings=quick)
    except NoSuchExample:
        pytest.fail(f"never generated: {', '.join(sorted(set(wanted) - seen))}")
