"""National classification schemes and their equivalence under an agreement (R3, R4).

A marking belongs to an agreement level when the agreement's ``[[levels]]`` list
it for that party; markings outside every level (Top Secret, 대외비) cannot be
provided under the agreement at all. Mapping a level back to a party's marking is
many-to-one for some levels (군사II급비밀 → 極秘 or 特定秘密): the recipient's rule
in the agreement file (``receive_as``) decides, and without one the mapping is
refused rather than guessed.

Markings are compared in Unicode compatibility form (``normalize_marking``, NFKC): Korean
documents often write 군사Ⅱ급비밀 with the Roman numeral Ⅱ (U+2161), which is 군사II급비밀.
What is stored and signed is always the agreement file's own spelling (``spelling``), taken
before a label is made: a label's canonical encoding never holds a second spelling of a marking.
"""

from __future__ import annotations

from gsomia.core.agreement.terms import Agreement, Level, normalize_marking
from gsomia.core.errors import GsomiaError


def markings(agreement: Agreement, party: str) -> tuple[str, ...]:
    """``party``'s national markings, lowest first where the agreement lists its scheme, else
    the markings its levels give ``party``."""
    listed = agreement.schemes.get(party)
    if listed:
        return listed
    return tuple(m for level in agreement.levels for m in level.markings.get(party, ()))


def covered(agreement: Agreement, party: str) -> tuple[str, ...]:
    """``party``'s markings that the agreement's levels cover: what may be shared under it (R3)."""
    return tuple(m for m in markings(agreement, party) if level_index(agreement, party, m) is not None)


def spelling(agreement: Agreement, party: str, marking: str) -> str | None:
    """The agreement file's spelling of ``party``'s ``marking`` (compared as ``normalize_marking``
    does), or None when ``party`` has no such marking."""
    table: dict[tuple[str, str], str] | None = agreement.cache.get("marking_spelling")
    if table is None:
        table = {}
        for p in {*agreement.parties, *agreement.schemes}:
            for m in markings(agreement, p):
                table.setdefault((p, normalize_marking(m)), m)
        agreement.cache["marking_spelling"] = table
    return table.get((party, normalize_marking(marking))) if isinstance(marking, str) else None


def valid_markings(agreement: Agreement, party: str) -> str:
    """``party``'s markings that may be shared under the agreement, for an error message."""
    shared = covered(agreement, party)
    if not shared:
        return f"{agreement.id} covers no {party} marking"
    return f"valid {party} markings: {', '.join(shared)}"


class MarkingError(GsomiaError):
    """A marking is unknown, outside the agreement, or has no unambiguous equivalent."""

    def __init__(self, message: str, rule: str = "R3") -> None:
        self.rule = rule
        super().__init__(f"{message} ({rule})")


def level_index(agreement: Agreement, party: str, marking: str) -> int | None:
    """Index of the agreement level containing ``party``'s ``marking``, or None."""
    table: dict[tuple[str, str], int] | None = agreement.cache.get("level_index")
    if table is None:
        table = {
            (p, normalize_marking(m)): i
            for i, level in enumerate(agreement.levels)
            for p, ms in level.markings.items()
            for m in ms
        }
        agreement.cache["level_index"] = table
    found = table.get((party, marking))  # most markings are spelled as the agreement spells them
    return found if found is not None else table.get((party, normalize_marking(marking)))


def level_of(agreement: Agreement, party: str, marking: str) -> Level:
    """The agreement level of a marking; refuses markings the agreement does not cover (R3)."""
    i = level_index(agreement, party, marking)
    if i is None:
        if spelling(agreement, party, marking) is not None:
            raise MarkingError(
                f"{party} marking {marking!r} is outside {agreement.id}: it cannot be shared under it; "
                f"{valid_markings(agreement, party)}"
            )
        raise MarkingError(
            f"{marking!r} is not a {party} marking known to {agreement.id}; {valid_markings(agreement, party)}"
        )
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
    own = spelling(agreement, party, marking) if scheme is not None else None
    if scheme is None or own is None or own not in scheme:
        return None
    return scheme.index(own)
