"""Which route an item takes between two parties, and when a hub may pass it on (R1, R18).

Two parties with a bilateral agreement in force share directly (R1): "without going through
the U.S." Without one, an arrangement with a hub (the 2014 trilateral arrangement: the USA)
is the route: only for what lies within its scope, each hop under the hub's bilateral
agreement with that party (``carried_by``), and the hub passes an item on only with its
originator's approval naming exactly that item and that recipient.

``choose`` is the provider's decision; ``forward`` the hub's, and ``check_forward`` the hub's
egress guard, which decides again from the label, the approvals and the carrier alone and
shares no code with ``forward``. Pure: the instant and the agreements are parameters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from gsomia.core.agreement import lifecycle, route
from gsomia.core.agreement.terms import Agreement, bilaterals
from gsomia.core.label import Label
from gsomia.core.policy import CLOCK_SKEW, Decision, Reason


@dataclass(frozen=True, slots=True)
class Approval:
    """The originator's signed word that the hub may pass ``item_id`` on to ``recipient`` (R18)."""

    item_id: str
    recipient: str
    granted_by: str  # the originator party
    granted_at: datetime


@dataclass(frozen=True, slots=True)
class Route:
    """How an item travels: the agreement its label names, the hops, and the agreements whose
    protection they travel under, as far as the one choosing holds them (the originator does
    not hold the hub's agreement with the recipient: the hub judges that hop)."""

    kind: Literal["direct", "trilateral"]
    agreement: Agreement
    hops: tuple[route.Hop, ...]
    carriers: tuple[Agreement, ...]

    @property
    def hub(self) -> str | None:
        return self.agreement.hub if self.kind == "trilateral" else None


def _arrangements(agreements: Mapping[str, Agreement], a: str, b: str) -> list[Agreement]:
    found = [x for x in agreements.values() if x.hub is not None and {a, b} <= set(x.parties)]
    return sorted(found, key=lambda x: x.id)


def _out_of_force(agreement: Agreement, at: datetime) -> Reason | None:
    status = lifecycle.status(agreement, at)
    if status.in_force:
        return None
    return Reason(status.refusing_rule, f"{agreement.id} is {status.state.value} at this instant")


def choose(
    agreements: Mapping[str, Agreement], originator: str, recipient: str, purposes: Sequence[str], at: datetime
) -> tuple[Decision, Route | None]:
    """The route an item of ``originator`` with ``purposes`` takes to ``recipient`` at ``at``.

    Direct under the bilateral agreement while it is in force (R1); else through the hub of
    an arrangement the two are party to, if the item is within its scope and the agreement
    carrying each hop is in force (R18); else refused, each reason citing its rule."""
    bilateral = bilaterals(agreements.values(), originator).get(recipient)
    denied: list[Reason] = []
    if bilateral is not None:
        ended = _out_of_force(bilateral, at)
        if ended is None:
            direct = Route("direct", bilateral, ((originator, recipient),), (bilateral,))
            return Decision(True, (Reason("R1", f"directly to {recipient} under {bilateral.id}"),)), direct
        denied.append(ended)
    else:
        denied.append(Reason("R1", f"{originator} and {recipient} have no bilateral agreement here"))
    for arrangement in _arrangements(agreements, originator, recipient):
        closed = _out_of_force(arrangement, at)
        if closed is not None:
            denied.append(closed)
            continue
        found = _through_hub(agreements, arrangement, originator, recipient, purposes, at)
        if isinstance(found, Route):
            hub = arrangement.hub
            reasons = (
                *denied,
                Reason("R18", f"through {hub} under {arrangement.id}: within its scope ({arrangement.scope})"),
            )
            obligations = (f"{hub} holds the item until {originator} approves passing it to {recipient} (R18)",)
            return Decision(True, reasons, obligations), found
        denied.extend(found)
    return Decision(False, tuple(denied)), None


def _through_hub(
    agreements: Mapping[str, Agreement],
    arrangement: Agreement,
    originator: str,
    recipient: str,
    purposes: Sequence[str],
    at: datetime,
) -> Route | list[Reason]:
    outside = route.scope_problem(arrangement, _Purposes(tuple(purposes)))
    if outside is not None:
        return [Reason("R18", outside)]
    hops = route.hops(arrangement, originator, recipient)
    carriers: list[Agreement] = []
    for hop in hops:
        try:
            carrier = route.carrier(arrangement, hop, agreements)
        except route.RouteError as exc:
            if originator not in hop and any(i not in agreements for i in arrangement.carried_by):
                # The hub's hop to the recipient, under an agreement the originator is not party
                # to and does not hold: the hub judges it when it passes the item on (``forward``).
                continue
            return [Reason("R18", str(exc))]
        ended = _out_of_force(carrier, at)
        if ended is not None:
            return [ended]
        carriers.append(carrier)
    return Route("trilateral", arrangement, hops, tuple(carriers))


@dataclass(frozen=True, slots=True)
class _Purposes:
    purposes: tuple[str, ...]


def _approved(approvals: Sequence[Approval], label: Label, recipient: str, at: datetime) -> Approval | None:
    for a in approvals:
        exact = (a.item_id, a.recipient, a.granted_by) == (label.item_id, recipient, label.originator)
        if exact and a.granted_at <= at + CLOCK_SKEW:
            return a
    return None


