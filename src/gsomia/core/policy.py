"""Access decisions: ``decide(subject, action, label, status, consents, at)``.

Deny by default. Each rule (R1-R18, docs/rules.md) that bears on an action is checked
here and nowhere else (what a record must say, ``records.check``, builds on these);
every reason, permit or deny, cites its rule and article. Beside the actions on one
item: who keeps the inventory, records notes, reads the register and cases, and what a
receiving node keeps (``receive``).
Pure and fast: no I/O, no clock, no crypto. Consents arrive from the shell,
built from the originator's signed consent decisions (``records.consents``; a
partner's record is verified by ``records.verify`` when it arrives), and are matched
here on item, recipient and purpose.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum

from gsomia.core.agreement.lifecycle import State, Status
from gsomia.core.agreement.lifecycle import status as status_at
from gsomia.core.agreement.route import scope_problem
from gsomia.core.agreement.schemes import MarkingError, equivalent, level_index, national_rank, valid_markings
from gsomia.core.agreement.terms import Agreement
from gsomia.core.errors import InvalidInput
from gsomia.core.label import Label
from gsomia.core.rules import cite


class Role(StrEnum):
    ANALYST = "analyst"
    DUTY_OFFICER = "duty_officer"
    SECURITY_AUTHORITY = "security_authority"
    AUDITOR = "auditor"


class Action(StrEnum):
    PROVIDE = "provide"
    READ = "read"
    REPRODUCE = "reproduce"
    TRANSLATE = "translate"
    RECLASSIFY = "reclassify"
    RELEASE_TO_THIRD_PARTY = "release_to_third_party"
    DESTROY = "destroy"


@dataclass(frozen=True, slots=True)
class Contractor:
    """A contractor facility (R10): cleared, with a named responsible official."""

    facility: str
    facility_cleared: bool
    responsible_official: str | None


@dataclass(frozen=True, slots=True)
class Subject:
    """Who asks: a government official (or contractor staff) of one party."""

    id: str
    party: str
    role: Role
    clearance: str | None  # the subject's own national marking, or None
    need_to_know: frozenset[str] = frozenset()  # compartments and purposes the duties need
    contractor: Contractor | None = None
    rank: str | None = None  # recorded, never decisive (R7)


def as_decided(subject: Subject) -> Subject:
    """The subject as ``decide`` weighs it: without its id, which only names it in the reasons'
    words, and its rank, which never decides (R7). Two subjects equal here are permitted and
    denied the same actions; a shell may make one decision for both."""
    return replace(subject, id="", rank=None)


@dataclass(frozen=True, slots=True)
class Consent:
    """The originator's written approval (R5): this item, to this recipient, for this purpose."""

    item_id: str
    recipient: str
    purpose: str
    granted_by: str  # the originator party
    granted_at: datetime


@dataclass(frozen=True, slots=True)
class Reason:
    """Why, citing the rule. ``public`` replaces ``text`` wherever the subject is shown the
    reason and ``text`` names a level above their clearance, or a compartment or purpose
    outside their need-to-know (principle 5): the ledger keeps ``text``."""

    rule: str
    text: str
    public: str | None = None

    @property
    def shown(self) -> str:
        """The text the subject the decision was made for may read."""
        return self.text if self.public is None else self.public

    def __str__(self) -> str:
        return f"{cite(self.rule)}: {self.text}"


@dataclass(frozen=True, slots=True)
class Decision:
    permit: bool
    reasons: tuple[Reason, ...]
    obligations: tuple[str, ...] = field(default=())

    @property
    def effect(self) -> str:
        return "permit" if self.permit else "deny"

    def as_dict(self) -> dict[str, object]:
        """The full decision, as the ledger records it."""
        return {
            "decision": self.effect,
            "reasons": [{"rule": r.rule, "text": r.text, "cite": cite(r.rule)} for r in self.reasons],
            "obligations": list(self.obligations),
        }

    def shown(self) -> Decision:
        """The decision as the subject it was made for may be shown it: each reason in its
        public text (``Reason.public``). Only the ledger gets the full one (``as_dict``)."""
        return Decision(self.permit, tuple(Reason(r.rule, r.shown) for r in self.reasons), self.obligations)


def _deny(*reasons: Reason) -> Decision:
    return Decision(False, reasons)


