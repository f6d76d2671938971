"""What a node accepts as one of its users: an id of a safe alphabet, a clearance of its own scheme.

Pure: the node's party and agreements are parameters. The command line checks a new
user with these before it opens the node's database, and ``Node.add_user`` checks
again, so no other way in can store a user the command line would refuse.

A user id becomes part of log lines, ledger entries, problem details and, in tools
around the node, file names; so it is one short token of lower-case letters, digits,
``.``, ``_`` and ``-`` (``../../etc/x``, spaces, control characters and look-alike
letters cannot be one). A clearance is the national marking the user is cleared to
(R7), in the scheme of the node's own party: a KOR node's users hold KOR markings, and
the access decision ranks them in that scheme alone (``policy``), so a marking of another
scheme, or none at all, would be stored only to deny every read later.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from gsomia.core.agreement.schemes import markings
from gsomia.core.agreement.terms import Agreement, normalize_marking
from gsomia.core.errors import InvalidInput

USER_ID = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
USER_ID_RULE = "1 to 64 of a-z, 0-9, '.', '_' and '-', starting with a letter or digit"


class UserInvalid(InvalidInput):
    """A user the node will not register as given."""


def check_user_id(user_id: str) -> str:
    """``user_id`` if it is of the safe alphabet; otherwise ``UserInvalid`` naming the rule."""
    if not isinstance(user_id, str) or not USER_ID.fullmatch(user_id):
        raise UserInvalid(f"user id {user_id!r} is not allowed: use {USER_ID_RULE}")
    return user_id


# A need-to-know tag names a compartment or a purpose (R7), and those are the labels' own
# names: nk-missile, and as well 북한 탄도미사일 분석 or 特定秘密保護 (a label's names are Unicode,
# NFC). So letters and digits of any script, with '.', '_', '-' and single inner spaces; never
# empty, never a path ('../../x'), a quote, a control character or space at either end.
NEED_TO_KNOW = re.compile(r"[^\W_](?:[\w.\-]| (?! )){0,63}(?<! )", re.UNICODE)
NEED_TO_KNOW_RULE = (
    "1 to 64 letters or digits (any script), '.', '_', '-' and single inner spaces, starting with a letter or digit"
)


def check_need_to_know(tags: Iterable[str]) -> list[str]:
    """``tags`` in NFC, the form labels compare in, if each is of the safe alphabet; otherwise
    ``UserInvalid`` naming the tag and the rule."""
    checked: list[str] = []
    for tag in tags:
        text = unicodedata.normalize("NFC", tag) if isinstance(tag, str) else None
        if text is None or not NEED_TO_KNOW.fullmatch(text):
            raise UserInvalid(f"need-to-know {tag!r} is not allowed: use {NEED_TO_KNOW_RULE}")
        checked.append(text)
    return checked


def scheme(agreements: Iterable[Agreement], party: str) -> dict[str, str]:
    """``party``'s national markings under the node's agreements, lowest first where an
    agreement lists its scheme (else the markings its levels give ``party``): each keyed by
    its compared form (``normalize_marking``: 군사Ⅱ급비밀 is 군사II급비밀) to its spelling in the
    agreement file, which the access decision ranks it by and which is stored."""
    found: dict[str, str] = {}
    for agreement in agreements:
        for marking in markings(agreement, party):
            found.setdefault(normalize_marking(marking), marking)
    return found


def check_clearance(agreements: Iterable[Agreement], party: str, clearance: str | None) -> str | None:
    """The marking of ``party``'s own scheme that ``clearance`` spells (compared in Unicode NFKC,
    returned as the agreement spells it); None stays None (no clearance: an auditor).
    Otherwise ``UserInvalid`` naming the markings allowed (R7)."""
    if clearance is None:
        return None
    allowed = scheme(agreements, party)
    marking = allowed.get(normalize_marking(clearance)) if isinstance(clearance, str) else None
    if marking is None:
        one_of = f"one of {', '.join(allowed.values())}" if allowed else "a marking, and its agreements list none"
        raise UserInvalid(
            f"clearance {clearance!r} is not a {party} marking: a {party} node's users hold {one_of} (R7)"
        )
    return marking