def forward(
    arrangement: Agreement,
    carrier: Agreement,
    label: Label,
    me: str,
    recipient: str,
    approvals: Sequence[Approval],
    at: datetime,
) -> Decision:
    """Whether the hub ``me`` may pass an item it holds on to ``recipient`` now (R18)."""
    denied: list[Reason] = []
    if arrangement.hub != me:
        denied.append(Reason("R18", f"{me} is not the hub of {arrangement.id}"))
    closed = _out_of_force(arrangement, at)
    if closed is not None:
        denied.append(closed)
    if label.agreement != arrangement.id or label.route != "trilateral":
        denied.append(Reason("R18", f"the item travels under {label.agreement} ({label.route}), not {arrangement.id}"))
    if recipient in (me, label.originator) or recipient not in arrangement.parties:
        denied.append(Reason("R18", f"{recipient} is not a party {me} passes this item on to"))
    if recipient not in label.releasable_to:
        denied.append(Reason("R5", f"the item is not releasable to {recipient}"))
    outside = route.scope_problem(arrangement, label)
    if outside is not None:
        denied.append(Reason("R18", outside))
    if set(carrier.parties) != {me, recipient} or carrier.id not in arrangement.carried_by:
        denied.append(Reason("R18", f"{carrier.id} does not carry {me}–{recipient} under {arrangement.id}"))
    else:
        ended = _out_of_force(carrier, at)
        if ended is not None:
            denied.append(ended)
    approval = _approved(approvals, label, recipient, at)
    if approval is None:
        denied.append(Reason("R18", f"no approval by {label.originator} to pass {label.item_id} on to {recipient}"))
    if denied or approval is None:
        return Decision(False, tuple(denied))
    return Decision(
        True,
        (
            Reason("R18", f"{label.originator} approved passing it on to {recipient} at {approval.granted_at}"),
            Reason("R18", f"passed on under {carrier.id}"),
        ),
        ("record the hop on the item's record and the ledger (R9)",),
    )


def check_forward(
    carrier: Agreement, label: Label, me: str, recipient: str, approvals: Sequence[Approval], at: datetime
) -> str | None:
    """The hub's egress guard on an item it passes on under ``carrier``: None to let it go,
    else why not.

    It reads the label, the approvals and the carrier alone: an item goes from the hub only to
    a party its originator approved, before now (by the originator's clock, which may run up
    to ``CLOCK_SKEW`` ahead of the hub's), for exactly this item, within what the label
    releases it to, while the agreement carrying the hop is in force."""
    if label.route != "trilateral":
        return f"R18: {me} passes on only items routed through it (route {label.route})"
    if label.originator in (me, recipient):
        return f"R18: {me} passes on only another party's items, to a third party"
    if recipient not in label.releasable_to:
        return f"R5: not releasable to {recipient}"
    if set(carrier.parties) != {me, recipient}:
        return f"R18: {carrier.id} does not carry {me}–{recipient}"
    if not lifecycle.status(carrier, at).in_force:
        return f"R13: {carrier.id} is not in force"
    for a in approvals:
        if (a.item_id, a.recipient, a.granted_by) == (
            label.item_id,
            recipient,
            label.originator,
        ) and a.granted_at <= at + CLOCK_SKEW:
            return None
    return f"R18: no approval by {label.originator} to pass {label.item_id} on to {recipient}"


def accept_relayed(label: Label, hub: str, me: str, approvals: Sequence[Approval]) -> Decision:
    """The recipient's own check on another party's item its hub passes on (R18): the
    originator's signed approval naming this item and this node must be on hand (the hub
    passes it on ahead of the item), so a hub cannot pass on what the originator never approved."""
    for a in approvals:
        if (a.item_id, a.recipient, a.granted_by) == (label.item_id, me, label.originator):
            return Decision(True, (Reason("R18", f"{label.originator} approved passing it on to {me} through {hub}"),))
    missing = f"no approval by {label.originator} to pass {label.item_id} on to {me} is on hand"
    return Decision(False, (Reason("R18", missing),))


def release_through(hub: str, recipient: str, requested: Sequence[str]) -> tuple[Decision, tuple[str, ...]]:
    """Whom an item through ``hub`` is released to: the hub and the recipient. A releasability
    the originator gave that leaves the hub out is its word that the item must not reach the
    hub (R5): refused, never widened."""
    if requested and hub not in requested:
        named = ", ".join(requested)
        text = f"released to {named} only: the route through {hub} needs {hub} among them"
        return Decision(False, (Reason("R5", text),)), ()
    return Decision(True, (Reason("R5", f"released to {hub} and {recipient}"),)), (hub, recipient)


def check_arrangement(arrangement: Agreement, label: Label, me: str, at: datetime) -> str | None:
    """Beside ``check_forward``: the hub's egress guard on the arrangement itself, now: this node
    its hub, the arrangement in force, the item within its scope (R18). None to let it go."""
    if arrangement.hub != me:
        return f"R18: {me} is not the hub of {arrangement.id}"
    status = lifecycle.status(arrangement, at)
    if not status.in_force:
        return f"{status.refusing_rule}: {arrangement.id} is {status.state.value}"
    outside = route.scope_problem(arrangement, label)
    return None if outside is None else f"R18: {outside}"
