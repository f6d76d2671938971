"""Travel through a hub (R18): what an arrangement covers, the hops an item takes, the
bilateral agreement that carries each hop, and when the hub needs the originator's approval.

An arrangement with a ``hub`` (the 2014 trilateral arrangement: the USA) is not itself the
agreement items are protected under: each hop to or from the hub travels under one of the
bilateral agreements its ``carried_by`` names (USA–KOR 1987, USA–JPN 2007). Whether those
agreements are in force at the release instant is the lifecycle's answer
(``lifecycle.status``), asked by whoever routes. Pure: no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from gsomia.core.agreement.terms import Agreement
from gsomia.core.errors import GsomiaError

Hop = tuple[str, str]


class RouteError(GsomiaError):
    """An item cannot travel as asked under an agreement (R18)."""

    def __init__(self, message: str, rule: str = "R18") -> None:
        self.rule = rule
        super().__init__(f"{message} ({rule})")


class Purposed(Protocol):
    """What scope is judged on: the purposes a label permits (``Label.purposes``)."""

    @property
    def purposes(self) -> tuple[str, ...]: ...


def scope_problem(agreement: Agreement, label: Purposed) -> str | None:
    """Why an item with ``label`` is outside ``agreement``'s scope, or None when it is inside.

    With ``scope_tags`` set, the label must permit at least one purpose and every purpose it
    permits must be a scope tag: a purpose is a use the recipient may make of the item (R5),
    and an arrangement limited to North Korea's nuclear and missile threats passes on nothing
    a recipient may use for anything else. Without ``scope_tags`` nothing is judged here.
    """
    tags = agreement.scope_tags
    if not tags:
        return None
    if not label.purposes:
        return f"{agreement.id} is limited to {', '.join(tags)}: the label names no purpose"
    outside = [p for p in label.purposes if p not in tags]
    if outside:
        return f"{agreement.id} is limited to {', '.join(tags)}: {', '.join(outside)} is outside it"
    return None


def in_scope(agreement: Agreement, label: Purposed) -> bool:
    """Whether an item with ``label`` may travel under ``agreement`` as far as its scope goes."""
    return scope_problem(agreement, label) is None


def hops(agreement: Agreement, originator: str, recipient: str) -> tuple[Hop, ...]:
    """The (sender, receiver) hops from ``originator`` to ``recipient``: one hop when there is
    no hub or either end is the hub, else two, through the hub."""
    for role, party in (("originator", originator), ("recipient", recipient)):
        if party not in agreement.parties:
            raise RouteError(f"{role} {party} is not a party to {agreement.id}")
    if originator == recipient:
        raise RouteError(f"{originator} cannot send to itself")
    hub = agreement.hub
    if hub is None or hub in (originator, recipient):
        return ((originator, recipient),)
    return ((originator, hub), (hub, recipient))


def needs_approval(agreement: Agreement, originator: str, hop: Hop) -> bool:
    """Whether the sender of ``hop`` needs ``originator``'s approval to send the item on: the hub
    forwarding another party's item to a third party, under ``[forwarding] approval =
    "originator"``."""
    sender, receiver = hop
    forwarding = agreement.forwarding
    return (
        forwarding is not None
        and forwarding.approval == "originator"
        and sender == agreement.hub
        and sender != originator
        and receiver != originator
    )


def carrier(agreement: Agreement, hop: Hop, agreements: Mapping[str, Agreement]) -> Agreement:
    """The agreement in ``carried_by`` between the two parties of ``hop``, from ``agreements``
    (loaded agreements by id)."""
    if agreement.hub is None:
        raise RouteError(f"{agreement.id} has no hub: nothing is carried under another agreement")
    pair = set(hop)
    missing = [i for i in agreement.carried_by if i not in agreements]
    found = [agreements[i] for i in agreement.carried_by if i in agreements and set(agreements[i].parties) == pair]
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise RouteError(
            f"{agreement.id}: {', '.join(a.id for a in found)} all carry {hop[0]}–{hop[1]}; one carrier per hop"
        )
    unloaded = f" ({', '.join(missing)} not loaded)" if missing else ""
    raise RouteError(f"{agreement.id}: no agreement in carried_by carries {hop[0]}–{hop[1]}{unloaded}")


def carrier_problems(agreement: Agreement, agreements: Mapping[str, Agreement]) -> list[str]:
    """One line per reason ``agreement``'s ``carried_by`` cannot carry its items, judged against
    the loaded ``agreements`` (by id); empty when every party can reach the hub under exactly
    one bilateral agreement with it."""
    hub = agreement.hub
    if hub is None:
        return []
    problems: list[str] = []
    carried: dict[str, str] = {}
    for i, other_id in enumerate(agreement.carried_by):
        key = f"carried_by[{i}]"
        other = agreements.get(other_id)
        if other is None:
            problems.append(f"{key}: {other_id} is not loaded")
            continue
        if len(other.parties) != 2:
            problems.append(
                f"{key}: {other_id} has {len(other.parties)} parties; a hop is carried by a bilateral agreement"
            )
            continue
        if hub not in other.parties:
            problems.append(f"{key}: {other_id} is between {' and '.join(other.parties)}, without the hub {hub}")
            continue
        partner = next(p for p in other.parties if p != hub)
        if partner not in agreement.parties:
            problems.append(f"{key}: {other_id} joins {hub} with {partner}, not a party to {agreement.id}")
        elif partner in carried:
            problems.append(f"{key}: {other_id} and {carried[partner]} both carry {hub}–{partner}")
        else:
            carried[partner] = other_id
    for party in agreement.parties:
        if party != hub and party not in carried:
            problems.append(f"carried_by: no agreement carries {hub}–{party}")
    return problems