def decide(
    agreement: Agreement,
    subject: Subject,
    action: Action | str,
    label: Label,
    status: Status,
    consents: Iterable[Consent] = (),
    at: datetime | None = None,
    *,
    recipient: str | None = None,
    purpose: str | None = None,
    new_classification: str | None = None,
) -> Decision:
    """Decide one action on one labelled item at one instant.

    ``status`` is the agreement's status at the instant of the action (for
    ``provide``: the instant the provider releases the item, edge case 4).
    ``recipient`` is the party for ``provide`` and ``release_to_third_party``;
    ``purpose`` the declared use; ``new_classification`` for ``reclassify``.
    """
    try:
        act = Action(action)
    except ValueError:
        return _deny(Reason("R9", f"unknown action {action!r}: everything not permitted is denied"))
    if label.agreement != agreement.id:
        return _deny(Reason("R3", f"item is labelled for {label.agreement}, not {agreement.id}"))
    if level_index(agreement, label.originator, label.classification) is None:
        return _deny(
            Reason(
                "R3",
                f"{label.originator} {label.classification} is outside {agreement.id} "
                f"({valid_markings(agreement, label.originator)})",
                f"the item's marking is outside {agreement.id} ({valid_markings(agreement, label.originator)})",
            )
        )
    # R5: approval must be prior to the act; a consent dated later does not count.
    valid = tuple(c for c in consents if at is None or c.granted_at <= at)
    return _HANDLERS[act](_Question(agreement, subject, label, status, valid, recipient, purpose, new_classification))


# --- the checks, one rule each --------------------------------------------------------


def _clearance(agreement: Agreement, subject: Subject, label: Label) -> Reason | None:
    """R7 + R3: a clearance at the level equivalent to the item's, in the subject's own scheme."""
    if subject.clearance is None:
        return Reason("R7", f"{subject.id} holds no clearance; role ({subject.role}) or rank alone gives no access")
    if subject.party == label.originator:
        required = label.classification
    else:
        i = level_index(agreement, label.originator, label.classification)
        assert i is not None
        try:
            required = equivalent(agreement, agreement.levels[i], subject.party)
        except MarkingError as exc:
            return Reason("R3", str(exc), f"the item's level has no {subject.party} equivalent")
    held = national_rank(agreement, subject.party, subject.clearance)
    needed = national_rank(agreement, subject.party, required)
    if held is None:
        return Reason("R7", f"clearance {subject.clearance!r} is not a {subject.party} marking")
    if needed is None or held < needed:
        return Reason(
            "R7",
            f"clearance {subject.clearance} is below {required}, the equivalent level of this item",
            f"clearance {subject.clearance} is below the level of this item",
        )
    return None


def _need_to_know(subject: Subject, label: Label, purpose: str | None) -> Reason | None:
    """R7 + R5: every compartment, and a permitted purpose, must be among the subject's duties."""
    missing = [c for c in label.compartments if c not in subject.need_to_know]
    if missing:
        return Reason("R7", f"no need-to-know for compartment(s) {', '.join(missing)}", "no need-to-know for this item")
    if label.purposes:
        allowed = set(label.purposes) & subject.need_to_know
        if purpose is not None and purpose not in label.purposes:
            return Reason(
                "R5",
                f"purpose {purpose!r} is not one the provider permitted ({', '.join(label.purposes)})",
                f"purpose {purpose!r} is not one the provider permitted",
            )
        if purpose is not None and purpose not in subject.need_to_know:
            return Reason("R7", f"the declared purpose {purpose!r} is not among {subject.id}'s duties")
        if not allowed:
            return Reason(
                "R7",
                f"no need-to-know for any permitted purpose ({', '.join(label.purposes)})",
                "no need-to-know for this item",
            )
    elif not subject.need_to_know and not label.compartments:
        return Reason("R7", f"{subject.id} has no recorded need-to-know; role or rank alone gives no access")
    return None


def _contractor(subject: Subject) -> Reason | None:
    c = subject.contractor
    if c is None:
        return None
    if not c.facility_cleared:
        return Reason("R10", f"contractor facility {c.facility} holds no facility clearance")
    if not c.responsible_official:
        return Reason("R10", f"contractor facility {c.facility} names no responsible official")
    return None


def _holder(agreement: Agreement, subject: Subject, label: Label) -> Reason | None:
    """The subject's party holds the item: the originator, or a party it was released to."""
    if subject.party == label.originator or subject.party in label.releasable_to:
        return None
    return Reason("R5", f"{subject.party} is not among the parties this item is releasable to")


def _access_reasons(agreement: Agreement, subject: Subject, label: Label, purpose: str | None) -> list[Reason]:
    found = [
        _holder(agreement, subject, label),
        _clearance(agreement, subject, label),
        _need_to_know(subject, label, purpose),
        _contractor(subject),
    ]
    return [r for r in found if r is not None]


