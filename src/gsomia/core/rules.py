"""The agreement's rules R1-R18 in one place: id, source, and what each requires.

Deny reasons cite these ids, so a security officer can look up exactly which
clause a refusal rests on; docs/rules.md explains each rule. The source is the
treaty article where there is one, otherwise the dated act the rule rests on.
The code that enforces each rule names it too.
"""

from __future__ import annotations

from typing import Final, NamedTuple


class Rule(NamedTuple):
    id: str
    article: str
    summary: str


RULES: Final[dict[str, Rule]] = {
    r.id: r
    for r in (
        Rule(
            "R1",
            "bilateral agreement of 2016-11-23",
            "parties share CMI directly with each other, without an intermediary",
        ),
        Rule("R2", "Art. 2", "CMI is defence-related information in any form that carries a classification"),
        Rule(
            "R3", "Art. 4", "classifications are equivalent by level; markings outside the agreement cannot be shared"
        ),
        Rule(
            "R4", "Art. 4", "the recipient marks items with the provider's name and its own equivalent classification"
        ),
        Rule("R5", "Art. 5-6", "no third-party release or other use without the provider's prior written approval"),
        Rule("R6", "Art. 6(g)", "only the provider changes or removes a classification; no downgrade without consent"),
        Rule(
            "R7", "Art. 7", "access needs need-to-know and a clearance at the equivalent level; rank alone gives none"
        ),
        Rule("R8", "Art. 6", "each facility keeps a register of cleared people and an inventory of items"),
        Rule(
            "R9",
            "Arts. 9, 11-15",
            "transmission, reproduction, translation, storage, destruction controlled and recorded",
        ),
        Rule("R10", "Art. 16", "contractors only with cleared staff, a responsible official, inspections, a register"),
        Rule("R11", "Art. 17", "loss or compromise: provider told at once; recipient investigates and reports"),
        Rule("R12", "Art. 20", "disputes by consultation only; CMI stays protected meanwhile"),
        Rule("R13", "Art. 21(1),(3)", "in force from signature; yearly renewal unless 90 days' written notice"),
        Rule("R14", "Art. 21(4)", "after termination, what was provided stays protected; nothing new may be provided"),
        Rule(
            "R15",
            "KOR note 2019-11-22, statement 2020-08-04",
            "a termination notice can be suspended; the agreement stays in force meanwhile",
        ),
        Rule("R16", "KOR note of 2019-11-22", "a suspension's linked conditions are recorded, not judged"),
        Rule(
            "R17",
            "statements of 2019-11-22",
            "reports of the other side's actions go out at once, ahead of routine traffic",
        ),
        Rule(
            "R18",
            "arrangement of 2014-12-29",
            "trilateral route via the USA, limited to NK threats, forwarded only with approval",
        ),
    )
}


def cite(rule_id: str) -> str:
    """``R7 (Art. 7)``: how a reason names its rule."""
    return f"{rule_id} ({RULES[rule_id].article})"
