"""The egress guard: deny by default, independent of the policy code."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from gsomia.core import egress
from gsomia.core.agreement import load
from gsomia.core.agreement.terms import NoteType
from gsomia.core.label import Label, new_item_id
from nodes import AGREEMENT

A = load(AGREEMENT)
IN_FORCE = datetime(2020, 1, 1, tzinfo=UTC)


def label(**changes: object) -> Label:
    base = Label(new_item_id(), A.id, "KOR", "군사II급비밀", ("JPN",), IN_FORCE)
    return replace(base, **changes) if changes else base  # type: ignore[arg-type]


def test_an_ordinary_item_goes() -> None:
    assert egress.check(A, label(), "JPN", "KOR") is None


@pytest.mark.parametrize(
    ("item", "peer", "me", "rule"),
    [
        (label(originator="JPN", classification="極秘", releasable_to=("KOR",)), "JPN", "KOR", "R5"),  # not ours
        (label(), "USA", "KOR", "R1"),  # not the other party
        (label(), "KOR", "KOR", "R1"),
        (label(releasable_to=("KOR",)), "JPN", "KOR", "R5"),
        (label(agreement="us-kr-jp-tisa-2014"), "JPN", "KOR", "R3"),
        (label(classification="군사I급비밀"), "JPN", "KOR", "R3"),
        (label(route="trilateral"), "JPN", "KOR", "R18"),
        (label(created_at=datetime(2016, 1, 1, tzinfo=UTC)), "JPN", "KOR", "R13"),
    ],
)
def test_anything_else_is_held_back_naming_the_rule(item: Label, peer: str, me: str, rule: str) -> None:
    problem = egress.check(A, item, peer, me)
    assert problem is not None
    assert problem.startswith(rule)


def test_after_termination_nothing_new_leaves() -> None:
    counterfactual = A.with_notes(tuple(n for n in A.notes if n.type is NoteType.TERMINATION))
    released = datetime(2019, 11, 23, 0, 0, 1, tzinfo=UTC)
    problem = egress.check(counterfactual, label(created_at=released), "JPN", "KOR")
    assert problem is not None
    assert problem.startswith("R14")
    # An item released before the end still goes (edge case 4: the release instant decides).
    assert (
        egress.check(counterfactual, label(created_at=datetime(2019, 11, 22, 14, 59, tzinfo=UTC)), "JPN", "KOR") is None
    )