@dataclass(frozen=True, slots=True)
class _Question:
    """One decision's inputs, as every action's handler receives them."""

    agreement: Agreement
    subject: Subject
    label: Label
    status: Status
    consents: tuple[Consent, ...]
    recipient: str | None
    purpose: str | None
    new_classification: str | None


def _read(q: _Question) -> Decision:
    agreement, subject, label, status, purpose = q.agreement, q.subject, q.label, q.status, q.purpose
    denied = _access_reasons(agreement, subject, label, purpose)
    if denied:
        return _deny(*denied)
    reasons = [Reason("R7", f"cleared ({subject.clearance}) with need-to-know")]
    if status.state is State.TERMINATED:
        reasons.append(Reason("R14", "the agreement has ended; what was provided under it stays protected"))
    return Decision(True, tuple(reasons), ("record access (R8)",))


def _copying(q: _Question) -> Decision:
    decision = _read(q)
    if not decision.permit:
        return decision
    reasons = (*decision.reasons, Reason("R9", "copies and translations carry the same label and are recorded"))
    return Decision(True, reasons, ("record the copy in the inventory (R8, R9)",))


def _provide(q: _Question) -> Decision:
    agreement, subject, label, status, recipient = q.agreement, q.subject, q.label, q.status, q.recipient
    denied: list[Reason] = []
    if subject.party != label.originator:
        denied.append(Reason("R5", f"only the originator {label.originator} provides this item; others need consent"))
    if subject.role not in (Role.ANALYST, Role.DUTY_OFFICER, Role.SECURITY_AUTHORITY):
        denied.append(Reason("R9", f"role {subject.role} does not transmit items"))
    if recipient is None:
        denied.append(Reason("R1", "provide needs a recipient party"))
    elif recipient not in agreement.parties:
        denied.append(Reason("R5", f"{recipient} is a third party; use release_to_third_party with consent"))
    elif recipient == label.originator:
        denied.append(Reason("R1", "an item is provided to the other party, not to its originator"))
    elif recipient not in label.releasable_to:
        denied.append(Reason("R5", f"the item is not releasable to {recipient}"))
    if status.state is State.TERMINATED:
        # In the reader's own zone: the demo and the people's client show it under their own clock.
        ended = agreement.shown(status.terminated_at, subject.party) if status.terminated_at else "earlier"
        denied.append(Reason("R14", f"the agreement terminated at {ended}; nothing new may be provided under it"))
    elif not status.in_force:
        denied.append(Reason("R13", "the agreement is not in force yet"))
    cleared = _clearance(agreement, subject, label)
    if cleared is not None:
        denied.append(cleared)
    contractor = _contractor(subject)
    if contractor is not None:
        denied.append(contractor)
    if denied:
        return _deny(*denied)
    reasons = [
        Reason("R1", f"provided directly to {recipient}"),
        Reason("R13", f"the agreement is in force ({status.state})"),
    ]
    if status.state is State.TERMINATION_SUSPENDED:
        reasons.append(Reason("R15", "a termination notice is suspended; the agreement stays in force"))
    return Decision(True, tuple(reasons), ("record the transmission (R9)",))


def _reclassify(q: _Question) -> Decision:
    agreement, subject, label, new_classification = q.agreement, q.subject, q.label, q.new_classification
    if subject.party != label.originator:
        return _deny(Reason("R6", f"only the originator {label.originator} changes this item's classification"))
    if subject.role is not Role.SECURITY_AUTHORITY:
        return _deny(Reason("R6", "a classification is changed by the originator's security authority"))
    if new_classification is not None and level_index(agreement, label.originator, new_classification) is None:
        return _deny(Reason("R3", f"{new_classification!r} is not a marking the agreement covers"))
    cleared = _clearance(agreement, subject, label)
    if cleared is not None:
        return _deny(cleared)
    return Decision(
        True,
        (Reason("R6", "the originator changes its own classification"),),
        ("apply the change to every copy, translation and derived item on both sides (R6)",),
    )


