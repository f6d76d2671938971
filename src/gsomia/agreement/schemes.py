"""National classification schemes and their equivalence under an agreement (R3, R4).

A marking belongs to an agreement level when the agreement's ``[[levels]]`` list
it for that party; markings outside every level (Top Secret, 대외비) cannot be
provided under the agreement at all. Mapping a level back to a party's marking is
many-to-one for some levels (군사II급비밀 → 極秘 or 特定秘密): the recipient's rule
in the agreement file (``receive_as``) decides, and without one the mapping is
refused rather than guessed.
"""

from __future__ import annotations

from gsomia.agreement.terms import Agreement, Level
from gsomia.errors import GsomiaError


class MarkingError(GsomiaError):
    """A marking is unknown, outside the agreement, or has no unambiguous equivalent."""

    def __init__(self, message: str, rule: str = "R3") -> None:
        self.rule = rule
        super().__init__(f"{message} ({rule})")


def level_index(agreement: Agreement, party: str, marking: str) -> int | None:
    """Index of the agreement level containing ``party``'s ``marking``, or None."""
    table: dict[tuple[str, str], int] | None = agreement.cache.get("level_index")
    if table is None:
        table = {(p, m): i for i, level in enumerate(agreement.levels) for p, ms in level.markings.items() for m in ms}
        agreement.cache["level_index"] = table
    return table.get((party, marking))


def level_of(agreement: Agreement, party: str, marking: str) -> Level:
    """The agreement level of a marking; refuses markings the agreement does not cover (R3)."""
    i = level_index(agreement, party, marking)
    if i is None:
        scheme = agreement.schemes.get(party, ())
        if marking in scheme:
            raise MarkingError(f"{party} marking {marking!r} is outside {agreement.id}: it cannot be shared under it")
        raise MarkingError(f"{marking!r} is not a {party} marking known to {agreement.id}")
    return agreement.levels[i]


def equivalent(agreement: Agreement, level: Level, party: str) -> str:
    """The marking ``party`` applies to an item of ``level`` (R4)."""
    markings = level.markings.get(party)
    if not markings:
        raise MarkingError(f"{party} has no marking for level {level.name} in {agreement.id}")
    if len(markings) == 1:
        return markings[0]
    chosen = level.receive_as.get(party)
    if chosen is None:
        raise MarkingError(
            f"level {level.name} maps to several {party} markings ({', '.join(markings)}) and "
            f"{agreement.id} sets no receive_as rule for {party}; refusing to guess"
        )
    return chosen


def national_rank(agreement: Agreement, party: str, marking: str) -> int | None:
    """Rank of a marking in the party's national scheme (0 = lowest), or None."""
    scheme = agreement.schemes.get(party)
    if scheme is None or marking not in scheme:
        return None
    return scheme.index(marking)
