"""The egress guard: a second, independent check on every item that leaves the node.

Items (sealed envelopes) are what carry classified information; notes, records and
alarms carry none and are not passed through it.

It reads only the item's own label and the agreement, shares no code path with
``policy.decide`` beyond the lifecycle engine, and denies by default. An item goes
out only if both the policy (at provide time) and this guard (at send time) agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from gsomia.core.agreement import lifecycle, route
from gsomia.core.agreement.route import scope_problem
from gsomia.core.agreement.schemes import level_index
from gsomia.core.agreement.terms import Agreement
from gsomia.core.label import Label
from gsomia.core.policy import Consent, Decision, Reason


def check(agreement: Agreement, label: Label, peer: str, me: str) -> str | None:
    """None to let the item go to ``peer``; otherwise the reason it must not."""
    if label.originator != me:
        return f"R5: {me} sends only its own items (originator {label.originator})"
    if peer not in agreement.parties or peer == me:
        return f"R1: {peer} is not the other party to {agreement.id}"
    if label.agreement != agreement.id:
        return f"R3: labelled for {label.agreement}, not {agreement.id}"
    if peer not in label.releasable_to:
        return f"R5: not releasable to {peer}"
    if level_index(agreement, label.originator, label.classification) is None:
        return f"R3: {label.classification} is outside {agreement.id}"
    if label.route == "trilateral":
        # An item routed through a hub goes to the hub only, within the arrangement's scope (R18).
        if agreement.hub is None or peer != agreement.hub:
            return f"R18: a trilateral item goes to the hub of {agreement.id} only, not {peer}"
        outside = scope_problem(agreement, label)
        if outside is not None:
            return f"R18: {outside}"
    elif label.route != "direct":
        return f"R18: route {label.route} is not allowed on the direct link"
    status = lifecycle.status(agreement, label.created_at)
    if not status.in_force:
        rule = status.refusing_rule
        return f"{rule}: {agreement.id} was {status.state.value} at the release instant"
    return None


def check_named(agreements: Mapping[str, Agreement], label: Label, peer: str, me: str) -> str | None:
    """``check`` against the agreement the label names, among the node's ``agreements`` by id."""
    agreement = agreements.get(label.agreement)
    if agreement is None:
        return f"R3: labelled for {label.agreement}, which is not an agreement of {me}"
    problem = check(agreement, label, peer, me)
    if problem is None and label.route == "trilateral":
        # The hop to the hub travels under the bilateral agreement that carries it (R18).
        try:
            carrier = route.carrier(agreement, (me, peer), agreements)
        except route.RouteError:
            return f"R18: no one agreement of {me} carries {me}–{peer} under {agreement.id}"
        status = lifecycle.status(carrier, label.created_at)
        if not status.in_force:
            return f"{status.refusing_rule}: {carrier.id} was {status.state.value} at the release instant"
    return problem


def check_release(label: Label, recipient: str, purpose: str, me: str, consents: Sequence[Consent]) -> str | None:
    """A third-party release (R5) goes only with the originator's approval for exactly this."""
    if me == label.originator:
        return None
    for c in consents:
        if (c.item_id, c.recipient, c.purpose, c.granted_by) == (label.item_id, recipient, purpose, label.originator):
            return None
    return f"no approval by {label.originator} for item {label.item_id} to {recipient} for {purpose!r}"


def release(label: Label, recipient: str, purpose: str, me: str, consents: Sequence[Consent]) -> Decision:
    """``check_release`` as a decision for the shell to obey: a refusal cites R5."""
    problem = check_release(label, recipient, purpose, me, consents)
    if problem:
        return Decision(False, (Reason("R5", f"egress guard: {problem}"),))
    return Decision(True, (Reason("R5", "egress guard: the originator approved exactly this release"),))