def _release(q: _Question) -> Decision:
    agreement, subject, label, consents = q.agreement, q.subject, q.label, q.consents
    recipient, purpose = q.recipient, q.purpose
    if recipient is None or purpose is None:
        return _deny(Reason("R5", "a third-party release names its recipient and purpose"))
    if subject.role is not Role.SECURITY_AUTHORITY:
        return _deny(Reason("R5", "third-party releases are made by a security authority"))
    if subject.party == label.originator:
        return Decision(True, (Reason("R5", "the originator releases its own information"),), ("record (R9)",))
    holder = _holder(agreement, subject, label)
    if holder is not None:
        return _deny(holder)
    for c in consents:
        if (
            c.item_id == label.item_id
            and c.recipient == recipient
            and c.purpose == purpose
            and c.granted_by == label.originator
        ):
            return Decision(
                True,
                (Reason("R5", f"{label.originator} approved release to {recipient} for {purpose!r}"),),
                ("record the release on both ledgers (R5, R9)",),
            )
    return _deny(
        Reason("R5", f"no written approval by {label.originator} for this item, to {recipient}, for {purpose!r}")
    )


def _destroy(q: _Question) -> Decision:
    agreement, subject, label = q.agreement, q.subject, q.label
    if subject.role is not Role.SECURITY_AUTHORITY:
        return _deny(Reason("R9", "destruction is carried out under the security authority"))
    denied = [r for r in (_holder(agreement, subject, label), _clearance(agreement, subject, label)) if r]
    if denied:
        return _deny(*denied)
    return Decision(True, (Reason("R9", "destruction is controlled"),), ("record the destruction (R8, R9)",))


_HANDLERS = {
    Action.READ: _read,
    Action.REPRODUCE: _copying,
    Action.TRANSLATE: _copying,
    Action.PROVIDE: _provide,
    Action.RECLASSIFY: _reclassify,
    Action.RELEASE_TO_THIRD_PARTY: _release,
    Action.DESTROY: _destroy,
}


# --- what is not an action on one item: the inventory, notes, the register, cases, receipt ---


def keeps_inventory(subject: Subject) -> bool:
    """R8: the security authority and auditors keep the inventory; they see every entry
    (never the content), anyone else only the items the access decision lets them read."""
    return subject.role in (Role.SECURITY_AUTHORITY, Role.AUDITOR)


def may_know(agreement: Agreement, subject: Subject, label: Label, status: Status, at: datetime) -> bool:
    """Whether ``subject`` may learn that an item of this label exists (principle 5).

    The keepers of the inventory may (R8); anyone else only when the item is one they may
    read for some purpose, so a refusal of the purpose they declared tells them nothing new."""
    if keeps_inventory(subject):
        return True
    return decide(agreement, subject, Action.READ, label, status, (), at).permit


def record_note(subject: Subject) -> Decision:
    """R13: a diplomatic note is recorded by the party's security authority."""
    if subject.role is not Role.SECURITY_AUTHORITY:
        return _deny(Reason("R13", "diplomatic notes are recorded by the security authority"))
    return Decision(True, (Reason("R13", "the security authority records the party's diplomatic notes"),))


def read_register(subject: Subject) -> Decision:
    """R8: an item's register (holder, copies, destruction) is for the security authority and auditors."""
    if not keeps_inventory(subject):
        return _deny(Reason("R8", "the register is kept by the security authority"))
    return Decision(True, (Reason("R8", "the security authority keeps the register; auditors read it"),))


def list_cases(subject: Subject) -> Decision:
    """R8: consent requests and compromise reports, with their records, for the keepers of the inventory."""
    if not keeps_inventory(subject):
        return _deny(Reason("R8", "cases are for the security authority and auditors"))
    return Decision(True, (Reason("R8", "the security authority and auditors follow cases"),))


def oversee(subject: Subject, rule: str, what: str) -> Decision:
    """What the keepers of the inventory alone see (the ledger's head and alarms, R11; the key
    chains, R8): the security authority and auditors."""
    if not keeps_inventory(subject):
        return _deny(Reason(rule, f"{what} are for the security authority and auditors"))
    return Decision(True, (Reason(rule, f"the security authority and auditors oversee {what}"),))


def send_flash(subject: Subject) -> Decision:
    """R17: a flash report is sent by a duty officer (or the security authority)."""
    if subject.role not in (Role.DUTY_OFFICER, Role.SECURITY_AUTHORITY):
        return _deny(Reason("R17", "flash reports are sent by duty officers"))
    return Decision(True, (Reason("R17", "a duty officer sends flash reports"),))


#: How far ahead of the receiver's clock a release instant may lie (the two nodes' clocks differ).
CLOCK_SKEW = timedelta(minutes=5)


def receive(agreement: Agreement, label: Label, me: str, peer: str, now: datetime) -> Decision:
    """An item ``peer`` delivered to ``me``, its envelope opened: whether ``me`` keeps it.

    The receiving side's own check, beside the sender's policy and egress guard: the
    partner delivers only its own items (R1), released to ``me`` (R5), at a true release
    instant (R9) at which the agreement was in force (R13, R14). The first failing rule
    is the one reason given."""
    # Through a hub (R18) the hub delivers its partners' items it was approved to pass on; else
    # a partner delivers only its own (R1).
    relayed = agreement.hub == peer and label.route == "trilateral" and label.originator != me
    if label.originator != peer and not relayed:
        return _deny(Reason("R1", f"{peer} delivers only its own items (originator {label.originator})"))
    if agreement.hub is not None:  # an arrangement through a hub: to or from the hub, within scope
        if agreement.hub not in (peer, me):
            return _deny(Reason("R18", f"under {agreement.id} items travel through {agreement.hub} only"))
        outside = scope_problem(agreement, label)
        if outside is not None:
            return _deny(Reason("R18", outside))
    if me not in label.releasable_to:
        return _deny(Reason("R5", f"the item is not releasable to {me}"))
    if label.created_at > now + CLOCK_SKEW:
        return _deny(Reason("R9", "the release instant lies in the future"))
    then = status_at(agreement, label.created_at)
    if not then.in_force:
        release = agreement.local(label.created_at).isoformat()  # the agreement's zone, as its deadlines
        return _deny(
            Reason(then.refusing_rule, f"the agreement was {then.state.value} at the release instant {release}")
        )
    if label.originator != peer:
        how = Reason("R18", f"passed on by {peer}, the hub of {agreement.id}, from its originator {label.originator}")
        return Decision(True, (how,), ("record the receipt (R9)",))
    return Decision(True, (Reason("R1", f"provided directly by {peer}, its originator"),), ("record the receipt (R9)",))


# --- reading subjects and consents from JSON (for ``policy explain`` and the API) ----------


class SubjectInvalid(InvalidInput):
    """A subject or consent description that cannot be used as given."""


def subject_from_dict(data: object) -> Subject:
    if not isinstance(data, dict):
        raise SubjectInvalid("subject: must be a JSON object")
    allowed = {"id", "party", "role", "clearance", "need_to_know", "contractor", "rank"}
    unknown = set(data) - allowed
    if unknown:
        raise SubjectInvalid(f"subject: unknown key(s) {', '.join(sorted(unknown))}")
    for key in ("id", "party", "role"):
        if not isinstance(data.get(key), str):
            raise SubjectInvalid(f"subject: {key} is required text")
    try:
        role = Role(data["role"])
    except ValueError:
        raise SubjectInvalid(
            f"subject: role {data['role']!r} is not one of {', '.join(r.value for r in Role)}"
        ) from None
    clearance = data.get("clearance")
    if clearance is not None and not isinstance(clearance, str):
        raise SubjectInvalid("subject: clearance must be a national marking or null")
    ntk = data.get("need_to_know", [])
    if not isinstance(ntk, list) or not all(isinstance(x, str) for x in ntk):
        raise SubjectInvalid("subject: need_to_know must be a list of text")
    contractor = None
    raw = data.get("contractor")
    if raw is not None:
        if not isinstance(raw, dict) or not isinstance(raw.get("facility"), str):
            raise SubjectInvalid("subject: contractor needs a facility")
        contractor = Contractor(
            facility=raw["facility"],
            facility_cleared=raw.get("facility_cleared") is True,
            responsible_official=raw.get("responsible_official")
            if isinstance(raw.get("responsible_official"), str)
            else None,
        )
    rank = data.get("rank")
    return Subject(
        id=data["id"],
        party=data["party"],
        role=role,
        clearance=clearance,
        need_to_know=frozenset(ntk),
        contractor=contractor,
        rank=rank if isinstance(rank, str) else None,
    )


def consent_from_dict(data: object) -> Consent:
    if not isinstance(data, dict):
        raise SubjectInvalid("consent: must be a JSON object")
    for key in ("item_id", "recipient", "purpose", "granted_by", "granted_at"):
        if not isinstance(data.get(key), str):
            raise SubjectInvalid(f"consent: {key} is required text")
    try:
        granted_at = datetime.fromisoformat(str(data["granted_at"]).replace("Z", "+00:00"))
    except ValueError:
        raise SubjectInvalid("consent: granted_at is not an ISO 8601 instant") from None
    if granted_at.tzinfo is None:
        raise SubjectInvalid("consent: granted_at has no UTC offset")
    return Consent(data["item_id"], data["recipient"], data["purpose"], data["granted_by"], granted_at)
